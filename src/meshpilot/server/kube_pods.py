"""The runtime's pods as ``kubectl get pods`` reads and watches them.

Pods are not stored objects: the runtime reports them. kubectl lists them with its
Table Accept header, ``-l`` and ``--field-selector``, which are honoured here as for
stored kinds. A watch (``get pods -w``) looks at the runtime's pods every half second
and sends what changed between looks as ADDED, MODIFIED and DELETED events. Pods have
no stored resourceVersions: a watch that names one (kubectl's, taken from its list)
starts from the pods as they are when it starts; one without (or with ``0``) first
sends every current pod as ADDED, as an API server does. A change that happens between
kubectl's list and its watch is therefore not replayed; the next change shows it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from meshpilot.api.identity import ObjectKey
from meshpilot.server import kube_selectors, kube_tables

PodBody = dict[str, Any]
LOOK_SECONDS = 0.5
"""How often a pod watch looks at the runtime's pods."""


def _key(pod: PodBody) -> ObjectKey:
    meta = pod.get("metadata") or {}
    return ObjectKey("", "Pod", str(meta.get("namespace", "")), str(meta.get("name", "")))


def _refusal(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Failure", "reason": reason, "message": message,
                         "code": code}, status_code=code)


def _selection(request: Request) -> Callable[[PodBody], bool]:
    """The request's fieldSelector and labelSelector as one predicate (ValueError when
    either is malformed)."""
    q = request.query_params
    fields = kube_selectors.field_selector(q.get("fieldSelector"))
    labels = kube_selectors.label_selector(q.get("labelSelector"))
    return lambda pod: fields(_key(pod)) and labels(pod)


def pod_list(request: Request, pods: Sequence[PodBody],
             look: Callable[[], Sequence[PodBody]] | None = None) -> Response:
    """A PodList (or its Table) of the ``pods`` the request's selectors select; a watch
    of them when the request asks for one and ``look`` reads the pods again."""
    try:
        selected = _selection(request)
    except ValueError as exc:
        return _refusal(400, "BadRequest", str(exc))
    if request.query_params.get("watch") in ("true", "1"):
        if look is None:
            return _refusal(405, "MethodNotAllowed", "no runtime runs pods here to watch")
        return _watch(request, lambda: [p for p in look() if selected(p)])
    items = [p for p in pods if selected(p)]
    if kube_tables.wants_table(request):
        return JSONResponse(kube_tables.table("Pod", items, str(int(time.time()))))
    return JSONResponse({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                         "items": items})


class PodChanges:
    """What changed among a watch's pods between two looks.

    Invariant: ``_seen`` holds, by namespace/name, the last body each pod was reported
    with (as its sorted JSON, which is how a change is told from no change)."""

    def __init__(self, pods: Sequence[PodBody]) -> None:
        self._seen = {self._name(p): self._print(p) for p in pods}
        self._bodies = {self._name(p): p for p in pods}

    @staticmethod
    def _name(pod: PodBody) -> tuple[str, str]:
        key = _key(pod)
        return key.namespace, key.name

    @staticmethod
    def _print(pod: PodBody) -> str:
        return json.dumps(pod, sort_keys=True, default=str)

    def look(self, pods: Sequence[PodBody]) -> list[tuple[str, PodBody]]:
        """The events that take the last look's pods to ``pods``, in name order."""
        now = {self._name(p): p for p in pods}
        events: list[tuple[str, PodBody]] = []
        for name in sorted(set(now) | set(self._seen)):
            if name not in now:
                events.append(("DELETED", self._bodies[name]))
            elif name not in self._seen:
                events.append(("ADDED", now[name]))
            elif self._print(now[name]) != self._seen[name]:
                events.append(("MODIFIED", now[name]))
        self._seen = {name: self._print(p) for name, p in now.items()}
        self._bodies = now
        return events


def _watch(request: Request, look: Callable[[], Sequence[PodBody]]) -> Response:
    q = request.query_params
    try:
        timeout = float(q.get("timeoutSeconds", "300"))
    except ValueError:
        return _refusal(400, "BadRequest", "timeoutSeconds is a number")
    as_table = kube_tables.wants_table(request)
    from_now = q.get("resourceVersion") not in (None, "", "0")
    versions = iter(range(1, 1 << 62))

    def line(kind: str, pod: PodBody) -> bytes:
        version = str(next(versions))
        body = {**pod, "metadata": {**pod.get("metadata", {}), "resourceVersion": version}}
        if as_table:
            body = kube_tables.table("Pod", [body], version)
        return (json.dumps({"type": kind, "object": body}) + "\n").encode()

    async def events() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + timeout
        first = look()
        changes = PodChanges(first if from_now else [])
        for kind, pod in ([] if from_now else changes.look(first)):
            yield line(kind, pod)
        while time.monotonic() < deadline:
            await asyncio.sleep(min(LOOK_SECONDS, max(0.0, deadline - time.monotonic())))
            for kind, pod in changes.look(look()):
                yield line(kind, pod)

    # client-go picks its stream decoder by this type; it has none for ndjson
    return StreamingResponse(events(), media_type="application/json")


def pod(request: Request, body: PodBody) -> Response:
    """One pod, as a Table row when kubectl get asks for one."""
    if kube_tables.wants_table(request):
        return JSONResponse(kube_tables.table("Pod", [body], str(int(time.time()))))
    return JSONResponse(body)

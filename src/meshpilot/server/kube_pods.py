"""The runtime's pods as ``kubectl get pods`` reads them.

Pods are not stored objects: the runtime reports them. kubectl lists them with its
Table Accept header, ``-l`` and ``--field-selector``, which are honoured here as for
stored kinds; a watch (``get pods -w``) is refused, since pods have no resourceVersions
to watch from, rather than answered with a list that never changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meshpilot.api.identity import ObjectKey
from meshpilot.server import kube_selectors, kube_tables


def _key(pod: dict[str, Any]) -> ObjectKey:
    meta = pod.get("metadata") or {}
    return ObjectKey("", "Pod", str(meta.get("namespace", "")), str(meta.get("name", "")))


def _refusal(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Failure", "reason": reason, "message": message,
                         "code": code}, status_code=code)


def pod_list(request: Request, pods: Sequence[dict[str, Any]]) -> Response:
    """A PodList (or its Table) of the ``pods`` the request's selectors select."""
    q = request.query_params
    if q.get("watch") in ("true", "1"):
        return _refusal(405, "MethodNotAllowed", "pods cannot be watched here (they are "
                        "the runtime's, without resourceVersions): list them again")
    try:
        fields = kube_selectors.field_selector(q.get("fieldSelector"))
        labels = kube_selectors.label_selector(q.get("labelSelector"))
    except ValueError as exc:
        return _refusal(400, "BadRequest", str(exc))
    items = [p for p in pods if fields(_key(p)) and labels(p)]
    if kube_tables.wants_table(request):
        return JSONResponse(kube_tables.table("Pod", items, str(int(time.time()))))
    return JSONResponse({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                         "items": items})


def pod(request: Request, body: dict[str, Any]) -> Response:
    """One pod, as a Table row when kubectl get asks for one."""
    if kube_tables.wants_table(request):
        return JSONResponse(kube_tables.table("Pod", [body], str(int(time.time()))))
    return JSONResponse(body)

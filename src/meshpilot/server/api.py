"""The control plane's HTTP API, with Kubernetes-style paths so habits carry over.

``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`` (and ``/api/v1/...`` for the
core group) read, create, replace and delete single objects; ``?watch=true`` on a
collection streams changes as newline-delimited JSON. Batch apply and delete of whole
files (all-or-nothing, with file/line diagnostics) live under ``/apis/meshpilot.io/v1``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

import meshpilot
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import KINDS, KindInfo, UnknownKind, by_kind, by_path
from meshpilot.server import (
    kube_apply,
    kube_discovery,
    kube_dry_run,
    kube_openapi,
    kube_patch,
    kube_pods,
    kube_protobuf,
    kube_responses,
    kube_selectors,
    kube_subresources,
    kube_tables,
    kube_watch,
)
from meshpilot.server.auth import BearerTokenMiddleware
from meshpilot.server.body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from meshpilot.server.config_service import ConfigService, Outcome, state_of
from meshpilot.server.dashboard.auth import DashboardAuth
from meshpilot.server.dashboard.gate import DashboardGate
from meshpilot.server.delete_options import (
    BadPreconditions,
    read_preconditions,
    refuse_orphaning,
)
from meshpilot.server.request_body import BadBody, parse_json
from meshpilot.store import Expired, StoredObject, Unavailable
from meshpilot.validation import Diagnostic, check_state, codes

MESHPILOT_API = "/apis/meshpilot.io/v1"
_WATCH_POLL_SECONDS = 0.05
_LIVE_STATUS_SECONDS = 0.5  # how often a Deployment watch looks at its pods' status


def _status(code: int, reason: str, message: str, diagnostic: str = "") -> JSONResponse:
    """A Kubernetes-style Status; ``diagnostic`` (a code such as MP0050) goes in
    ``details.causes`` so a client can tell refusals apart without reading the message."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": reason, "code": code,
                            "message": message}
    if diagnostic:
        body["details"] = {"causes": [{"reason": diagnostic, "message": message}]}
    return JSONResponse(body, status_code=code)


def _bad_body(exc: BadBody) -> JSONResponse:
    if isinstance(exc, UnsupportedBody):
        return _status(415, "UnsupportedMediaType", str(exc))
    return _status(400, "BadRequest", str(exc), exc.code)


class UnsupportedBody(BadBody):
    """A body in a media type meshpilot does not read (Kubernetes' protobuf)."""


def _scope_message(info: KindInfo) -> str:
    """Why a path does not serve ``info``: a namespaced kind has its objects under
    /namespaces/{ns}/, a cluster-scoped one (Namespace) does not."""
    if info.namespaced:
        return f"{info.plural} are namespaced: use {info.collection_path('<namespace>')}"
    return f"{info.plural} are cluster-scoped: use {info.collection_path(None)}"


def _no_pods(request: Request) -> bool:
    """A GET of the pods collection that reached the stored kinds' routes."""
    p = request.path_params
    return (request.method == "GET" and p.get("plural") == "pods"
            and not p.get("group") and p.get("version") == "v1")


def _outcome(outcome: Outcome) -> JSONResponse:
    return JSONResponse(outcome.to_json(), status_code=outcome.status)


def render(obj: StoredObject, info: KindInfo, version: str | None = None) -> dict[str, Any]:
    """The object as served at ``version`` (Istio's versions share one schema)."""
    body = dict(obj.body)
    body["apiVersion"] = info.api_version(version)
    return body


WATCH_BACKLOG_LIMIT = 10_000
"""Events one API watch may have queued and unsent; a client further behind is cut off
with 410 Gone and resumes from the last resourceVersion it saw."""


def _gone_event(limit: int) -> bytes:
    """The ERROR event Kubernetes sends a watcher that fell too far behind (410 Gone)."""
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
              "reason": "Expired",
              "message": f"this watch fell more than {limit} events behind "
                         "and was closed; watch again from the last resourceVersion seen"}
    return (json.dumps({"type": "ERROR", "object": status}) + "\n").encode()


# Live status of an object that the store does not hold (a Deployment's pods, from the
# runtime), by key; None when nothing runs it.
LiveStatus = Callable[[ObjectKey], dict[str, Any] | None]


class ControlPlaneAPI:
    def __init__(self, service: ConfigService, info: dict[str, Any],
                 live_status: LiveStatus | None = None,
                 watch_limit: int = WATCH_BACKLOG_LIMIT,
                 bookmark_seconds: float = kube_watch.BOOKMARK_SECONDS) -> None:
        self.service = service
        self.store = service.store
        self.info = info
        self.live_status = live_status
        self.watch_limit = watch_limit
        self.bookmark_seconds = bookmark_seconds
        self.openapi = kube_openapi.OpenAPIDocuments()

    def _table(self, info: KindInfo, objects: Sequence[StoredObject], version: str) -> Response:
        return JSONResponse(self._table_body(info, objects, version))

    def _table_body(self, info: KindInfo, objects: Sequence[StoredObject],
                    version: str) -> dict[str, Any]:
        """kubectl get's Table, a Deployment's status filled in from the runtime."""
        bodies = [self._served(obj, info, version) for obj in objects]
        return kube_tables.table(info.kind, bodies, str(self.store.revision()))

    def _served(self, obj: StoredObject, info: KindInfo,
                version: str | None = None) -> dict[str, Any]:
        """The object as a read serves it: a Deployment with its pods' status from the
        runtime (which the store does not hold)."""
        body = render(obj, info, version)
        live = self._live(obj)
        if live is not None:
            body["status"] = kube_subresources.deployment_status(body, live)
        return body

    def _live(self, obj: StoredObject) -> dict[str, Any] | None:
        return self.live_status(obj.key) if self.live_status is not None else None

    # --- helpers -------------------------------------------------------------
    @staticmethod
    def _kind(request: Request) -> KindInfo:
        p = request.path_params
        return by_path(p.get("group", ""), p["version"], p["plural"])

    @staticmethod
    async def _json(request: Request) -> Any:
        """The body as JSON; :class:`BadBody` (a ValueError) with where and why if not.

        kubectl's typed commands (``create namespace``, ``create configmap``) send
        protobuf: the kinds :mod:`kube_protobuf` reads are taken, others get 415 and a
        way that works."""
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media == kube_protobuf.MEDIA_TYPE:
            try:
                return kube_protobuf.decode(await request.body())
            except (kube_protobuf.UnreadableProtobuf, UnicodeDecodeError) as exc:
                raise UnsupportedBody(str(exc)) from None
        return parse_json(await request.body())

    # --- meta ----------------------------------------------------------------
    async def version(self, request: Request) -> Response:
        """meshpilot's own facts, plus the fields of Kubernetes' version.Info that
        ``kubectl version`` reads."""
        return JSONResponse({**kube_discovery.kube_version(meshpilot.__version__),
                             **self.info, "version": meshpilot.__version__,
                             "revision": self.store.revision()})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def discovery(self, request: Request) -> Response:
        """Kubernetes' APIGroupList for kubectl, and under ``resources`` meshpilot's own
        flat list of kinds (every version of each), which its clients read; the
        aggregated form when kubectl asks for it."""
        if kube_discovery.wants_aggregated(request.headers.get("accept", "")):
            return JSONResponse(kube_discovery.aggregated(core=False),
                                media_type=kube_discovery.AGGREGATED)
        return JSONResponse({**kube_discovery.api_group_list(), "resources": [
            {"group": k.group, "kind": k.kind, "plural": k.plural, "versions": list(k.versions),
             "shortNames": list(k.short_names), "namespaced": k.namespaced}
            for k in KINDS
        ]})

    async def core_versions(self, request: Request) -> Response:
        if kube_discovery.wants_aggregated(request.headers.get("accept", "")):
            return JSONResponse(kube_discovery.aggregated(core=True),
                                media_type=kube_discovery.AGGREGATED)
        return JSONResponse(kube_discovery.api_versions())

    async def resource_list(self, request: Request) -> Response:
        p = request.path_params
        found = kube_discovery.api_resource_list(p.get("group", ""), p["version"])
        if found is None:
            return _status(404, "NotFound", f"meshpilot serves nothing at {request.url.path}")
        return JSONResponse(found)

    async def openapi_index(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.openapi.index))

    async def openapi_v2(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.openapi.swagger))

    async def openapi_document(self, request: Request) -> Response:
        p = request.path_params
        found = await run_in_threadpool(self.openapi.document, p.get("group", ""),
                                        p["version"])
        if found is None:
            return _status(404, "NotFound", f"meshpilot serves nothing at {request.url.path}")
        return JSONResponse(found)

    # --- batch ---------------------------------------------------------------
    async def apply(self, request: Request) -> Response:
        try:
            payload = await self._json(request)
            sources = [(str(s["file"]), str(s["text"])) for s in payload["sources"]]
        except BadBody as exc:
            return _bad_body(exc)
        except (ValueError, KeyError, TypeError) as exc:
            return _status(400, "BadRequest",
                           f"expected {{'sources': [{{'file', 'text'}}]}}: {exc}")
        dry_run = bool(payload.get("dryRun"))
        # Parsing and validating a large apply takes seconds of CPU: off the event loop,
        # so /healthz and reads keep answering meanwhile.
        return _outcome(await run_in_threadpool(self.service.apply, sources, dry_run=dry_run))

    async def delete_batch(self, request: Request) -> Response:
        from meshpilot.validation import keys_in

        try:
            payload = await self._json(request)
        except BadBody as exc:
            return _bad_body(exc)
        try:
            if "sources" in payload:
                sources = [(str(s["file"]), str(s["text"])) for s in payload["sources"]]
                keys, problems = await run_in_threadpool(keys_in, sources)
                if problems:
                    return _outcome(Outcome(422, diagnostics=problems))
            else:
                keys = [ObjectKey(k.get("group", ""), k["kind"],
                                  by_kind(k["kind"]).scope(k.get("namespace")), k["name"])
                        for k in payload["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError, UnknownKind) as exc:
            return _status(400, "BadRequest", f"expected sources or keys: {exc}")
        return _outcome(await run_in_threadpool(
            self.service.delete, keys, ignore_missing=bool(payload.get("ignoreNotFound"))))

    async def diagnostics(self, request: Request) -> Response:
        """Every stored object's findings, or one object's (``describe``): judged on the
        object's neighbourhood in the state (the same findings), off the event loop."""
        q = request.query_params
        if not (q.get("kind") and q.get("name")):
            def everything() -> list[Diagnostic]:
                objects = state_of(self.store.list())
                return check_state(objects, all_objects=True) + \
                    self.service.more_findings(objects)

            found = await run_in_threadpool(everything)
        else:
            try:
                info = by_kind(q["kind"])
            except UnknownKind as exc:
                return _status(404, "NotFound", str(exc))
            key = ObjectKey(info.group, info.kind, info.scope(q.get("namespace")), q["name"])
            found = await run_in_threadpool(self.service.findings_about, key)
        return JSONResponse({"diagnostics": [d.to_dict() for d in found]})

    # --- Kubernetes-style objects -------------------------------------------
    async def collection(self, request: Request) -> Response:
        if _no_pods(request):
            # discovery lists pods (kubectl get all asks for them); where a runtime
            # runs, its routes answer before these, so here no pods run
            return kube_pods.pod_list(request, [])
        try:
            info = self._kind(request)
        except UnknownKind as exc:
            return _status(404, "NotFound", str(exc))
        ns = request.path_params.get("namespace")
        version = request.path_params["version"]
        if request.method == "POST":
            try:
                body = await self._json(request)
            except BadBody as exc:
                return _bad_body(exc)
            if not isinstance(body, dict):
                return _status(400, "BadRequest", "the body must be one JSON object")
            if (ns is not None) != info.namespaced:
                return _status(404, "NotFound", _scope_message(info))
            key = ObjectKey(info.group, info.kind, info.scope(ns), "")
            return await self._write(request, info, key, body, create_only=True)
        try:
            selected = self._selected(request)
        except ValueError as exc:
            return _status(400, "BadRequest", str(exc))
        if request.query_params.get("watch") in ("true", "1"):
            return self._watch(request, info, ns, selected)
        items = [o for o in self.store.list(group=info.group, kind=info.kind, namespace=ns)
                 if selected(o)]
        if kube_tables.wants_table(request):
            return self._table(info, items, version)
        return JSONResponse({
            "apiVersion": info.api_version(version),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self.store.revision())},
            "items": [self._served(o, info, version) for o in items],
        })

    @staticmethod
    def _selected(request: Request) -> Callable[[StoredObject], bool]:
        """The list's or watch's fieldSelector and labelSelector as one predicate."""
        fields = kube_selectors.field_selector(request.query_params.get("fieldSelector"))
        labels = kube_selectors.label_selector(request.query_params.get("labelSelector"))
        return lambda obj: fields(obj.key) and labels(obj.body)

    def _watch(self, request: Request, info: KindInfo, ns: str | None,
               selected: Callable[[StoredObject], bool]) -> Response:
        """Changes to ``info``'s objects as lines of JSON.

        For a Kubernetes client a resourceVersion of 0 or none means what it means to an
        API server: the current objects as ADDED events, then the changes; each object a
        Table when the client asks for one. Otherwise 0 replays the store's history."""
        raw = request.query_params.get("resourceVersion")
        kube = kube_responses.wants_kube(request)
        initial: list[StoredObject] = []
        try:
            since = int(raw) if raw else None
            timeout = float(request.query_params.get("timeoutSeconds", "300"))
            if kube and not since:
                since = self.store.revision()
                initial = self.store.list(group=info.group, kind=info.kind, namespace=ns)
            watch = self.store.watch(since, limit=self.watch_limit)
        except ValueError:
            return _status(400, "BadRequest", "resourceVersion and timeoutSeconds are numbers")
        except Expired as exc:
            return _status(410, "Expired", str(exc))
        version = request.path_params["version"]
        as_table = kube_tables.wants_table(request)

        def wanted(obj: StoredObject) -> bool:
            key = obj.key
            return (key.kind == info.kind and key.group == info.group
                    and (ns is None or key.namespace == ns) and selected(obj))

        def line(kind: str, obj: StoredObject) -> bytes:
            body = self._served(obj, info, version)
            if as_table:
                body = self._table_body(info, [obj], version)
            return (json.dumps({"type": kind, "object": body}) + "\n").encode()

        # An async generator that polls without blocking: a sync one runs in a worker
        # thread blocked in watch.get() until the next event or the watch's timeout, so
        # a disconnected client leaked that thread and a SIGTERM could not stop the
        # process until every watch had timed out (300s by default).
        live = kube_subresources.LiveStatusWatch(self._live)
        if kube and not initial and info.kind == "Deployment" and self.live_status:
            for obj in self.store.list(group=info.group, kind=info.kind, namespace=ns):
                if wanted(obj):
                    live.follow(obj)

        def sent(kind: str, obj: StoredObject) -> bytes:
            live.sent(kind, obj)
            return line(kind, obj)

        bookmarks = kube_watch.Bookmarks(
            info.api_version(version), info.kind, since or 0, self.bookmark_seconds,
            enabled=kube and not as_table
            and request.query_params.get("allowWatchBookmarks") == "true")

        def ticks() -> list[bytes]:
            """What a quiet watch sends: Deployments whose pods changed (the objects did
            not), and a bookmark when one is due."""
            found = [sent("MODIFIED", obj) for obj in live.changed()]
            return [*found, *bookmarks.due(time.monotonic())]

        async def events() -> AsyncIterator[bytes]:
            deadline = time.monotonic() + timeout
            next_tick = time.monotonic() + _LIVE_STATUS_SECONDS
            try:
                for obj in initial:
                    if wanted(obj):
                        yield sent("ADDED", obj)
                while time.monotonic() < deadline:
                    event = watch.get(timeout=0)
                    if event is None and watch.overflowed:
                        yield _gone_event(self.watch_limit)
                        return
                    if event is not None:
                        bookmarks.saw(event.resource_version)
                        if wanted(event.object):
                            yield sent(event.type, event.object)
                    elif time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + _LIVE_STATUS_SECONDS
                        for chunk in ticks():
                            yield chunk
                    else:
                        await asyncio.sleep(_WATCH_POLL_SECONDS)
            finally:
                watch.close()

        # client-go picks its stream decoder by this type; it has none for ndjson
        media = "application/json" if kube else "application/x-ndjson"
        return StreamingResponse(events(), media_type=media)

    async def item(self, request: Request) -> Response:
        try:
            info = self._kind(request)
        except UnknownKind as exc:
            return _status(404, "NotFound", str(exc))
        p = request.path_params
        if ("namespace" in p) != info.namespaced:
            return _status(404, "NotFound", _scope_message(info))
        key = ObjectKey(info.group, info.kind, info.scope(p.get("namespace")), p["name"])
        if request.method == "GET":
            obj = self.store.get(key)
            if obj is None:
                return _status(404, "NotFound", f"{key} not found")
            if kube_tables.wants_table(request):
                return self._table(info, [obj], p["version"])
            return JSONResponse(self._served(obj, info, p["version"]))
        if request.method == "DELETE":
            return await self._delete_one(request, key, info)
        if request.method == "PATCH":
            return await self._patch(request, info, key)
        try:
            body = await self._json(request)
        except BadBody as exc:
            return _bad_body(exc)
        if not isinstance(body, dict):
            return _status(400, "BadRequest", "the body must be one JSON object")
        return await self._write(request, info, key, body, create_only=False)

    async def _patch(self, request: Request, info: KindInfo, key: ObjectKey) -> Response:
        """PATCH: the patch applied to the stored object, then written like a PUT, so it
        passes the same validation; the stored resourceVersion goes with it, so a write
        in between makes this one a conflict instead of being overwritten. A server-side
        apply may create the object."""
        obj = self.store.get(key)
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media == kube_apply.APPLY_PATCH:
            return await self._server_side_apply(request, info, key, obj)
        if obj is None:
            return _status(404, "NotFound", f"{key} not found")
        try:
            patched = kube_patch.apply_patch(render(obj, info), await request.body(), media)
        except kube_patch.PatchError as exc:
            return _status(exc.status, "BadRequest" if exc.status == 400
                           else "UnsupportedMediaType", str(exc))
        return await self._write(request, info, key, patched, create_only=False)

    async def _server_side_apply(self, request: Request, info: KindInfo, key: ObjectKey,
                                 obj: StoredObject | None) -> Response:
        """``kubectl apply --server-side``: the applied object merged into the stored one
        under its field manager; a conflict with another manager is a 409 naming the
        fields, unless forced."""
        q = request.query_params
        if not q.get("fieldManager"):
            return _status(400, "BadRequest", "fieldManager is required for an apply patch")
        try:
            applied = kube_apply.applied_object(await request.body())
            body = kube_apply.apply_upgrading(
                render(obj, info) if obj is not None else None, applied, q["fieldManager"],
                force=q.get("force") == "true")
        except kube_apply.BadApply as exc:
            return _status(400, "BadRequest", str(exc))
        except kube_apply.ApplyConflicts as exc:
            return kube_responses.status(409, str(exc), info, key.name, exc.causes())
        return await self._write(request, info, key, body, create_only=False, tracked=True)

    async def _write(self, request: Request, info: KindInfo, key: ObjectKey,
                     body: dict[str, Any], *, create_only: bool,
                     tracked: bool = False) -> Response:
        """Create or replace one object through the config service; the answer in
        Kubernetes' shape for a Kubernetes client, else meshpilot's Outcome. The fields
        it changes are recorded under its field manager (unless ``tracked`` already)."""
        try:
            dry_run = kube_dry_run.requested(request.query_params.getlist("dryRun"))
        except kube_dry_run.BadDryRun as exc:
            return _status(400, "BadRequest", str(exc))
        name = key.name or str((body.get("metadata") or {}).get("name", ""))
        target = ObjectKey(key.group, key.kind, key.namespace, name)
        current = self.store.get(target) if name else None
        if not tracked:
            manager = kube_apply.manager_of(request.query_params.get("fieldManager"),
                                            request.headers.get("user-agent", ""))
            body = kube_apply.track_update(
                render(current, info) if current is not None and not create_only else None,
                body, manager)
        outcome = await run_in_threadpool(
            self.service.put_object, key, body, create_only=create_only, dry_run=dry_run)
        if not kube_responses.wants_kube(request):
            return _outcome(outcome)
        if outcome.status != 200:
            return kube_responses.refusal(
                outcome, info, name, create_only=create_only,
                field_validation=request.query_params.get("fieldValidation"))
        created = bool(outcome.results) and outcome.results[0]["action"].startswith("created")
        version = request.path_params["version"]
        if dry_run:
            return kube_responses.written(
                kube_dry_run.preview(body, current, info.api_version(version)),
                outcome, created)
        stored = self.store.get(target)
        if stored is None:  # deleted again by another writer since this one
            return _status(404, "NotFound", f"{key.kind} {key.namespace}/{name} not found")
        return kube_responses.written(render(stored, info, version), outcome, created)

    async def _delete_one(self, request: Request, key: ObjectKey, info: KindInfo) -> Response:
        try:
            options = await self._json(request)
            refuse_orphaning(request.query_params.get("propagationPolicy"), options)
            pre = read_preconditions(request.query_params.get("resourceVersion"), options)
            dry_run = kube_dry_run.requested([
                *request.query_params.getlist("dryRun"),
                *kube_dry_run.from_delete_options(options)])
        except BadBody as exc:
            return _bad_body(exc)
        except (BadPreconditions, kube_dry_run.BadDryRun) as exc:
            refused = Outcome(400, diagnostics=[Diagnostic.of(
                codes.INVALID_VALUE, str(exc), path="deleteOptions", object=str(key))])
            return (kube_responses.refusal(refused, info, key.name)
                    if kube_responses.wants_kube(request) else _outcome(refused))
        if dry_run:
            outcome = self._delete_preview(key, pre.resource_version)
        else:
            outcome = await run_in_threadpool(
                self.service.delete, [key], expected=pre.resource_version,
                expected_uid=pre.uid)
        if not kube_responses.wants_kube(request):
            return _outcome(outcome)
        if outcome.status != 200:
            return kube_responses.refusal(outcome, info, key.name)
        return kube_responses.deleted(outcome, info, key.name)

    def _delete_preview(self, key: ObjectKey, expected: int | None) -> Outcome:
        """A dry-run delete: refused as the delete would be (missing, stale), else a
        success that deletes nothing."""
        obj = self.store.get(key)
        if obj is None:
            return Outcome(404, diagnostics=[Diagnostic.of(
                codes.NOT_FOUND, f"{key} not found", object=str(key))])
        if expected is not None and expected != obj.resource_version:
            return Outcome(409, diagnostics=[Diagnostic.of(
                codes.CONFLICT, f"{key} changed: expected resourceVersion {expected}, "
                f"stored {obj.resource_version}", object=str(key),
                path="metadata.resourceVersion")])
        return Outcome(200, [{"kind": key.kind, "name": key.name, "action": "deleted (dry run)"}])

    async def subresource(self, request: Request) -> Response:
        """``.../{name}/scale`` and ``.../{name}/status`` (:mod:`kube_subresources`)."""
        try:
            info = self._kind(request)
        except UnknownKind as exc:
            return _status(404, "NotFound", str(exc))
        p = request.path_params
        key = ObjectKey(info.group, info.kind, info.scope(p.get("namespace")), p["name"])
        which = request.url.path.rsplit("/", 1)[1]
        obj = self.store.get(key)
        if (which == "scale" and not kube_subresources.scalable(info.kind, info.group)) or (
                ("namespace" in p) != info.namespaced):
            return _status(404, "NotFound", f"{info.plural} have no {which} subresource")
        if obj is None:
            return _status(404, "NotFound", f"{key} not found")
        if which == "status":
            return self._status_subresource(request, info, obj)
        return await self._scale(request, info, key, obj)

    def _status_subresource(self, request: Request, info: KindInfo,
                            obj: StoredObject) -> Response:
        if request.method != "GET":
            return _status(405, "MethodNotAllowed",
                           f"the status of {info.plural} is written by meshpilot itself (what "
                           "it observes of pods and rollouts); change the object's spec instead")
        version = request.path_params["version"]
        if kube_tables.wants_table(request):
            return self._table(info, [obj], version)
        return JSONResponse(self._served(obj, info, version))

    async def _scale(self, request: Request, info: KindInfo, key: ObjectKey,
                     obj: StoredObject) -> Response:
        """The Scale of a Deployment (or Rollout); a write sets its spec.replicas through
        the same path as any other write, and answers with the new Scale."""
        current = kube_subresources.scale_of(self._served(obj, info))
        if request.method == "GET":
            return JSONResponse(current)
        try:
            if request.method == "PATCH":
                wanted = kube_patch.apply_patch(current, await request.body(),
                                                request.headers.get("content-type", ""))
            else:
                wanted = await self._json(request)
            body = kube_subresources.scaled(render(obj, info), wanted)
        except kube_patch.PatchError as exc:
            return _status(exc.status, "BadRequest" if exc.status == 400
                           else "UnsupportedMediaType", str(exc))
        except (BadBody, kube_subresources.BadScale) as exc:
            return _status(400, "BadRequest", str(exc))
        answer = await self._write(request, info, key, body, create_only=False)
        if answer.status_code >= 300 or not kube_responses.wants_kube(request):
            return answer
        return JSONResponse(kube_subresources.scale_of(json.loads(bytes(answer.body))),
                            status_code=200, headers={
                                k: v for k, v in answer.headers.items() if k == "warning"})

    def routes(self) -> list[Route]:
        routes = [
            Route("/version", self.version),
            Route("/healthz", self.healthz),
            Route("/apis", self.discovery),
            Route("/api", self.core_versions),
            Route("/api/{version}", self.resource_list),
            Route("/apis/{group}/{version}", self.resource_list),
            Route("/openapi/v2", self.openapi_v2),
            Route("/openapi/v3", self.openapi_index),
            Route("/openapi/v3/api/{version}", self.openapi_document),
            Route("/openapi/v3/apis/{group}/{version}", self.openapi_document),
            Route(f"{MESHPILOT_API}/apply", self.apply, methods=["POST"]),
            Route(f"{MESHPILOT_API}/delete", self.delete_batch, methods=["POST"]),
            Route(f"{MESHPILOT_API}/diagnostics", self.diagnostics),
        ]
        for root in ("/api/{version}", "/apis/{group}/{version}"):
            routes += [
                Route(root + "/{plural}", self.collection, methods=["GET", "POST"]),
                Route(root + "/namespaces/{namespace}/{plural}", self.collection,
                      methods=["GET", "POST"]),
                Route(root + "/namespaces/{namespace}/{plural}/{name}", self.item,
                      methods=["GET", "PUT", "PATCH", "DELETE"]),
                # a cluster-scoped object (a Namespace): /api/v1/namespaces/{name}
                Route(root + "/{plural}/{name}", self.item,
                      methods=["GET", "PUT", "PATCH", "DELETE"]),
                *[Route(root + "/namespaces/{namespace}/{plural}/{name}/" + sub, self.subresource,
                        methods=["GET", "PUT", "PATCH"]) for sub in ("scale", "status")],
                *[Route(root + "/{plural}/{name}/" + sub, self.subresource,
                        methods=["GET", "PUT", "PATCH"]) for sub in ("scale", "status")],
            ]
        return routes


async def _unreachable(request: Request, exc: Exception) -> Response:
    """A read (or any route) the store could not answer: etcd out of reach is 503 with
    its reason, as an apply's write is, not a server error."""
    outcome = Outcome(503, diagnostics=[Diagnostic.of(codes.STORE_UNREACHABLE, str(exc))])
    return JSONResponse(outcome.to_json(), status_code=503)


def create_app(
    service: ConfigService, token: str, info: dict[str, Any],
    extra_routes: Sequence[BaseRoute] = (), max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    dashboard: DashboardAuth | None = None, live_status: LiveStatus | None = None,
    watch_limit: int = WATCH_BACKLOG_LIMIT,
    bookmark_seconds: float = kube_watch.BOOKMARK_SECONDS,
) -> Any:
    """The ASGI app: every route behind the bearer-token check, then the body limit (so
    a client without the token cannot make the control plane read a body at all). With
    ``dashboard``, a browser signed in to the dashboard passes its gate instead."""
    api = ControlPlaneAPI(service, info, live_status, watch_limit, bookmark_seconds)
    app = BodyLimitMiddleware(Starlette(routes=[*extra_routes, *api.routes()],
                                        exception_handlers={Unavailable: _unreachable}),
                              max_body_bytes)
    bearer = BearerTokenMiddleware(app, token)
    return bearer if dashboard is None else DashboardGate(app, bearer, dashboard)

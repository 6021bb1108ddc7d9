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
    kube_discovery,
    kube_openapi,
    kube_patch,
    kube_responses,
    kube_selectors,
    kube_tables,
)
from meshpilot.server.auth import BearerTokenMiddleware
from meshpilot.server.body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from meshpilot.server.config_service import ConfigService, Outcome, state_of
from meshpilot.server.dashboard.auth import DashboardAuth
from meshpilot.server.dashboard.gate import DashboardGate
from meshpilot.server.delete_options import BadPreconditions, read_preconditions
from meshpilot.server.request_body import BadBody, parse_json
from meshpilot.store import Expired, StoredObject
from meshpilot.validation import Diagnostic, check_state, codes

MESHPILOT_API = "/apis/meshpilot.io/v1"
_WATCH_POLL_SECONDS = 0.05


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
                 watch_limit: int = WATCH_BACKLOG_LIMIT) -> None:
        self.service = service
        self.store = service.store
        self.info = info
        self.live_status = live_status
        self.watch_limit = watch_limit

    def _table(self, info: KindInfo, objects: Sequence[StoredObject], version: str) -> Response:
        return JSONResponse(self._table_body(info, objects, version))

    def _table_body(self, info: KindInfo, objects: Sequence[StoredObject],
                    version: str) -> dict[str, Any]:
        """kubectl get's Table, a Deployment's status filled in from the runtime."""
        bodies = []
        for obj in objects:
            body = render(obj, info, version)
            live = self.live_status(obj.key) if self.live_status is not None else None
            if live is not None:
                body["status"] = live
            bodies.append(body)
        return kube_tables.table(info.kind, bodies, str(self.store.revision()))

    # --- helpers -------------------------------------------------------------
    @staticmethod
    def _kind(request: Request) -> KindInfo:
        p = request.path_params
        return by_path(p.get("group", ""), p["version"], p["plural"])

    @staticmethod
    async def _json(request: Request) -> Any:
        """The body as JSON; :class:`BadBody` (a ValueError) with where and why if not.

        kubectl's typed commands (``create namespace``, ``scale``) send protobuf, whose
        schemas meshpilot does not have: those get 415 and a way that works."""
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media == "application/vnd.kubernetes.protobuf":
            raise UnsupportedBody(
                "meshpilot reads JSON bodies, not Kubernetes protobuf: write the object "
                "in a file and use kubectl apply -f (or create -f)")
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
        flat list of kinds (every version of each), which its clients read."""
        return JSONResponse({**kube_discovery.api_group_list(), "resources": [
            {"group": k.group, "kind": k.kind, "plural": k.plural, "versions": list(k.versions),
             "shortNames": list(k.short_names), "namespaced": k.namespaced}
            for k in KINDS
        ]})

    async def core_versions(self, request: Request) -> Response:
        return JSONResponse(kube_discovery.api_versions())

    async def resource_list(self, request: Request) -> Response:
        p = request.path_params
        found = kube_discovery.api_resource_list(p.get("group", ""), p["version"])
        if found is None:
            return _status(404, "NotFound", f"meshpilot serves nothing at {request.url.path}")
        return JSONResponse(found)

    async def openapi_index(self, request: Request) -> Response:
        return JSONResponse(kube_openapi.index())

    async def openapi_document(self, request: Request) -> Response:
        p = request.path_params
        found = kube_openapi.group_version_document(p.get("group", ""), p["version"])
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
            found = await run_in_threadpool(
                lambda: check_state(state_of(self.store.list()), all_objects=True))
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
            "items": [render(o, info, version) for o in items],
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
            body = render(obj, info, version)
            if as_table:
                body = self._table_body(info, [obj], version)
            return (json.dumps({"type": kind, "object": body}) + "\n").encode()

        # An async generator that polls without blocking: a sync one runs in a worker
        # thread blocked in watch.get() until the next event or the watch's timeout, so
        # a disconnected client leaked that thread and a SIGTERM could not stop the
        # process until every watch had timed out (300s by default).
        async def events() -> AsyncIterator[bytes]:
            deadline = time.monotonic() + timeout
            try:
                for obj in initial:
                    if wanted(obj):
                        yield line("ADDED", obj)
                while time.monotonic() < deadline:
                    event = watch.get(timeout=0)
                    if event is None and watch.overflowed:
                        yield _gone_event(self.watch_limit)
                        return
                    if event is None:
                        await asyncio.sleep(_WATCH_POLL_SECONDS)
                    elif wanted(event.object):
                        yield line(event.type, event.object)
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
            return JSONResponse(render(obj, info, p["version"]))
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
        in between makes this one a conflict instead of being overwritten."""
        obj = self.store.get(key)
        if obj is None:
            return _status(404, "NotFound", f"{key} not found")
        try:
            patched = kube_patch.apply_patch(render(obj, info), await request.body(),
                                             request.headers.get("content-type", ""))
        except kube_patch.PatchError as exc:
            return _status(exc.status, "BadRequest" if exc.status == 400
                           else "UnsupportedMediaType", str(exc))
        return await self._write(request, info, key, patched, create_only=False)

    async def _write(self, request: Request, info: KindInfo, key: ObjectKey,
                     body: dict[str, Any], *, create_only: bool) -> Response:
        """Create or replace one object through the config service; the answer in
        Kubernetes' shape for a Kubernetes client, else meshpilot's Outcome."""
        if request.query_params.get("dryRun"):
            return _status(400, "BadRequest", "dryRun is not supported on this path yet; "
                           "use `meshpilot apply --dry-run`")
        outcome = await run_in_threadpool(
            self.service.put_object, key, body, create_only=create_only)
        if not kube_responses.wants_kube(request):
            return _outcome(outcome)
        name = key.name or str((body.get("metadata") or {}).get("name", ""))
        if outcome.status != 200:
            return kube_responses.refusal(outcome, info, name, create_only=create_only)
        stored = self.store.get(ObjectKey(key.group, key.kind, key.namespace, name))
        if stored is None:  # deleted again by another writer since this one
            return _status(404, "NotFound", f"{key.kind} {key.namespace}/{name} not found")
        created = bool(outcome.results) and outcome.results[0]["action"] == "created"
        version = request.path_params["version"]
        return kube_responses.written(render(stored, info, version), outcome, created)

    async def _delete_one(self, request: Request, key: ObjectKey, info: KindInfo) -> Response:
        try:
            pre = read_preconditions(request.query_params.get("resourceVersion"),
                                     await self._json(request))
        except BadBody as exc:
            return _bad_body(exc)
        except BadPreconditions as exc:
            return _outcome(Outcome(400, diagnostics=[Diagnostic.of(
                codes.INVALID_VALUE, str(exc), path="preconditions", object=str(key))]))
        if request.query_params.get("dryRun"):
            return _status(400, "BadRequest", "dryRun is not supported on this path yet")
        outcome = await run_in_threadpool(
            self.service.delete, [key], expected=pre.resource_version, expected_uid=pre.uid)
        if not kube_responses.wants_kube(request):
            return _outcome(outcome)
        if outcome.status != 200:
            return kube_responses.refusal(outcome, info, key.name)
        return kube_responses.deleted(outcome, info, key.name)

    def routes(self) -> list[Route]:
        routes = [
            Route("/version", self.version),
            Route("/healthz", self.healthz),
            Route("/apis", self.discovery),
            Route("/api", self.core_versions),
            Route("/api/{version}", self.resource_list),
            Route("/apis/{group}/{version}", self.resource_list),
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
            ]
        return routes


def create_app(
    service: ConfigService, token: str, info: dict[str, Any],
    extra_routes: Sequence[BaseRoute] = (), max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    dashboard: DashboardAuth | None = None, live_status: LiveStatus | None = None,
    watch_limit: int = WATCH_BACKLOG_LIMIT,
) -> Any:
    """The ASGI app: every route behind the bearer-token check, then the body limit (so
    a client without the token cannot make the control plane read a body at all). With
    ``dashboard``, a browser signed in to the dashboard passes its gate instead."""
    api = ControlPlaneAPI(service, info, live_status, watch_limit)
    app = BodyLimitMiddleware(Starlette(routes=[*extra_routes, *api.routes()]),
                              max_body_bytes)
    bearer = BearerTokenMiddleware(app, token)
    return bearer if dashboard is None else DashboardGate(app, bearer, dashboard)

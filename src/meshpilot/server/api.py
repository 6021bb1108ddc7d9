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
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

import meshpilot
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import KINDS, KindInfo, UnknownKind, by_kind, by_path
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
    body: dict[str, Any] = {"kind": "Status", "status": "Failure", "reason": reason,
                            "code": code, "message": message}
    if diagnostic:
        body["details"] = {"causes": [{"reason": diagnostic, "message": message}]}
    return JSONResponse(body, status_code=code)


def _bad_body(exc: BadBody) -> JSONResponse:
    return _status(400, "BadRequest", str(exc), exc.code)


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


class ControlPlaneAPI:
    def __init__(self, service: ConfigService, info: dict[str, Any]) -> None:
        self.service = service
        self.store = service.store
        self.info = info

    # --- helpers -------------------------------------------------------------
    @staticmethod
    def _kind(request: Request) -> KindInfo:
        p = request.path_params
        return by_path(p.get("group", ""), p["version"], p["plural"])

    @staticmethod
    async def _json(request: Request) -> Any:
        """The body as JSON; :class:`BadBody` (a ValueError) with where and why if not."""
        return parse_json(await request.body())

    # --- meta ----------------------------------------------------------------
    async def version(self, request: Request) -> Response:
        return JSONResponse({**self.info, "version": meshpilot.__version__,
                             "revision": self.store.revision()})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({"resources": [
            {"group": k.group, "kind": k.kind, "plural": k.plural, "versions": list(k.versions),
             "shortNames": list(k.short_names), "namespaced": k.namespaced}
            for k in KINDS
        ]})

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
        q = request.query_params
        found = check_state(state_of(self.store.list()), all_objects=True)
        wanted = None
        if q.get("kind") and q.get("name"):
            try:
                namespace = by_kind(q["kind"]).scope(q.get("namespace"))
            except UnknownKind as exc:
                return _status(404, "NotFound", str(exc))
            wanted = str(ObjectKey(q.get("group", ""), q["kind"], namespace, q["name"]))
        return JSONResponse({"diagnostics": [
            d.to_dict() for d in found if wanted is None or d.object == wanted]})

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
            return _outcome(await run_in_threadpool(
                self.service.put_object, key, body, create_only=True))
        if request.query_params.get("watch") in ("true", "1"):
            return self._watch(request, info, ns)
        items = self.store.list(group=info.group, kind=info.kind, namespace=ns)
        return JSONResponse({
            "apiVersion": info.api_version(version),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self.store.revision())},
            "items": [render(o, info, version) for o in items],
        })

    def _watch(self, request: Request, info: KindInfo, ns: str | None) -> Response:
        raw = request.query_params.get("resourceVersion")
        try:
            since = int(raw) if raw else None
            timeout = float(request.query_params.get("timeoutSeconds", "300"))
            watch = self.store.watch(since)
        except ValueError:
            return _status(400, "BadRequest", "resourceVersion and timeoutSeconds are numbers")
        except Expired as exc:
            return _status(410, "Expired", str(exc))
        version = request.path_params["version"]

        # An async generator that polls without blocking: a sync one runs in a worker
        # thread blocked in watch.get() until the next event or the watch's timeout, so
        # a disconnected client leaked that thread and a SIGTERM could not stop the
        # process until every watch had timed out (300s by default).
        async def events() -> AsyncIterator[bytes]:
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    event = watch.get(timeout=0)
                    if event is None:
                        await asyncio.sleep(_WATCH_POLL_SECONDS)
                        continue
                    key = event.object.key
                    if key.kind != info.kind or key.group != info.group:
                        continue
                    if ns is not None and key.namespace != ns:
                        continue
                    line = {"type": event.type, "object": render(event.object, info, version)}
                    yield (json.dumps(line) + "\n").encode()
            finally:
                watch.close()

        return StreamingResponse(events(), media_type="application/x-ndjson")

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
            return JSONResponse(render(obj, info, p["version"]))
        if request.method == "DELETE":
            return await self._delete_one(request, key)
        try:
            body = await self._json(request)
        except BadBody as exc:
            return _bad_body(exc)
        if not isinstance(body, dict):
            return _status(400, "BadRequest", "the body must be one JSON object")
        return _outcome(await run_in_threadpool(
            self.service.put_object, key, body, create_only=False))

    async def _delete_one(self, request: Request, key: ObjectKey) -> Response:
        try:
            pre = read_preconditions(request.query_params.get("resourceVersion"),
                                     await self._json(request))
        except BadBody as exc:
            return _bad_body(exc)
        except BadPreconditions as exc:
            return _outcome(Outcome(400, diagnostics=[Diagnostic.of(
                codes.INVALID_VALUE, str(exc), path="preconditions", object=str(key))]))
        return _outcome(await run_in_threadpool(
            self.service.delete, [key], expected=pre.resource_version, expected_uid=pre.uid))

    def routes(self) -> list[Route]:
        routes = [
            Route("/version", self.version),
            Route("/healthz", self.healthz),
            Route("/apis", self.discovery),
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
                      methods=["GET", "PUT", "DELETE"]),
                # a cluster-scoped object (a Namespace): /api/v1/namespaces/{name}
                Route(root + "/{plural}/{name}", self.item, methods=["GET", "PUT", "DELETE"]),
            ]
        return routes


def create_app(
    service: ConfigService, token: str, info: dict[str, Any],
    extra_routes: Sequence[BaseRoute] = (), max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    dashboard: DashboardAuth | None = None,
) -> Any:
    """The ASGI app: every route behind the bearer-token check, then the body limit (so
    a client without the token cannot make the control plane read a body at all). With
    ``dashboard``, a browser signed in to the dashboard passes its gate instead."""
    api = ControlPlaneAPI(service, info)
    app = BodyLimitMiddleware(Starlette(routes=[*extra_routes, *api.routes()]),
                              max_body_bytes)
    bearer = BearerTokenMiddleware(app, token)
    return bearer if dashboard is None else DashboardGate(app, bearer, dashboard)

"""The control plane's HTTP API, with Kubernetes-style paths so habits carry over.

``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`` (and ``/api/v1/...`` for the
core group) read, create, replace and delete single objects; ``?watch=true`` on a
collection streams changes as newline-delimited JSON. Batch apply and delete of whole
files (all-or-nothing, with file/line diagnostics) live under ``/apis/meshpilot.io/v1``.

This module composes the app: the handlers live in the ``api_*`` modules beside it, one
job each (:mod:`api_meta` discovery and health, :mod:`api_batch` meshpilot's batch
endpoints, :mod:`api_objects` single objects, :mod:`api_lists` and :mod:`api_watch`
collections, :mod:`api_writes` writes, :mod:`api_subresources` scale and status).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from meshpilot.server import kube_watch
from meshpilot.server.api_batch import BatchAPI
from meshpilot.server.api_lists import CollectionReads
from meshpilot.server.api_meta import MetaAPI
from meshpilot.server.api_objects import ObjectsAPI
from meshpilot.server.api_subresources import SubresourcesAPI
from meshpilot.server.api_views import LiveStatus, ObjectViews
from meshpilot.server.api_watch import WATCH_BACKLOG_LIMIT, CollectionWatch
from meshpilot.server.api_writes import ObjectWrites
from meshpilot.server.auth import BearerTokenMiddleware
from meshpilot.server.body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from meshpilot.server.config_service import ConfigService, Outcome
from meshpilot.server.dashboard.auth import DashboardAuth
from meshpilot.server.dashboard.gate import DashboardGate
from meshpilot.store import Unavailable
from meshpilot.validation import Diagnostic, codes

_ROOTS = ("/api/{version}", "/apis/{group}/{version}")
"""Where the core group's objects live, and every other group's."""


def api_routes(service: ConfigService, info: dict[str, Any],
               live_status: LiveStatus | None = None,
               watch_limit: int = WATCH_BACKLOG_LIMIT,
               bookmark_seconds: float = kube_watch.BOOKMARK_SECONDS) -> list[BaseRoute]:
    """Every route of the API, in the order they are matched: the facts about the API,
    meshpilot's batch endpoints, then each root's objects and their subresources."""
    views = ObjectViews(service.store, live_status)
    writes = ObjectWrites(service)
    objects = ObjectsAPI(views, CollectionReads(
        views, CollectionWatch(views, watch_limit, bookmark_seconds)), writes)
    subresources = SubresourcesAPI(views, writes)
    routes: list[BaseRoute] = [*MetaAPI(service.store, info).routes(),
                               *BatchAPI(service).routes()]
    for root in _ROOTS:
        routes += [*objects.routes(root), *subresources.routes(root)]
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
    routes = api_routes(service, info, live_status, watch_limit, bookmark_seconds)
    app = BodyLimitMiddleware(Starlette(routes=[*extra_routes, *routes],
                                        exception_handlers={Unavailable: _unreachable}),
                              max_body_bytes)
    bearer = BearerTokenMiddleware(app, token)
    return bearer if dashboard is None else DashboardGate(app, bearer, dashboard)

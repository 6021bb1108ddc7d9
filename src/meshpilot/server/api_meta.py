"""The API's facts about itself: version, health, discovery and OpenAPI documents.

kubectl reads these before anything else (which groups and kinds exist, their schemas for
``explain`` and client-side validation); they say nothing about stored objects, so they
live apart from the handlers that read and write them.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import meshpilot
from meshpilot.api.kinds import KINDS
from meshpilot.server import kube_discovery, kube_openapi
from meshpilot.server.api_replies import failure
from meshpilot.store import ConfigStore


class MetaAPI:
    """``/version``, ``/healthz``, ``/api``, ``/apis`` and ``/openapi`` (see the module)."""

    def __init__(self, store: ConfigStore, info: dict[str, Any]) -> None:
        self.store = store
        self.info = info
        self.openapi = kube_openapi.OpenAPIDocuments()

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
            return failure(404, "NotFound", f"meshpilot serves nothing at {request.url.path}")
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
            return failure(404, "NotFound", f"meshpilot serves nothing at {request.url.path}")
        return JSONResponse(found)

    def routes(self) -> list[Route]:
        return [
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
        ]

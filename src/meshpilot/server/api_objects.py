"""Kubernetes-style paths of stored objects: a collection and one object in it.

``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`` (and ``/api/v1/...`` for the
core group, and without ``/namespaces/{ns}`` for a cluster-scoped kind): this module
resolves the kind and key a path names and hands the verb to the reads
(:mod:`api_lists`, :mod:`api_views`) or the writes (:mod:`api_writes`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import UnknownKind
from meshpilot.server import kube_pods, kube_tables
from meshpilot.server.api_lists import CollectionReads
from meshpilot.server.api_replies import bad_body, failure, scope_message
from meshpilot.server.api_requests import kind_of, read_body
from meshpilot.server.api_views import ObjectViews
from meshpilot.server.api_writes import ObjectWrites
from meshpilot.server.request_body import BadBody

_ITEM_METHODS = ("GET", "PUT", "PATCH", "DELETE")


async def _object_body(request: Request) -> dict[str, Any] | Response:
    """The request's body as one JSON object, or the answer refusing it: a create or a
    replace writes exactly one object."""
    try:
        body = await read_body(request)
    except BadBody as exc:
        return bad_body(exc)
    if not isinstance(body, dict):
        return failure(400, "BadRequest", "the body must be one JSON object")
    return body


def _no_pods(request: Request) -> bool:
    """A GET of the pods collection that reached the stored kinds' routes."""
    p = request.path_params
    return (request.method == "GET" and p.get("plural") == "pods"
            and not p.get("group") and p.get("version") == "v1")


class ObjectsAPI:
    """The collection and item routes of every stored kind (see the module)."""

    def __init__(self, views: ObjectViews, reads: CollectionReads,
                 writes: ObjectWrites) -> None:
        self.views = views
        self.store = views.store
        self.reads = reads
        self.writes = writes

    async def collection(self, request: Request) -> Response:
        """GET lists or watches the collection; POST creates an object in it."""
        if _no_pods(request):
            # discovery lists pods (kubectl get all asks for them); where a runtime
            # runs, its routes answer before these, so here no pods run
            return kube_pods.pod_list(request, [])
        try:
            info = kind_of(request)
        except UnknownKind as exc:
            return failure(404, "NotFound", str(exc))
        ns = request.path_params.get("namespace")
        if request.method != "POST":
            return self.reads.read(request, info, ns)
        body = await _object_body(request)
        if isinstance(body, Response):
            return body
        if (ns is not None) != info.namespaced:
            return failure(404, "NotFound", scope_message(info))
        key = ObjectKey(info.group, info.kind, info.scope(ns), "")
        return await self.writes.write(request, info, key, body, create_only=True)

    async def item(self, request: Request) -> Response:
        """GET, PUT, PATCH or DELETE of one object."""
        try:
            info = kind_of(request)
        except UnknownKind as exc:
            return failure(404, "NotFound", str(exc))
        p = request.path_params
        if ("namespace" in p) != info.namespaced:
            return failure(404, "NotFound", scope_message(info))
        key = ObjectKey(info.group, info.kind, info.scope(p.get("namespace")), p["name"])
        if request.method == "GET":
            obj = self.store.get(key)
            if obj is None:
                return failure(404, "NotFound", f"{key} not found")
            if kube_tables.wants_table(request):
                return self.views.table(info, [obj], p["version"])
            return JSONResponse(self.views.served(obj, info, p["version"]))
        if request.method == "DELETE":
            return await self.writes.delete(request, key, info)
        if request.method == "PATCH":
            return await self.writes.patch(request, info, key)
        body = await _object_body(request)
        if isinstance(body, Response):
            return body
        return await self.writes.write(request, info, key, body, create_only=False)

    def routes(self, root: str) -> list[Route]:
        """The collection and item routes under ``root`` (``/api/{version}`` or
        ``/apis/{group}/{version}``)."""
        return [
            Route(root + "/{plural}", self.collection, methods=["GET", "POST"]),
            Route(root + "/namespaces/{namespace}/{plural}", self.collection,
                  methods=["GET", "POST"]),
            Route(root + "/namespaces/{namespace}/{plural}/{name}", self.item,
                  methods=_ITEM_METHODS),
            # a cluster-scoped object (a Namespace): /api/v1/namespaces/{name}
            Route(root + "/{plural}/{name}", self.item, methods=_ITEM_METHODS),
        ]

"""``.../{name}/scale`` and ``.../{name}/status`` of Kubernetes-style objects.

kubectl scale and kubectl get --subresource read and write these; a scale is written
through the same :class:`ObjectWrites` as any other write, and status is read-only here
because meshpilot itself is what observes pods and rollouts.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import KindInfo, UnknownKind
from meshpilot.server import kube_patch, kube_responses, kube_subresources, kube_tables
from meshpilot.server.api_replies import failure, render
from meshpilot.server.api_requests import kind_of, read_body
from meshpilot.server.api_views import ObjectViews
from meshpilot.server.api_writes import ObjectWrites
from meshpilot.server.request_body import BadBody
from meshpilot.store import StoredObject

SUBRESOURCES = ("scale", "status")


class SubresourcesAPI:
    """The scale and status subresources (see the module)."""

    def __init__(self, views: ObjectViews, writes: ObjectWrites) -> None:
        self.views = views
        self.store = views.store
        self.writes = writes

    async def subresource(self, request: Request) -> Response:
        """``.../{name}/scale`` and ``.../{name}/status`` (:mod:`kube_subresources`)."""
        try:
            info = kind_of(request)
        except UnknownKind as exc:
            return failure(404, "NotFound", str(exc))
        p = request.path_params
        key = ObjectKey(info.group, info.kind, info.scope(p.get("namespace")), p["name"])
        which = request.url.path.rsplit("/", 1)[1]
        obj = self.store.get(key)
        if (which == "scale" and not kube_subresources.scalable(info.kind, info.group)) or (
                ("namespace" in p) != info.namespaced):
            return failure(404, "NotFound", f"{info.plural} have no {which} subresource")
        if obj is None:
            return failure(404, "NotFound", f"{key} not found")
        if which == "status":
            return self._status(request, info, obj)
        return await self._scale(request, info, key, obj)

    def _status(self, request: Request, info: KindInfo, obj: StoredObject) -> Response:
        if request.method != "GET":
            return failure(405, "MethodNotAllowed",
                           f"the status of {info.plural} is written by meshpilot itself (what "
                           "it observes of pods and rollouts); change the object's spec instead")
        version = request.path_params["version"]
        if kube_tables.wants_table(request):
            return self.views.table(info, [obj], version)
        return JSONResponse(self.views.served(obj, info, version))

    async def _scale(self, request: Request, info: KindInfo, key: ObjectKey,
                     obj: StoredObject) -> Response:
        """The Scale of a Deployment (or Rollout); a write sets its spec.replicas through
        the same path as any other write, and answers with the new Scale."""
        current = kube_subresources.scale_of(self.views.served(obj, info))
        if request.method == "GET":
            return JSONResponse(current)
        try:
            if request.method == "PATCH":
                wanted = kube_patch.apply_patch(current, await request.body(),
                                                request.headers.get("content-type", ""))
            else:
                wanted = await read_body(request)
            body = kube_subresources.scaled(render(obj, info), wanted)
        except kube_patch.PatchError as exc:
            return failure(exc.status, "BadRequest" if exc.status == 400
                           else "UnsupportedMediaType", str(exc))
        except (BadBody, kube_subresources.BadScale) as exc:
            return failure(400, "BadRequest", str(exc))
        answer = await self.writes.write(request, info, key, body, create_only=False)
        if answer.status_code >= 300 or not kube_responses.wants_kube(request):
            return answer
        return JSONResponse(kube_subresources.scale_of(json.loads(bytes(answer.body))),
                            status_code=200, headers={
                                k: v for k, v in answer.headers.items() if k == "warning"})

    def routes(self, root: str) -> list[Route]:
        """The subresources under ``root`` (``/api/{version}`` or
        ``/apis/{group}/{version}``), namespaced objects' then cluster-scoped ones'."""
        return [
            *[Route(root + "/namespaces/{namespace}/{plural}/{name}/" + sub, self.subresource,
                    methods=["GET", "PUT", "PATCH"]) for sub in SUBRESOURCES],
            *[Route(root + "/{plural}/{name}/" + sub, self.subresource,
                    methods=["GET", "PUT", "PATCH"]) for sub in SUBRESOURCES],
        ]

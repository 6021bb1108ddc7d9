"""Writes of one Kubernetes-style object: create, replace, patch, server-side apply, delete.

Every write, whatever its verb, goes through the config service's validation and answers a
Kubernetes client in Kubernetes' shape (and meshpilot's own client with its Outcome); one
:meth:`ObjectWrites.write` does that for all of them, so a patch or a scale cannot pass
what a replace would refuse.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import KindInfo
from meshpilot.server import kube_apply, kube_dry_run, kube_patch, kube_responses
from meshpilot.server.api_replies import bad_body, failure, outcome, render
from meshpilot.server.api_requests import read_body
from meshpilot.server.config_service import ConfigService, Outcome
from meshpilot.server.delete_options import (
    BadPreconditions,
    read_preconditions,
    refuse_orphaning,
)
from meshpilot.server.request_body import BadBody
from meshpilot.store import StoredObject
from meshpilot.validation import Diagnostic, codes


class ObjectWrites:
    """Writes of single objects through the config service (see the module)."""

    def __init__(self, service: ConfigService) -> None:
        self.service = service
        self.store = service.store

    async def patch(self, request: Request, info: KindInfo, key: ObjectKey) -> Response:
        """PATCH: the patch applied to the stored object, then written like a PUT, so it
        passes the same validation; the stored resourceVersion goes with it, so a write
        in between makes this one a conflict instead of being overwritten. A server-side
        apply may create the object."""
        obj = self.store.get(key)
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media == kube_apply.APPLY_PATCH:
            return await self._server_side_apply(request, info, key, obj)
        if obj is None:
            return failure(404, "NotFound", f"{key} not found")
        try:
            patched = kube_patch.apply_patch(render(obj, info), await request.body(), media)
        except kube_patch.PatchError as exc:
            return failure(exc.status, "BadRequest" if exc.status == 400
                           else "UnsupportedMediaType", str(exc))
        return await self.write(request, info, key, patched, create_only=False)

    async def _server_side_apply(self, request: Request, info: KindInfo, key: ObjectKey,
                                 obj: StoredObject | None) -> Response:
        """``kubectl apply --server-side``: the applied object merged into the stored one
        under its field manager; a conflict with another manager is a 409 naming the
        fields, unless forced."""
        q = request.query_params
        if not q.get("fieldManager"):
            return failure(400, "BadRequest", "fieldManager is required for an apply patch")
        try:
            applied = kube_apply.applied_object(await request.body())
            body = kube_apply.apply_upgrading(
                render(obj, info) if obj is not None else None, applied, q["fieldManager"],
                force=q.get("force") == "true")
        except kube_apply.BadApply as exc:
            return failure(400, "BadRequest", str(exc))
        except kube_apply.ApplyConflicts as exc:
            return kube_responses.status(409, str(exc), info, key.name, exc.causes())
        return await self.write(request, info, key, body, create_only=False, tracked=True)

    async def write(self, request: Request, info: KindInfo, key: ObjectKey,
                    body: dict[str, Any], *, create_only: bool,
                    tracked: bool = False) -> Response:
        """Create or replace one object through the config service; the answer in
        Kubernetes' shape for a Kubernetes client, else meshpilot's Outcome. The fields
        it changes are recorded under its field manager (unless ``tracked`` already)."""
        try:
            dry_run = kube_dry_run.requested(request.query_params.getlist("dryRun"))
        except kube_dry_run.BadDryRun as exc:
            return failure(400, "BadRequest", str(exc))
        name = key.name or str((body.get("metadata") or {}).get("name", ""))
        target = ObjectKey(key.group, key.kind, key.namespace, name)
        current = self.store.get(target) if name else None
        if not tracked:
            manager = kube_apply.manager_of(request.query_params.get("fieldManager"),
                                            request.headers.get("user-agent", ""))
            body = kube_apply.track_update(
                render(current, info) if current is not None and not create_only else None,
                body, manager)
        result = await run_in_threadpool(
            self.service.put_object, key, body, create_only=create_only, dry_run=dry_run)
        if not kube_responses.wants_kube(request):
            return outcome(result)
        if result.status != 200:
            return kube_responses.refusal(
                result, info, name, create_only=create_only,
                field_validation=request.query_params.get("fieldValidation"))
        created = bool(result.results) and result.results[0]["action"].startswith("created")
        version = request.path_params["version"]
        if dry_run:
            return kube_responses.written(
                kube_dry_run.preview(body, current, info.api_version(version)),
                result, created)
        stored = self.store.get(target)
        if stored is None:  # deleted again by another writer since this one
            return failure(404, "NotFound", f"{key.kind} {key.namespace}/{name} not found")
        return kube_responses.written(render(stored, info, version), result, created)

    async def delete(self, request: Request, key: ObjectKey, info: KindInfo) -> Response:
        """DELETE of one object, with Kubernetes' DeleteOptions (preconditions, dry run;
        orphaning refused: a Deployment's pods stop with it)."""
        try:
            options = await read_body(request)
            refuse_orphaning(request.query_params.get("propagationPolicy"), options)
            pre = read_preconditions(request.query_params.get("resourceVersion"), options)
            dry_run = kube_dry_run.requested([
                *request.query_params.getlist("dryRun"),
                *kube_dry_run.from_delete_options(options)])
        except BadBody as exc:
            return bad_body(exc)
        except (BadPreconditions, kube_dry_run.BadDryRun) as exc:
            refused = Outcome(400, diagnostics=[Diagnostic.of(
                codes.INVALID_VALUE, str(exc), path="deleteOptions", object=str(key))])
            return (kube_responses.refusal(refused, info, key.name)
                    if kube_responses.wants_kube(request) else outcome(refused))
        if dry_run:
            result = self._delete_preview(key, pre.resource_version)
        else:
            result = await run_in_threadpool(
                self.service.delete, [key], expected=pre.resource_version,
                expected_uid=pre.uid)
        if not kube_responses.wants_kube(request):
            return outcome(result)
        if result.status != 200:
            return kube_responses.refusal(result, info, key.name)
        return kube_responses.deleted(result, info, key.name)

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

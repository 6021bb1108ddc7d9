"""meshpilot's own batch endpoints: apply and delete whole files, and the findings.

``meshpilot apply -f`` sends every file at once so the change is all-or-nothing and its
diagnostics can name file and line; these routes under :data:`MESHPILOT_API` serve that,
and ``describe``/``analyze``'s findings, apart from the Kubernetes-style object routes.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import UnknownKind, by_kind
from meshpilot.server.api_replies import bad_body, failure, outcome
from meshpilot.server.api_requests import read_body
from meshpilot.server.config_service import ConfigService, Outcome, state_of
from meshpilot.server.request_body import BadBody
from meshpilot.validation import Diagnostic, check_state

MESHPILOT_API = "/apis/meshpilot.io/v1"


class BatchAPI:
    """``apply``, ``delete`` and ``diagnostics`` under :data:`MESHPILOT_API`."""

    def __init__(self, service: ConfigService) -> None:
        self.service = service
        self.store = service.store

    async def apply(self, request: Request) -> Response:
        try:
            payload = await read_body(request)
            sources = [(str(s["file"]), str(s["text"])) for s in payload["sources"]]
        except BadBody as exc:
            return bad_body(exc)
        except (ValueError, KeyError, TypeError) as exc:
            return failure(400, "BadRequest",
                           f"expected {{'sources': [{{'file', 'text'}}]}}: {exc}")
        dry_run = bool(payload.get("dryRun"))
        # Parsing and validating a large apply takes seconds of CPU: off the event loop,
        # so /healthz and reads keep answering meanwhile.
        return outcome(await run_in_threadpool(self.service.apply, sources, dry_run=dry_run))

    async def delete(self, request: Request) -> Response:
        from meshpilot.validation import keys_in

        try:
            payload = await read_body(request)
        except BadBody as exc:
            return bad_body(exc)
        try:
            if "sources" in payload:
                sources = [(str(s["file"]), str(s["text"])) for s in payload["sources"]]
                keys, problems = await run_in_threadpool(keys_in, sources)
                if problems:
                    return outcome(Outcome(422, diagnostics=problems))
            else:
                keys = [ObjectKey(k.get("group", ""), k["kind"],
                                  by_kind(k["kind"]).scope(k.get("namespace")), k["name"])
                        for k in payload["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError, UnknownKind) as exc:
            return failure(400, "BadRequest", f"expected sources or keys: {exc}")
        return outcome(await run_in_threadpool(
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
                return failure(404, "NotFound", str(exc))
            key = ObjectKey(info.group, info.kind, info.scope(q.get("namespace")), q["name"])
            found = await run_in_threadpool(self.service.findings_about, key)
        return JSONResponse({"diagnostics": [d.to_dict() for d in found]})

    def routes(self) -> list[Route]:
        return [
            Route(f"{MESHPILOT_API}/apply", self.apply, methods=["POST"]),
            Route(f"{MESHPILOT_API}/delete", self.delete, methods=["POST"]),
            Route(f"{MESHPILOT_API}/diagnostics", self.diagnostics),
        ]

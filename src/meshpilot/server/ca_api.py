"""API routes of the root CA rotation (``meshpilot ca``).

``GET /apis/meshpilot.io/v1/ca``: the phase, the issuing and pending CA, every trusted
root with how many workload certificates chain to it. ``POST .../ca/trust``,
``.../ca/switch``, ``.../ca/retire``: one step each, body ``{"caDir": "/abs/path"}``
(trust and switch; none: a new self-signed root, or the pending CA) and
``{"spreadSeconds": N}`` (switch). A refused step changes nothing and answers 422 (bad
input) or 409 (not now) with a diagnostic whose code is stable (docs/diagnostics.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshpilot.security.root_rotation import Refusal, RotationRefused
from meshpilot.server.ca_rotation import DEFAULT_SPREAD, CaRotation
from meshpilot.validation import Diagnostic
from meshpilot.validation import codes as C

API = "/apis/meshpilot.io/v1/ca"
MAX_SPREAD = timedelta(days=1)
FIELDS = MappingProxyType({"trust": frozenset({"caDir"}),
                           "switch": frozenset({"caDir", "spreadSeconds"}),
                           "retire": frozenset()})
"""The body fields each step takes (any other is refused, not ignored)."""
CODES = MappingProxyType({
    Refusal.CA_FILES: (C.CA_FILES, 422),
    Refusal.OUT_OF_ORDER: (C.CA_STEP_OUT_OF_ORDER, 409),
    Refusal.NOT_TRUSTED: (C.CA_NOT_TRUSTED, 422),
    Refusal.ROOT_NEEDED: (C.CA_ROOT_NEEDED, 409),
    Refusal.ROOT_IN_USE: (C.CA_ROOT_IN_USE, 409),
    Refusal.NOT_PROPAGATED: (C.CA_NOT_PROPAGATED, 409),
})
"""Each refusal's diagnostic code and HTTP status."""


class BadRequest(ValueError):
    """A body this API does not take (400)."""


def _failure(status: int, message: str, diagnostics: list[Diagnostic] | None = None
             ) -> JSONResponse:
    body: dict[str, Any] = {"kind": "Status", "status": "Failure", "code": status,
                            "message": message}
    if diagnostics:
        body["diagnostics"] = [d.to_dict() for d in diagnostics]
    return JSONResponse(body, status_code=status)


def refused(step: str, exc: RotationRefused) -> JSONResponse:
    """The response to a refused step: its code, and the CA file at fault if any."""
    code, status = CODES[exc.refusal]
    diagnostic = Diagnostic.of(code, exc.message, file=exc.file, object=f"ca {step}")
    return _failure(status, f"{step} refused: {exc.message}", [diagnostic])


def _ca_dir(body: dict[str, Any]) -> Path | None:
    raw = body.get("caDir")
    if raw is None:
        return None
    if not isinstance(raw, str) or not Path(raw).is_absolute():
        raise BadRequest("caDir is an absolute path to a directory on the control plane's "
                         "host (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)")
    return Path(raw)


def _spread(body: dict[str, Any]) -> timedelta:
    raw = body.get("spreadSeconds")
    if raw is None:
        return DEFAULT_SPREAD
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not (
            0 <= raw <= MAX_SPREAD.total_seconds()):
        raise BadRequest(f"spreadSeconds is a number from 0 to {MAX_SPREAD.total_seconds():g}")
    return timedelta(seconds=raw)


class CaAPI:
    def __init__(self, rotation: CaRotation) -> None:
        self.rotation = rotation

    async def status(self, request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(self.rotation.status))

    async def step(self, request: Request) -> Response:
        """Run one step in a worker thread (it signs, writes files and waits for the
        proxies); the body's fields are checked first."""
        name = request.path_params["step"]
        if name not in FIELDS:
            return _failure(404, f"no CA rotation step {name!r}; steps: {', '.join(FIELDS)}")
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise BadRequest("the body is one JSON object")
            unknown = sorted(set(body) - FIELDS[name])
            if unknown:
                raise BadRequest(f"{name} takes no field {', '.join(unknown)}; it takes: "
                                 f"{', '.join(sorted(FIELDS[name])) or 'nothing'}")
            run = self._steps(body)[name]
        except (BadRequest, ValueError) as exc:
            return _failure(400, str(exc))
        try:
            return JSONResponse(await asyncio.to_thread(run))
        except RotationRefused as exc:
            return refused(name, exc)
        except OSError as exc:  # the state directory could not be written
            return _failure(500, f"{name} failed, nothing changed: {exc}")

    def _steps(self, body: dict[str, Any]) -> dict[str, Callable[[], dict[str, Any]]]:
        rotation = self.rotation
        ca_dir, spread = _ca_dir(body), _spread(body)
        return {"trust": lambda: rotation.trust(ca_dir),
                "switch": lambda: rotation.switch(ca_dir, spread),
                "retire": rotation.retire}

    def routes(self) -> list[Route]:
        return [Route(API, self.status),
                Route(API + "/{step}", self.step, methods=["POST"])]

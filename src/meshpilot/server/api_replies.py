"""The answers the control plane's HTTP API shares between its handlers.

Every refusal is a Kubernetes-style Status (so kubectl prints it as it would an API
server's), a batch answer is meshpilot's :class:`Outcome`, and a served object carries the
apiVersion the client asked at; written once here so the handlers cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from meshpilot.api.kinds import KindInfo
from meshpilot.server.api_requests import UnsupportedBody
from meshpilot.server.config_service import Outcome
from meshpilot.server.request_body import BadBody
from meshpilot.store import StoredObject


def failure(code: int, reason: str, message: str, diagnostic: str = "") -> JSONResponse:
    """A Kubernetes-style Status; ``diagnostic`` (a code such as MP0050) goes in
    ``details.causes`` so a client can tell refusals apart without reading the message."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": reason, "code": code,
                            "message": message}
    if diagnostic:
        body["details"] = {"causes": [{"reason": diagnostic, "message": message}]}
    return JSONResponse(body, status_code=code)


def bad_body(exc: BadBody) -> JSONResponse:
    """A body that could not be read: 415 for a media type meshpilot does not read, else
    400 with the reader's diagnostic code."""
    if isinstance(exc, UnsupportedBody):
        return failure(415, "UnsupportedMediaType", str(exc))
    return failure(400, "BadRequest", str(exc), exc.code)


def outcome(result: Outcome) -> JSONResponse:
    """meshpilot's own answer to a write: its results and diagnostics, at its status."""
    return JSONResponse(result.to_json(), status_code=result.status)


def render(obj: StoredObject, info: KindInfo, version: str | None = None) -> dict[str, Any]:
    """The object as served at ``version`` (Istio's versions share one schema)."""
    body = dict(obj.body)
    body["apiVersion"] = info.api_version(version)
    return body


def scope_message(info: KindInfo) -> str:
    """Why a path does not serve ``info``: a namespaced kind has its objects under
    /namespaces/{ns}/, a cluster-scoped one (Namespace) does not."""
    if info.namespaced:
        return f"{info.plural} are namespaced: use {info.collection_path('<namespace>')}"
    return f"{info.plural} are cluster-scoped: use {info.collection_path(None)}"

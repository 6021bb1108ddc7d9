"""Bearer-token authentication for every API request."""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send


class BearerTokenMiddleware:
    """Refuse any request that does not carry ``Authorization: Bearer <token>`` (401).

    A pure ASGI middleware, so streaming watch responses pass through untouched.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps({
            "kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401,
            "message": "missing or wrong bearer token; the CLI reads it from the state "
                       "directory's token file, kubectl from its kubeconfig",
        }).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"),
            (b"www-authenticate", b'Bearer realm="meshpilot"'),
        ]})
        await send({"type": "http.response.body", "body": body})

"""Refuse request bodies over a size limit (413) before they are read into memory.

A body is read whole before it is parsed, so without a limit one client could make the
control plane hold as much as it sends. A declared ``Content-Length`` over the limit is
refused before any of the body is read; a chunked body is counted as it arrives and
refused as soon as it passes the limit, and the connection closed.
"""

from __future__ import annotations

import json
from typing import Any

from meshpilot.validation import codes

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""4 MiB: eight times an apply of 3,000 typical objects (0.5 MB of YAML). This bounds
what a request makes the API read; the node budget (MP0051) what it makes it build."""

Scope = dict[str, Any]


def _refusal(limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    message = (f"the request body is larger than {limit:,} bytes, the limit of this control "
               "plane (`meshpilot up --max-body-bytes`); split the apply into several")
    body = json.dumps({
        "kind": "Status", "status": "Failure", "reason": "RequestEntityTooLarge",
        "code": 413, "message": message,
        "details": {"causes": [{"reason": codes.BODY_TOO_LARGE.code, "message": message}]},
    }).encode()
    start = {"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    """ASGI middleware: HTTP requests whose body exceeds ``limit`` bytes get a 413."""

    def __init__(self, app: Any, limit: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        # The body is read here, up to the limit, and handed on whole: refusing it once
        # the app has started reading would leave Starlette answering 500.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Any:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        start, body = _refusal(self.limit)
        await send(start)
        await send(body)

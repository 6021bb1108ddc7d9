"""API routes for hosts that join the mesh (``meshpilot host token create``, ``host join``).

``POST /apis/meshpilot.io/v1/hosts/tokens`` ``{"group": "NS/NAME", "ttlSeconds": N}``
(behind the API's bearer token, like every route): a single-use join token for that
WorkloadGroup. The routes a joining host calls carry no bearer token, since the host
has none; they are authenticated by what they carry instead:

- ``POST .../hosts/join`` ``{"token", "group", "address", "csr", "keyFile"}``: the join
  token (spent on success), see :mod:`meshpilot.server.host_registry`;
- ``POST .../hosts/report`` ``{"namespace", "entry", "hostToken", "ready"}``, with the
  sidecar's counters as ``"stats"`` and ``"epoch"`` (answered with the live replicas,
  see :mod:`meshpilot.store.replicas`) and
  ``POST .../hosts/renew`` ``{"namespace", "entry", "hostToken", "csr", "keyFile"}`` (a
  new certificate for a new key, at about half the old one's life): the credential the
  join answered with, bound to that one entry.

:class:`HostRoutesGate` sends those paths to their own small app and everything else
through the bearer-token check.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from meshpilot.security.join_tokens import DEFAULT_TTL, JoinTokenBook
from meshpilot.server.body_limit import BodyLimitMiddleware
from meshpilot.server.host_pods_api import PATHS as POD_PATHS
from meshpilot.server.host_registry import HostRegistry, JoinError, JoinRequest
from meshpilot.server.host_stats import reported_stats as _stats
from meshpilot.server.host_watch import PATH as WATCH_PATH
from meshpilot.server.host_watch import HostWatch, never

API = "/apis/meshpilot.io/v1/hosts"
PUBLIC_PATHS = frozenset({f"{API}/join", f"{API}/report", f"{API}/renew", f"{API}/gateway",
                          WATCH_PATH, *POD_PATHS})
MAX_BODY = 1024 * 1024
"""A report carries its sidecar's counters (compressed): room for a large mesh's."""
_JOIN_FIELDS = frozenset({"token", "group", "address", "csr", "keyFile"})
_RENEW_FIELDS = frozenset({"namespace", "entry", "hostToken", "csr", "keyFile"})


def _failure(status: int, message: str, code: str = "",
             diagnostics: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"kind": "Status", "status": "Failure", "code": status,
                            "message": message}
    if code:
        body["diagnostics"] = diagnostics or [
            {"code": code, "severity": "error", "message": message}]
    return JSONResponse(body, status_code=status)


async def _json(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


class HostsAPI:
    def __init__(self, registry: HostRegistry, tokens: JoinTokenBook,
                 more: list[Route] | None = None, watch: HostWatch | None = None) -> None:
        self.registry = registry
        self.tokens = tokens
        self.more = more or []
        """Further routes a host calls with its credential (its pods)."""
        self.watch = watch or HostWatch(registry, lambda _node: 0)
        """What a host's agent holds open to sync at once (:mod:`.host_watch`)."""

    async def create_token(self, request: Request) -> Response:
        body = await _json(request)
        if body is None or set(body) - {"group", "ttlSeconds"}:
            return _failure(400, 'the body is {"group": "NS/NAME", "ttlSeconds": N}')
        group = str(body.get("group") or "")
        try:
            self.registry.group_of(group)
            ttl = timedelta(seconds=float(body.get("ttlSeconds") or
                                          DEFAULT_TTL.total_seconds()))
            issued = self.tokens.issue(group, ttl)
        except JoinError as exc:
            return _failure(exc.status, str(exc), exc.code)
        except (TypeError, ValueError) as exc:
            return _failure(422, str(exc), "MP0017")
        return JSONResponse({"token": issued.token, "group": issued.group,
                             "expiresAt": issued.expires_at.isoformat()})

    async def join(self, request: Request) -> Response:
        body = await _json(request)
        if body is None or set(body) != _JOIN_FIELDS or not all(
                isinstance(body[k], str) for k in _JOIN_FIELDS):
            return _failure(400, "the body is a JSON object with the strings "
                                 + ", ".join(sorted(_JOIN_FIELDS)))
        join = JoinRequest(token=body["token"], group=body["group"], address=body["address"],
                           csr_pem=body["csr"].encode(), key_file=body["keyFile"])
        try:
            answer = await asyncio.to_thread(self.registry.join, join)
        except JoinError as exc:
            return _failure(exc.status, str(exc), exc.code, exc.diagnostics)
        return JSONResponse(answer)

    async def report(self, request: Request) -> Response:
        body = await _json(request)
        if body is None:
            return _failure(400, "the body is a JSON object")
        stats = _stats(body)
        if stats is None:
            return _failure(400, "stats is the sidecar's /stats, zlib-compressed, in base64, "
                                 "with its process as epoch (an integer)")
        accepted = await asyncio.to_thread(
            self.registry.report, str(body.get("namespace", "")), str(body.get("entry", "")),
            str(body.get("hostToken", "")), body.get("ready") is True, stats)
        if not accepted:
            return _failure(403, "not a host credential for that entry, or the entry has "
                                 "left the mesh (join again)")
        # the replicas alive now, so the host knows where to go if this one dies; the
        # sidecar's xDS token as issued now, so the host takes a different one at once
        token = await asyncio.to_thread(
            self.registry.sidecar_token, str(body.get("namespace", "")),
            str(body.get("entry", "")), str(body.get("hostToken", "")))
        return JSONResponse({"accepted": True, "replicas": self.registry.reachable(),
                             **({"xdsToken": token} if token else {})})

    async def renew(self, request: Request) -> Response:
        body = await _json(request)
        if body is None or set(body) != _RENEW_FIELDS or not all(
                isinstance(body[k], str) for k in _RENEW_FIELDS):
            return _failure(400, "the body is a JSON object with the strings "
                                 + ", ".join(sorted(_RENEW_FIELDS)))
        try:
            answer = await asyncio.to_thread(
                self.registry.renew, body["namespace"], body["entry"], body["hostToken"],
                body["csr"].encode(), body["keyFile"])
        except JoinError as exc:
            return _failure(exc.status, str(exc), exc.code)
        if answer is None:
            return _failure(403, "not a host credential for that entry, or the entry has "
                                 "left the mesh (join again)")
        return JSONResponse(answer)

    async def gateway(self, request: Request) -> Response:
        """``POST .../hosts/gateway`` ``{"namespace", "entry", "hostToken"}``: the host
        runs its network's east-west gateway; answered with its node id and xDS token
        (:mod:`meshpilot.server.host_gateways`)."""
        body = await _json(request)
        fields = ("namespace", "entry", "hostToken")
        if body is None or set(body) != set(fields) or not all(
                isinstance(body[k], str) for k in fields):
            return _failure(400, "the body is a JSON object with the strings "
                                 + ", ".join(fields))
        answer = await asyncio.to_thread(self.registry.gateway, body["namespace"],
                                         body["entry"], body["hostToken"])
        if answer is None:
            return _failure(403, "not a host credential for that entry, or the entry has "
                                 "left the mesh (join again)")
        return JSONResponse(answer)

    def routes(self) -> list[Route]:
        """The bearer-token route (into the main app)."""
        return [Route(f"{API}/tokens", self.create_token, methods=["POST"])]

    def public_app(self, stopping: Callable[[], bool] = never) -> ASGIApp:
        """The routes a joining host calls, without the bearer-token check; a held watch
        ends once ``stopping`` says the server shuts down."""
        return BodyLimitMiddleware(Starlette(routes=[
            Route(f"{API}/join", self.join, methods=["POST"]),
            Route(f"{API}/report", self.report, methods=["POST"]),
            Route(f"{API}/renew", self.renew, methods=["POST"]),
            Route(f"{API}/gateway", self.gateway, methods=["POST"]),
            *self.watch.routes(stopping),
            *self.more,
        ]), MAX_BODY)


class HostRoutesGate:
    """The host routes to ``public``, every other request to ``app`` (which checks the
    bearer token)."""

    def __init__(self, app: ASGIApp, public: ASGIApp) -> None:
        self.app = app
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in PUBLIC_PATHS:
            await self.public(scope, receive, send)
            return
        await self.app(scope, receive, send)

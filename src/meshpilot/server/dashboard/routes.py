"""The dashboard's routes, on the API's own port and app.

``/dashboard/`` the page (signed-in browsers only: see :mod:`.gate`),
``/dashboard/login?code=`` the sign-in link, ``/dashboard/events`` its live feed,
``/dashboard/config`` every stored object with its validation findings (what
``meshpilot analyze`` reports), ``POST /dashboard/logout`` signing out,
``/dashboard/static/`` its assets (shipped in the package: nothing comes from elsewhere),
and ``POST /apis/meshpilot.io/v1/dashboard/codes`` the one-time code ``meshpilot
dashboard`` prints a link with. The page applies YAML, runs rollout commands and reads
proxy configs through the API itself, as the CLI does.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from meshpilot.runtime import Pod
from meshpilot.server.config_service import state_of
from meshpilot.server.dashboard import views
from meshpilot.server.dashboard.auth import (
    CODE_TTL_SECONDS,
    COOKIE,
    SESSION_TTL_SECONDS,
    DashboardAuth,
)
from meshpilot.server.dashboard.events import never, stream
from meshpilot.server.dashboard.gate import PREFIX, SESSION_STATE, session_id
from meshpilot.server.dashboard.pages import dashboard_page, login_page, static_dir
from meshpilot.store import ConfigStore
from meshpilot.validation import check_state

CODES_PATH = "/apis/meshpilot.io/v1/dashboard/codes"
# The page's own code and assets, never anything from another host
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
       "form-action 'self'; base-uri 'none'")
PAGE_HEADERS = MappingProxyType({"content-security-policy": CSP, "cache-control": "no-store",
                                 "referrer-policy": "no-referrer", "x-frame-options": "DENY"})


def exposed(scheme: str, server_host: str) -> bool:
    """Whether a session cookie would cross a network in clear: plain HTTP on an address
    other than loopback (``up --host``)."""
    if scheme == "https":
        return False
    try:
        return not ipaddress.ip_address(server_host).is_loopback
    except ValueError:
        return server_host != "localhost"


class Dashboard:
    """The dashboard of one control plane: reads the store, the runtime's pods (``pods``),
    the telemetry (``rows``: a blocking summary query, None without a mesh) and the
    proxies' xDS status (``proxies``, as ``proxy-status`` shows it); ``stopping`` says
    when the server shuts down, so that the event streams end."""

    def __init__(self, store: ConfigStore, auth: DashboardAuth,
                 pods: Callable[[], Sequence[Pod]],
                 rows: Callable[[], list[dict[str, Any]]] | None,
                 proxies: Callable[[], list[dict[str, Any]]],
                 stopping: Callable[[], bool] = never,
                 argo: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.store = store
        self.auth = auth
        self.pods = pods
        self.rows = rows
        self.proxies = proxies
        self.stopping = stopping
        self.argo = argo

    async def snapshot(self) -> dict[str, Any]:
        rows = await asyncio.to_thread(self.rows) if self.rows is not None else []
        store = self.store
        return {
            "revision": store.revision(),
            "graph": views.graph(self.pods(), store.list(group="", kind="Service"),
                                 store.list(group="networking.istio.io",
                                            kind="VirtualService"), rows),
            "rollouts": views.rollouts(store.list(kind="Canary")) + (
                [views.argo_card(v) for v in await asyncio.to_thread(self.argo)]
                if self.argo is not None else []),
            "proxies": views.proxies(self.proxies()),
            "telemetry": self.rows is not None,
        }

    async def new_code(self, request: Request) -> Response:
        if hasattr(request.state, SESSION_STATE):  # the token holder's, not a browser's
            return JSONResponse({"kind": "Status", "status": "Failure", "code": 403,
                                 "reason": "Forbidden",
                                 "message": "sign-in codes are for the bearer token"},
                                status_code=403)
        if exposed(request.url.scheme, (request.scope.get("server") or ("", 0))[0]):
            return JSONResponse({"kind": "Status", "status": "Failure", "code": 409,
                                 "reason": "Conflict",
                                 "message": "the API is served over plain HTTP beyond "
                                            "loopback, where the dashboard's cookie could "
                                            "be read on the way: use up --tls"},
                                status_code=409)
        code = self.auth.new_code()
        base = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return JSONResponse({"url": f"{base}{PREFIX}/login?code={code}",
                             "expiresInSeconds": CODE_TTL_SECONDS},
                            headers={"cache-control": "no-store"})

    async def login(self, request: Request) -> Response:
        redeemed = self.auth.redeem(request.query_params.get("code", ""))
        if redeemed is None:
            return HTMLResponse(login_page("This sign-in link has expired or was already "
                                           "used."), status_code=401, headers=dict(PAGE_HEADERS))
        session_id, _ = redeemed
        response = RedirectResponse(f"{PREFIX}/", status_code=303, headers=dict(PAGE_HEADERS))
        response.set_cookie(COOKIE, session_id, max_age=int(SESSION_TTL_SECONDS), path="/",
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def page(self, request: Request) -> Response:
        session = getattr(request.state, SESSION_STATE)
        return HTMLResponse(dashboard_page(session.csrf), headers=dict(PAGE_HEADERS))

    def _config(self) -> dict[str, Any]:
        objects = self.store.list()
        found = check_state(state_of(objects), all_objects=True)
        return {"revision": self.store.revision(),
                **views.config(objects, (d.to_dict() for d in found))}

    async def config(self, request: Request) -> Response:
        # judging the whole state takes CPU in proportion to it: off the event loop
        return JSONResponse(await asyncio.to_thread(self._config),
                            headers={"cache-control": "no-store"})

    async def logout(self, request: Request) -> Response:
        """Ends this browser's session (the gate checked its CSRF token and origin) and
        clears its cookie; the page then shows the sign-in page."""
        self.auth.end(session_id(request.headers) or "")
        response = JSONResponse({"signedOut": True}, headers={"cache-control": "no-store"})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    async def events(self, request: Request) -> Response:
        return StreamingResponse(stream(self.store, self.snapshot, self.stopping),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-store",
                                          "x-accel-buffering": "no"})

    def routes(self) -> list[BaseRoute]:
        return [
            Route(CODES_PATH, self.new_code, methods=["POST"]),
            Route(PREFIX, lambda _: RedirectResponse(f"{PREFIX}/", status_code=307)),
            Route(f"{PREFIX}/", self.page),
            Route(f"{PREFIX}/login", self.login),
            Route(f"{PREFIX}/events", self.events),
            Route(f"{PREFIX}/config", self.config),
            Route(f"{PREFIX}/logout", self.logout, methods=["POST"]),
            Mount(f"{PREFIX}/static", StaticFiles(directory=static_dir()), name="dashboard-static"),
        ]

"""The dashboard's place in front of the API: who may reach what, with which credential.

Three ways in, decided before any route runs:

- the bearer token (the CLI and any script), as before;
- the dashboard's session cookie (a browser signed in with ``meshpilot dashboard``): the
  page, its event stream and the API itself, so its buttons call the same endpoints the
  CLI calls; a state-changing request must also carry the session's CSRF token in a
  header and come from this origin;
- nothing: only the sign-in link, the static assets (the page's code, no data) and, for
  any other dashboard path, the login page (401).

A state-changing request that a browser marks as coming from another origin or site is
refused (403) whatever credential it carries: a page elsewhere never gets to act here.
"""

from __future__ import annotations

import json
from http.cookies import CookieError, SimpleCookie

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from meshpilot.server.dashboard.auth import COOKIE, CSRF_HEADER, DashboardAuth, Session
from meshpilot.server.dashboard.pages import login_page

PREFIX = "/dashboard"
PUBLIC = (f"{PREFIX}/login", f"{PREFIX}/static/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_STATE = "dashboard_session"


def own_origin(scope: Scope, headers: Headers) -> str:
    """The origin this request was sent to, as a browser writes it in ``Origin``."""
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"


def foreign(scope: Scope, headers: Headers) -> bool:
    """Whether the browser says the request comes from another origin (or site)."""
    origin = headers.get("origin")
    if origin is not None and origin != own_origin(scope, headers):
        return True
    return headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")


def session_id(headers: Headers) -> str | None:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type), (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer")]})
    await send({"type": "http.response.body", "body": body})


async def forbidden(send: Send, why: str) -> None:
    body = json.dumps({"kind": "Status", "status": "Failure", "reason": "Forbidden",
                       "code": 403, "message": why}).encode()
    await _send(send, 403, body, b"application/json")


class DashboardGate:
    """Routes each request to ``app`` directly (signed-in browser, public dashboard
    path) or through ``bearer`` (``app`` behind the bearer-token check)."""

    def __init__(self, app: ASGIApp, bearer: ASGIApp, auth: DashboardAuth) -> None:
        self.app = app
        self.bearer = bearer
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.bearer(scope, receive, send)
            return
        headers = Headers(scope=scope)
        unsafe = scope["method"] not in SAFE_METHODS
        if unsafe and foreign(scope, headers):
            await forbidden(send, "a state-changing request from another origin is refused")
            return
        path: str = scope["path"]
        if path.startswith(PUBLIC):
            await self.app(scope, receive, send)
            return
        session = self._session(headers)
        if path == PREFIX or path.startswith(PREFIX + "/"):
            if session is None:
                await _send(send, 401, login_page(), b"text/html; charset=utf-8")
                return
            if unsafe and not self._csrf_ok(session, scope, headers):
                await forbidden(send, "the dashboard's CSRF token or Origin is missing or "
                                      "wrong")
                return
            await self._as(session, scope, receive, send)
        elif session is not None and "authorization" not in headers:
            if unsafe and not self._csrf_ok(session, scope, headers):
                await forbidden(send, "the dashboard's CSRF token or Origin is missing or "
                                      "wrong")
                return
            await self._as(session, scope, receive, send)
        else:
            await self.bearer(scope, receive, send)

    def _session(self, headers: Headers) -> Session | None:
        sid = session_id(headers)
        return self.auth.session(sid) if sid is not None else None

    @staticmethod
    def _csrf_ok(session: Session, scope: Scope, headers: Headers) -> bool:
        # both: the token proves the page was served to this session, the Origin that
        # the browser (not the page) sent it from here
        return (headers.get("origin") == own_origin(scope, headers)
                and session.csrf_matches(headers.get(CSRF_HEADER, "")))

    async def _as(self, session: Session, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})[SESSION_STATE] = session
        await self.app(scope, receive, send)

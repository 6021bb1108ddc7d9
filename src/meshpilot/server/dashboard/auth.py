"""Signing a browser in to the dashboard without ever showing it the API's bearer token.

``meshpilot dashboard`` (holding the token) asks for a one-time code and prints a link
that carries it. Opening the link trades the code for a session: a random id in an
HttpOnly, SameSite=Strict cookie, and a CSRF token the page sends back in a header on
every state-changing request. Codes live 60 s and work once; sessions expire. Secrets
are compared in constant time and never logged or stored in clear: only their SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CODE_TTL_SECONDS = 60.0
SESSION_TTL_SECONDS = 12 * 3600.0
# bounds, so that asking for codes or signing in again and again cannot grow memory
MAX_CODES = 16
MAX_SESSIONS = 64
COOKIE = "meshpilot_dashboard"
CSRF_HEADER = "x-meshpilot-csrf"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the CSRF token its page sends back, and when it ends."""

    csrf: str
    expires: float

    def csrf_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf.encode())


class DashboardAuth:
    """The outstanding login codes and the live sessions of one control plane.

    Invariant: every stored key is the SHA-256 of a secret; a lookup walks all entries
    with ``hmac.compare_digest``, so timing tells nothing about how close a guess was.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._codes: dict[bytes, float] = {}  # digest -> expiry
        self._sessions: dict[bytes, Session] = {}

    def new_code(self) -> str:
        """A fresh one-time code, valid for ``CODE_TTL_SECONDS``."""
        code = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._expire(now)
            while len(self._codes) >= MAX_CODES:  # the oldest goes first
                del self._codes[min(self._codes, key=self._codes.__getitem__)]
            self._codes[_digest(code)] = now + CODE_TTL_SECONDS
        return code

    def redeem(self, code: str) -> tuple[str, Session] | None:
        """The new session (its id and itself) for a valid code, which is used up; None
        for an unknown, used or expired one."""
        now = self._clock()
        given = _digest(code)
        with self._lock:
            self._expire(now)
            found = self._find(self._codes, given)
            if found is None:
                return None
            del self._codes[found]
            session_id = secrets.token_urlsafe(32)
            session = Session(secrets.token_urlsafe(32), now + SESSION_TTL_SECONDS)
            while len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
                del self._sessions[oldest]
            self._sessions[_digest(session_id)] = session
        return session_id, session

    def session(self, session_id: str) -> Session | None:
        """The live session with this id, if any."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            found = self._find(self._sessions, _digest(session_id))
            return self._sessions[found] if found is not None else None

    def end(self, session_id: str) -> bool:
        """Sign a session out; whether there was one."""
        with self._lock:
            found = self._find(self._sessions, _digest(session_id))
            if found is None:
                return False
            del self._sessions[found]
            return True

    @staticmethod
    def _find(entries: dict[bytes, object], given: bytes) -> bytes | None:
        found = None
        for key in entries:  # no early exit: every entry is compared
            if hmac.compare_digest(key, given):
                found = key
        return found

    def _expire(self, now: float) -> None:
        for key in [k for k, t in self._codes.items() if t <= now]:
            del self._codes[key]
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]

"""Dashboard sign-in codes and sessions: one use, short-lived, bounded."""

from __future__ import annotations

from meshpilot.server.dashboard.auth import (
    CODE_TTL_SECONDS,
    MAX_CODES,
    SESSION_TTL_SECONDS,
    DashboardAuth,
)
from meshpilot.server.dashboard.routes import exposed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_code_signs_in_once() -> None:
    auth = DashboardAuth(Clock())
    code = auth.new_code()
    redeemed = auth.redeem(code)
    assert redeemed is not None
    session_id, session = redeemed
    assert auth.session(session_id) == session
    assert auth.redeem(code) is None  # used up
    assert auth.session(code) is None  # a code is no session id


def test_codes_and_sessions_expire() -> None:
    clock = Clock()
    auth = DashboardAuth(clock)
    late = auth.new_code()
    clock.now += CODE_TTL_SECONDS + 0.01
    assert auth.redeem(late) is None
    redeemed = auth.redeem(auth.new_code())
    assert redeemed is not None
    clock.now += SESSION_TTL_SECONDS + 0.01
    assert auth.session(redeemed[0]) is None


def test_wrong_codes_and_tokens_are_refused() -> None:
    auth = DashboardAuth(Clock())
    code = auth.new_code()
    assert auth.redeem("") is None
    assert auth.redeem(code[:-1]) is None
    redeemed = auth.redeem(code)
    assert redeemed is not None
    session = redeemed[1]
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches("")
    assert not session.csrf_matches(session.csrf[:-1] + "x")


def test_outstanding_codes_are_bounded_oldest_dropped() -> None:
    clock = Clock()
    auth = DashboardAuth(clock)
    first = auth.new_code()
    for _ in range(MAX_CODES):
        clock.now += 0.001
        auth.new_code()
    assert auth.redeem(first) is None


def test_no_sign_in_over_plain_http_beyond_loopback() -> None:
    assert not exposed("http", "127.0.0.1") and not exposed("http", "::1")
    assert not exposed("http", "127.0.0.2") and not exposed("http", "localhost")
    assert exposed("http", "0.0.0.0") and exposed("http", "192.168.1.5")
    assert not exposed("https", "192.168.1.5")


def test_a_signed_out_session_is_gone() -> None:
    auth = DashboardAuth()
    session_id, _ = auth.redeem(auth.new_code()) or ("", None)
    assert auth.session(session_id) is not None
    assert auth.end(session_id) is True
    assert auth.session(session_id) is None
    assert auth.end(session_id) is False  # twice: nothing left to end

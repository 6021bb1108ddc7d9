"""Session affinity cookies over a rollout's life, kept in the rollout state.

Flagger's Istio router (``getSessionAffinityRouteRules``) gives each canary run its own
cookie, ``NAME=`` plus ten random ASCII letters, made when the canary first takes
traffic; with ``primaryCookieName`` the primary side gets one too. When the canary's
weight is back at 0 (promotion, rollback, a restarted analysis), the run's cookie becomes
the *previous* cookie: clients still sending it are routed to the primary and told to
drop it (``Max-Age=-1``). A random value, not the revision, so a client holding a cookie
from an earlier run of the same revision (a retry) is not taken for one of this run.
The routes themselves are made in ``objects``; this module only decides the values.
"""

from __future__ import annotations

import secrets
import string

from meshpilot.api.flagger import SessionAffinity
from meshpilot.delivery.state import RolloutState

VALUE_LENGTH = 10
"""Flagger's ``randSeq``: ten letters from a-z and A-Z."""


def random_value() -> str:
    return "".join(secrets.choice(string.ascii_letters) for _ in range(VALUE_LENGTH))


def sync_cookies(state: RolloutState, affinity: SessionAffinity | None) -> None:
    """Bring the cookies in ``state`` in line with its canary weight.

    Invariant afterwards: a non-empty ``session_affinity_cookie`` means the canary takes
    traffic (weight > 0); at weight 0 it is empty and the last run's cookie is in
    ``previous_session_affinity_cookie``. The primary's cookie, once made, is kept across
    runs, as Flagger keeps it.
    """
    if affinity is None:
        return
    if state.canary_weight > 0:
        if not state.session_affinity_cookie:
            state.session_affinity_cookie = f"{affinity.cookie_name}={random_value()}"
        if affinity.primary_cookie_name and not state.primary_session_affinity_cookie:
            state.primary_session_affinity_cookie = (
                f"{affinity.primary_cookie_name}={random_value()}")
        return
    if state.session_affinity_cookie:
        state.previous_session_affinity_cookie = state.session_affinity_cookie
        state.session_affinity_cookie = ""

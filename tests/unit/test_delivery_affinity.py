"""Session affinity over whole rollouts, tick by tick: the cookie values in the status
and the routes they make, as Flagger's Istio router keeps them."""

from __future__ import annotations

import re
from typing import Any

from tests.unit.rollout_harness import NAME, Harness

from meshpilot.delivery import Sample

AFFINITY = {"sessionAffinity": {"cookieName": "flagger-cookie", "maxAge": 3600}}
COOKIE = re.compile(r"flagger-cookie=[A-Za-z]{10}")


def http_rules(h: Harness) -> list[dict[str, Any]]:
    return h.cluster.get("VirtualService", NAME)["spec"]["http"]


def set_cookies(rule: dict[str, Any]) -> list[str]:
    """Every Set-Cookie a rule adds, on the rule or on one of its destinations."""
    parts = [rule, *rule["route"]]
    return [p["headers"]["response"]["add"]["Set-Cookie"] for p in parts
            if "Set-Cookie" in ((p.get("headers") or {}).get("response") or {}).get("add", {})]


def routed_by_cookie(h: Harness, cookie: str) -> dict[str, int] | None:
    """Weights of the first rule a request sending ``cookie`` matches by its Cookie."""
    for rule in http_rules(h):
        regex = ((rule.get("match") or [{}])[0].get("headers") or {}).get("Cookie", {})
        if regex and re.fullmatch(regex["regex"], cookie):
            return {r["destination"]["host"]: r["weight"] for r in rule["route"]}
    return None


def test_each_run_gets_a_random_cookie_and_expires_it_after_promotion() -> None:
    """Flagger's getSessionAffinityRouteRules: ``NAME=`` + 10 random letters, made when
    the canary first takes weight and kept for the run; at weight 0 (promotion) it moves
    to status.previousSessionAffinityCookie, its holders go to the primary and are sent
    ``Max-Age=-1``. The next run gets another value, so old holders stay on the primary."""
    h = Harness(AFFINITY)
    h.initialize()
    assert len(http_rules(h)) == 1 and not h.status.get("sessionAffinityCookie")
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    first = h.status["sessionAffinityCookie"]
    assert COOKIE.fullmatch(first)
    assert routed_by_cookie(h, f"a=b; {first}") == {f"{NAME}-primary": 0, f"{NAME}-canary": 100}
    assert set_cookies(http_rules(h)[-1]) == [f"{first}; Max-Age=3600"]
    h.run_until(lambda: h.status.get("canaryWeight") == 40)
    assert h.status["sessionAffinityCookie"] == first  # one cookie per run
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.status["sessionAffinityCookie"] == ""
    assert h.status["previousSessionAffinityCookie"] == first
    expiring = http_rules(h)[0]
    assert routed_by_cookie(h, first) == {f"{NAME}-primary": 100, f"{NAME}-canary": 0}
    assert set_cookies(expiring) == [f"{first}; Max-Age=-1"]

    h.release("v3")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    second = h.status["sessionAffinityCookie"]
    assert COOKIE.fullmatch(second) and second != first
    assert routed_by_cookie(h, first) is None  # split by weight like any new client
    assert routed_by_cookie(h, second) == {f"{NAME}-primary": 0, f"{NAME}-canary": 100}


def test_rollback_and_restart_expire_the_running_cookie() -> None:
    """The weight goes back to 0 on a rollback and when a new revision restarts the
    analysis (Flagger's SetRoutes with canary weight 0): the run's cookie is expired and
    a restarted run gets a fresh one."""
    h = Harness({**AFFINITY, "threshold": 1})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    superseded = h.status["sessionAffinityCookie"]
    h.release("v3")
    h.tick()
    assert h.status["previousSessionAffinityCookie"] == superseded
    assert routed_by_cookie(h, superseded) == {f"{NAME}-primary": 100, f"{NAME}-canary": 0}
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    restarted = h.status["sessionAffinityCookie"]
    assert COOKIE.fullmatch(restarted) and restarted != superseded
    h.metrics.success[NAME] = Sample(50.0, 100)
    h.run_until(lambda: h.phase == "Failed")
    assert h.status["previousSessionAffinityCookie"] == restarted
    assert set_cookies(http_rules(h)[0]) == [f"{restarted}; Max-Age=-1"]


def test_primary_cookie_is_random_and_lives_one_interval() -> None:
    """With primaryCookieName, Flagger also makes a random primary cookie, kept across
    runs, whose Set-Cookie lasts one analysis interval."""
    h = Harness({"sessionAffinity": {**AFFINITY["sessionAffinity"],
                                     "primaryCookieName": "primary-cookie"}})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    primary = h.status["primarySessionAffinityCookie"]
    assert re.fullmatch(r"primary-cookie=[A-Za-z]{10}", primary)
    assert routed_by_cookie(h, primary) == {f"{NAME}-primary": 100, f"{NAME}-canary": 0}
    weighted = http_rules(h)[-1]
    assert weighted["route"][0]["headers"]["response"]["add"]["Set-Cookie"] == (
        f"{primary}; Max-Age=10")
    h.run_until(lambda: h.phase == "Succeeded")
    h.release("v3")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    assert h.status["primarySessionAffinityCookie"] == primary

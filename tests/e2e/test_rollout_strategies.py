"""Blue-green, A/B testing and traffic mirroring end to end.

The checks need requests to the canary even when it takes no user traffic (blue-green
iterations, mirroring): the built-in load tester provides them through a rollout webhook,
as Flagger's tester does.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime

import httpx

from tests.alert_receiver import alert_receiver
from tests.e2e.mesh import URL, Mesh, version_of
from tests.e2e.rollouts import Rollout, canary
from tests.e2e.scenario import Given, Then, When

LOAD_HOOK = """\
webhooks:
- name: load-test
  type: rollout
  url: http://flagger-loadtester.test/
  timeout: 5s
  metadata:
    cmd: "hey -z 40s -q 15 -c 2 http://myapp-canary.default:8080/"
"""


def test_blue_green_runs_to_completion(given: Given, when: When, then: Then) -> None:
    with alert_receiver() as events:
        # an event hook with Flagger's metadata, beside the load test
        event_hook = (f"- name: events\n  type: event\n  url: {events.url}\n"
                      "  metadata: {environment: e2e, cluster: local}\n")
        given.rollout(canary(strategy="iterations: 3", analysis=LOAD_HOOK + event_hook))
        before = len(events.received())
        with when.traffic() as load:
            when.release("v2")
            seen = when.rollout_runs_to_the_end(timeout=80)
            when.time_passes(0.5)
        sent = [r.body for r in events.received()[before:]]
    # Then it ran its iterations on the canary (load-tested, no user traffic), switched
    # all traffic over, promoted, and no user request failed
    then.rollout_phase("Succeeded")
    assert max(b["iterations"] for b in seen) == 3
    assert {b["canaryWeight"] for b in seen} <= {0, 100}
    during = [b for b in seen if b["phase"] == "Progressing" and b["iterations"] >= 1]
    assert during and all(b["canaryWeight"] == 0 for b in during[:1])
    then.no_request_failed(load)
    then.split_is({"v2": 20})
    events_seen = " | ".join(then.rollout_events())
    assert "iteration 3/3" in events_seen and "Routing all traffic to canary" in events_seen
    # and the event hook got every event of the revision, with its metadata and one
    # checksum from detection to promotion (Flagger's CallEventWebhook, canaryChecksum)
    messages = [p["metadata"]["eventMessage"] for p in sent]
    assert any(m.startswith("New revision detected") for m in messages), messages
    assert any(m.startswith("Promotion completed") for m in messages), messages
    assert all(p["metadata"]["environment"] == "e2e" and p["metadata"]["cluster"] == "local"
               for p in sent)
    assert len({p["checksum"] for p in sent}) == 1


def test_ab_testing_sends_only_matching_requests_to_the_canary(
    given: Given, when: When, then: Then
) -> None:
    given.rollout(canary(
        interval="2s",
        strategy="iterations: 4\nmatch:\n- headers: {x-canary: {exact: insider}}"))
    insider = {"x-canary": "insider"}
    with when.traffic(headers=insider, rate=40) as insiders, when.traffic(rate=30) as others:
        when.release("v2")
        when.rollout_reaches(lambda b: b["abActive"] and b["phase"] == "Progressing",
                             "the A/B rule to be active", timeout=40)
        t0 = time.time()
        when.time_passes(1.0)  # let every proxy take the A/B rule
        # Then, during the test, only requests with the header reach v2
        then.split_is({"v2": 20}, headers=insider)
        then.split_is({"v1": 20})
        still = then.rollout()
        assert still["phase"] == "Progressing" and still["abActive"], still["phase"]
        final = then.rollout_phase("Succeeded")
    # before the promotion started, the requests without the header never saw v2
    copying = next(e for e in final["events"] if e["message"].startswith("Copying"))
    promoted_at = datetime.strptime(copying["time"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC).timestamp()
    before = others.versions_between(0.0, promoted_at)
    assert before and set(before) == {"v1"}, Counter(before)
    assert final["history"][-1]["outcome"] == "promoted"
    assert insiders.since(t0)["v2"] > 0
    then.no_request_failed(insiders, others)
    then.split_is({"v2": 20})


def test_mirroring_runs_to_completion(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.rollout(canary(interval="3s", strategy="maxWeight: 20\nstepWeight: 10\nmirror: true"))
    with when.traffic(rate=60) as load:
        when.release("v2")
        # When the mirror stage runs, clients are answered by v1 only while the canary
        # serves copies of their requests (measured inside the stage's one interval)
        when.rollout_reaches(lambda b: b["mirroring"], "the mirror stage", timeout=40)
        when.time_passes(0.8)
        then.split_is({"v1": 20})
        rows = mesh.telemetry(namespace="default", workload="myapp", window="5s")["rows"]
        assert rows and rows[0]["requests"] > 0
        then.rollout_phase("Succeeded")
    events = " | ".join(then.rollout_events())
    assert "Start traffic mirroring" in events and "Stop traffic mirroring" in events
    then.no_request_failed(load)
    then.split_is({"v2": 20})


def _get(mesh: Mesh, cookie: str = "") -> httpx.Response:
    """One request through the mesh from a new client (no cookie jar carried over)."""
    with mesh.client() as client:
        return client.get(URL, headers={"Cookie": cookie} if cookie else {})


def test_session_affinity_keeps_canary_clients_then_expires_their_cookie(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    """Flagger's Istio router through real Envoys: responses from the canary set this
    run's random cookie, requests carrying it stay on the canary, and after promotion
    they are told to drop it (Max-Age=-1)."""
    given.rollout(canary(
        interval="2s", analysis="sessionAffinity: {cookieName: flagger-cookie, maxAge: 60}"))
    rollout = Rollout(mesh)
    with when.traffic() as load:
        when.release("v2")
        when.rollout_reaches(lambda b: b["canaryWeight"] > 0, "canary weight", timeout=40)
        rollout.command("pause")
        when.time_passes(1.0)  # the sticky routes reach the proxies
        answered: list[httpx.Response] = []
        for _ in range(100):  # at 10%, a canary answer comes within a few dozen
            answered.append(_get(mesh))
            if version_of(answered[-1]) == "v2":
                break
        cookie, _, attributes = answered[-1].headers["set-cookie"].partition("; ")
        assert re.fullmatch(r"flagger-cookie=[A-Za-z]{10}", cookie), cookie
        assert attributes == "Max-Age=60"
        assert all("set-cookie" not in r.headers for r in answered[:-1])  # primary's
        assert Counter(version_of(_get(mesh, f"a=1; {cookie}")) for _ in range(10)) == {
            "v2": 10}
        rollout.command("resume")
        then.rollout_phase("Succeeded")
    when.time_passes(1.0)
    expired = _get(mesh, cookie)
    assert expired.headers.get("set-cookie") == f"{cookie}; Max-Age=-1"
    assert version_of(expired) == "v2"  # the primary, now on v2
    assert "set-cookie" not in _get(mesh).headers
    then.no_request_failed(load)

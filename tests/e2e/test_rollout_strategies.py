"""Blue-green, A/B testing and traffic mirroring end to end.

The checks need requests to the canary even when it takes no user traffic (blue-green
iterations, mirroring): the built-in load tester provides them through a rollout webhook,
as Flagger's tester does.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tests.e2e.conftest import Mesh
from tests.e2e.rollout_helpers import Steady, canary, given_initialized, target, versions

LOAD_HOOK = """\
webhooks:
- name: load-test
  type: rollout
  url: http://flagger-loadtester.test/
  timeout: 5s
  metadata:
    cmd: "hey -z 40s -q 15 -c 2 http://myapp-canary.default:8080/"
"""


def telemetry(mesh: Mesh, workload: str, window: str = "30s") -> dict[str, Any] | None:
    r = mesh.api.get("/apis/meshpilot.io/v1/telemetry/query",
                     params={"namespace": "default", "workload": workload, "window": window})
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    return rows[0] if rows else None


def test_blue_green_runs_to_completion(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary(strategy="iterations: 3", analysis=LOAD_HOOK))
    with Steady(mesh) as load:
        # When the new revision is applied
        mesh.apply(target("v2"))
        seen: list[dict[str, Any]] = []

        def done(body: dict[str, Any]) -> bool:
            seen.append(body)
            return body["phase"] in ("Succeeded", "Failed")

        final = rollouts.wait(done, timeout=80, what="blue-green to finish")
        time.sleep(0.5)
    # Then it ran its iterations on the canary (load-tested, no user traffic), switched
    # all traffic over, promoted, and no user request failed
    assert final["phase"] == "Succeeded", rollouts.events()
    assert max(b["iterations"] for b in seen) == 3
    assert {b["canaryWeight"] for b in seen} <= {0, 100}
    during = [b for b in seen if b["phase"] == "Progressing" and b["iterations"] >= 1]
    assert during and all(b["canaryWeight"] == 0 for b in during[:1])
    assert load.failures == [], load.failures[:10]
    assert versions(mesh, 20) == {"v2": 20}
    events = " | ".join(rollouts.events())
    assert "iteration 3/3" in events and "Routing all traffic to canary" in events


def test_ab_testing_sends_only_matching_requests_to_the_canary(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary(
        interval="2s",
        strategy="iterations: 4\nmatch:\n- headers: {x-canary: {exact: insider}}"))
    insider = {"x-canary": "insider"}
    with Steady(mesh, headers=insider, rate=40) as insiders, Steady(mesh, rate=30) as others:
        mesh.apply(target("v2"))
        rollouts.wait(lambda b: b["abActive"] and b["phase"] == "Progressing", timeout=40,
                      what="the A/B rule to be active")
        # Then, during the test, only requests with the header reach v2
        t0 = time.time()
        time.sleep(1.0)  # let every proxy take the A/B rule
        during_insiders = versions(mesh, 20, headers=insider)
        during_others = versions(mesh, 20)
        still = rollouts.get()
        final = rollouts.wait_phase("Succeeded", "Failed", timeout=60)
    assert still["phase"] == "Progressing" and still["abActive"], still["phase"]
    assert during_insiders == {"v2": 20}
    assert during_others == {"v1": 20}
    assert final["phase"] == "Succeeded", rollouts.events()
    # before the promotion started, the requests without the header never saw v2
    copying = next(e for e in final["events"] if e["message"].startswith("Copying"))
    promoted_at = datetime.strptime(copying["time"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC).timestamp()
    before = [v for t, v in others.timeline if t < promoted_at]
    assert before and set(before) == {"v1"}, Counter(before)
    assert final["history"][-1]["outcome"] == "promoted"
    assert insiders.since(t0)["v2"] > 0
    assert insiders.failures == [] and others.failures == [], (insiders.failures[:5],
                                                                others.failures[:5])
    assert versions(mesh, 20) == {"v2": 20}


def test_mirroring_runs_to_completion(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary(
        interval="2s", strategy="maxWeight: 20\nstepWeight: 10\nmirror: true"))
    with Steady(mesh, rate=60) as load:
        mesh.apply(target("v2"))
        # When the mirror stage runs, clients are answered by v1 only while the canary
        # serves copies of their requests
        rollouts.wait(lambda b: b["mirroring"], timeout=40, what="the mirror stage")
        time.sleep(1.5)
        answered = versions(mesh, 20)
        mirrored = telemetry(mesh, "myapp", "5s")
        final = rollouts.wait_phase("Succeeded", "Failed", timeout=60)
    assert answered == {"v1": 20}
    assert mirrored is not None and mirrored["requests"] > 0
    assert final["phase"] == "Succeeded", rollouts.events()
    events = " | ".join(rollouts.events())
    assert "Start traffic mirroring" in events and "Stop traffic mirroring" in events
    assert load.failures == [], load.failures[:10]
    assert versions(mesh, 20) == {"v2": 20}

"""Crash safety: the control plane killed (SIGKILL) in the middle of a rollout.

The rollout's state lives in the Canary's status in the durable store, so the restarted
controller resumes at the same step rather than starting over. The pods and proxies keep
serving while the control plane is down and the restarted one adopts them (the same
processes), so traffic stays where it was and no request fails at any point.
"""

from __future__ import annotations

import time

from meshpilot.server.leftovers import find_leftovers
from tests.e2e.conftest import Mesh
from tests.e2e.rollout_helpers import Rollouts, Steady, canary, given_initialized, target, versions


def test_rollout_resumes_at_the_same_step_after_a_crash(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary(interval="2s", max_weight=40, step_weight=10))
    with Steady(mesh, rate=50, max_seconds=150) as load:
        mesh.apply(target("v2"))
        before = rollouts.wait(lambda b: b["canaryWeight"] >= 20, timeout=40,
                               what="the canary at 20%")
        weight = before["canaryWeight"]
        started = sum(1 for e in before["events"] if e["message"].startswith("New revision"))

        pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in mesh.pods()}
        processes = sorted(find_leftovers(mesh.cp.state_dir / "run"))

        # When the control plane dies mid-rollout and comes back
        mesh.cp.kill()
        killed_at = time.time()
        time.sleep(1.0)
        mesh.cp.start()
        restarted_at = time.time()
        after = Rollouts(mesh).get()

        # Then the data plane was adopted, not replaced: same pods, same processes
        assert {p["metadata"]["name"]: p["status"]["podIP"] for p in mesh.pods()} == pods
        assert sorted(find_leftovers(mesh.cp.state_dir / "run")) == processes

        # Then the rollout is where it was: same revision, same step, not restarted
        assert after["phase"] == "Progressing", after["phase"]
        assert after["canaryWeight"] in (weight, weight + 10), (weight, after["canaryWeight"])
        assert after["revision"] == before["revision"]
        assert sum(1 for e in after["events"]
                   if e["message"].startswith("New revision")) == started

        final = Rollouts(mesh).wait(
            lambda b: b["phase"] in ("Succeeded", "Failed"), timeout=80,
            what="the resumed rollout to finish")
        time.sleep(0.5)
    assert final["phase"] == "Succeeded", final["events"][-10:]
    # and traffic stayed where it was: both versions answered while the control plane
    # was down and after it came back, and no request failed, before, during or after
    down = [v for t, v in load.timeline if killed_at < t < restarted_at]
    assert {"v1", "v2"} <= set(down), sorted(set(down))
    assert [v for t, v in load.timeline if t > restarted_at and v == "v1"]
    assert load.failures == [], load.failures[:10]
    weights = [e["message"] for e in final["events"] if "canary weight" in e["message"]]
    # every weight was set once: the restart did not replay the steps
    assert len(weights) == len(set(weights)), weights
    assert versions(mesh, 20) == {"v2": 20}

"""Crash safety: the control plane killed (SIGKILL) in the middle of a rollout.

The rollout's state lives in the Canary's status in the durable store, so the restarted
controller resumes at the same step rather than starting over, and it never routes
traffic to a canary whose pods are not (yet) running again.
"""

from __future__ import annotations

import time

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

        # When the control plane dies mid-rollout and comes back
        mesh.cp.kill()
        mesh.cp.start()
        restarted_at = time.time()  # the old proxies and pods are gone by now
        after = Rollouts(mesh).get()

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
    # and no request is sent to a canary that is not running yet: once the restarted
    # primary answers again (its pods restart too; until then nothing can be served),
    # no request fails
    back = [t for t, v in load.timeline if t > restarted_at and v == "v1"]
    assert back, "the primary did not answer after the restart"
    assert load.failures_since(back[0]) == [], load.failures_since(back[0])[:10]
    weights = [e["message"] for e in final["events"] if "canary weight" in e["message"]]
    # every weight was set once: the restart did not replay the steps
    assert len(weights) == len(set(weights)), weights
    assert versions(mesh, 20) == {"v2": 20}

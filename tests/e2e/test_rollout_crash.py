"""Crash safety: the control plane killed (SIGKILL) in the middle of a rollout.

The rollout's state lives in the Canary's status in the durable store, so the restarted
controller resumes at the same step rather than starting over. The pods and proxies keep
serving while the control plane is down and the restarted one adopts them (the same
processes), so traffic stays where it was and no request fails at any point.
"""

from __future__ import annotations

import time
from typing import Any

from meshpilot.server.leftovers import find_leftovers
from tests.e2e.mesh import Mesh
from tests.e2e.rollouts import canary
from tests.e2e.scenario import Given, Then, When


def new_revisions(status: dict[str, Any]) -> int:
    """How many times the rollout started on a new revision."""
    return sum(1 for e in status["events"] if e["message"].startswith("New revision"))


def test_rollout_resumes_at_the_same_step_after_a_crash(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.rollout(canary(interval="2s", max_weight=40, step_weight=10))
    with when.traffic(rate=50, max_seconds=150) as load:
        when.release("v2")
        before = when.rollout_reaches(lambda b: b["canaryWeight"] >= 20, "the canary at 20%",
                                      timeout=40)
        weight = before["canaryWeight"]
        pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in mesh.pods()}
        processes = sorted(find_leftovers(mesh.cp.state_dir / "run"))

        # When the control plane dies mid-rollout and comes back
        when.control_plane_killed()
        killed_at = time.time()
        when.time_passes(1.0).control_plane_started()
        restarted_at = time.time()
        after = then.rollout()

        # Then the data plane was adopted, not replaced: same pods, same processes
        assert {p["metadata"]["name"]: p["status"]["podIP"] for p in mesh.pods()} == pods
        assert sorted(find_leftovers(mesh.cp.state_dir / "run")) == processes

        # Then the rollout is where it was: same revision, same step, not restarted
        assert after["phase"] == "Progressing", after["phase"]
        assert after["canaryWeight"] in (weight, weight + 10), (weight, after["canaryWeight"])
        assert after["revision"] == before["revision"]
        assert new_revisions(after) == new_revisions(before)

        final = when.rollout_runs_to_the_end(timeout=80)[-1]
        when.time_passes(0.5)
    then.rollout_phase("Succeeded")
    # and traffic stayed where it was: both versions answered while the control plane
    # was down and after it came back, and no request failed, before, during or after
    down = load.versions_between(killed_at, restarted_at)
    assert {"v1", "v2"} <= set(down), sorted(set(down))
    assert "v1" in load.versions_between(restarted_at)
    then.no_request_failed(load)
    weights = [e["message"] for e in final["events"] if "canary weight" in e["message"]]
    # every weight was set once: the restart did not replay the steps
    assert len(weights) == len(set(weights)), weights
    then.split_is({"v2": 20})

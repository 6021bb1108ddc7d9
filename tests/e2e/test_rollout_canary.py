"""Canary rollouts end to end: real pods, real Envoy, real traffic, the real controller.

Given a Canary over a Deployment serving v1 under steady load, when the Deployment gets
a new revision, then a healthy one is promoted without a single failed request, and a
failing or slow one is rolled back with the failing check named.
"""

from __future__ import annotations

from tests.e2e.mesh import Mesh
from tests.e2e.rollouts import canary
from tests.e2e.scenario import Given, Then, When


def test_healthy_revision_is_promoted_without_failed_requests(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.rollout(canary())
    then.split_is({"v1": 10})
    assert mesh.pods_of("myapp", terminating=False) == []  # scaled to 0; the primary serves

    with when.traffic() as load:
        when.release("v2")  # a healthy new revision
        seen = when.rollout_runs_to_the_end(timeout=80)
        when.time_passes(1.0)

    # Then it is promoted, weights went up step by step, and no request failed
    then.rollout_phase("Succeeded")
    assert {10, 20, 30} <= {body["canaryWeight"] for body in seen}
    then.no_request_failed(load)
    assert load.versions["v1"] > 0 and load.versions["v2"] > 0
    then.split_is({"v2": 20})
    assert mesh.pods_of("myapp", terminating=False) == []  # canary scaled back to 0
    assert len(mesh.pods_of("myapp-primary", terminating=False)) == 2
    assert then.rollout()["history"][-1]["outcome"] == "promoted"


def test_failing_revision_is_rolled_back(given: Given, when: When, then: Then) -> None:
    given.rollout(canary())
    with when.traffic():
        when.release("v2", args="--error-rate 0.3")  # 30% of its answers are 500s
        final = then.rollout_phase("Failed")
    # Then it is rolled back, the reason names the check and its value
    reason = final["history"][-1]["reason"]
    assert final["history"][-1]["outcome"] == "rolled-back"
    assert "request-success-rate" in reason and "%" in reason, reason
    failed = [c for c in final["checks"] if c["verdict"] == "fail"]
    assert failed and failed[0]["name"] == "request-success-rate"
    assert failed[0]["value"] < 99
    # and all traffic is back on v1
    assert final["canaryWeight"] == 0
    when.time_passes(1.0)
    then.split_is({"v1": 30})


def test_slow_revision_fails_request_duration(given: Given, when: When, then: Then) -> None:
    given.rollout(canary())
    with when.traffic(workers=4):
        when.release("v2", args="--latency-ms 600")
        final = then.rollout_phase("Failed")
    reason = final["history"][-1]["reason"]
    assert "request-duration" in reason, reason
    when.time_passes(1.0)
    then.split_is({"v1": 20})

"""Canary rollouts end to end: real pods, real Envoy, real traffic, the real controller.

Given a Canary over a Deployment serving v1 under steady load, when the Deployment gets
a new revision, then a healthy one is promoted without a single failed request, and a
failing or slow one is rolled back with the failing check named.
"""

from __future__ import annotations

import time

from tests.e2e.conftest import Mesh
from tests.e2e.rollout_helpers import Steady, canary, given_initialized, pods_of, target, versions


def test_healthy_revision_is_promoted_without_failed_requests(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary())
    assert versions(mesh, 10) == {"v1": 10}
    assert pods_of(mesh, "myapp") == []  # the target is scaled to 0; the primary serves

    with Steady(mesh) as load:
        # When the Deployment gets a healthy new revision
        mesh.apply(target("v2"))
        seen_weights = set()

        def progressed(body: dict) -> bool:
            seen_weights.add(body["canaryWeight"])
            return body["phase"] in ("Succeeded", "Failed")

        final = rollouts.wait(progressed, timeout=80, what="the rollout to finish")
        time.sleep(1.0)
    # Then it is promoted, weights went up step by step, and no request failed
    assert final["phase"] == "Succeeded", rollouts.events()
    assert {10, 20, 30} <= seen_weights
    assert load.failures == [], load.failures[:10]
    assert load.versions["v1"] > 0 and load.versions["v2"] > 0
    assert versions(mesh, 20) == {"v2": 20}
    assert pods_of(mesh, "myapp") == []  # canary scaled back to 0
    assert len(pods_of(mesh, "myapp-primary")) == 2
    history = rollouts.get()["history"]
    assert history[-1]["outcome"] == "promoted"


def test_failing_revision_is_rolled_back(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary())
    with Steady(mesh):
        # When the new revision answers 30% of its requests with 500
        mesh.apply(target("v2", args="--error-rate 0.3"))
        final = rollouts.wait_phase("Failed", "Succeeded", timeout=60)
    # Then it is rolled back, the reason names the check and its value
    assert final["phase"] == "Failed"
    reason = final["history"][-1]["reason"]
    assert final["history"][-1]["outcome"] == "rolled-back"
    assert "request-success-rate" in reason and "%" in reason, reason
    failed = [c for c in final["checks"] if c["verdict"] == "fail"]
    assert failed and failed[0]["name"] == "request-success-rate"
    assert failed[0]["value"] < 99
    # and all traffic is back on v1
    assert final["canaryWeight"] == 0
    time.sleep(1.0)
    assert versions(mesh, 30) == {"v1": 30}


def test_slow_revision_fails_request_duration(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary())
    with Steady(mesh, workers=4):
        mesh.apply(target("v2", args="--latency-ms 600"))
        final = rollouts.wait_phase("Failed", "Succeeded", timeout=60)
    assert final["phase"] == "Failed"
    reason = final["history"][-1]["reason"]
    assert "request-duration" in reason, reason
    time.sleep(1.0)
    assert versions(mesh, 20) == {"v1": 20}

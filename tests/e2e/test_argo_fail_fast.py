"""Fail-fast for an Argo canary, a meshpilot extension, with real traffic and Envoy.

Argo Rollouts judges a canary only at its analysis measurements; here a canary paused
indefinitely (``pause: {}``) with no analysis at all would keep a revision failing half
its answers until a person aborts it. Given a Rollout that opts in with
``meshpilot.io/fail-fast-min-success-rate: "99"`` and steady traffic, when that revision
takes 10 % of it, then its sidecars' counters abort the Rollout within a fraction of a
second, as Argo aborts on a failed analysis: Degraded, ``RolloutAborted`` naming the
judgement, all traffic back on v1, and only a handful of requests failed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from meshpilot.api.argo import FAIL_FAST_MIN_SUCCESS_ANNOTATION
from tests.argo_builders import canary_rollout
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When
from tests.e2e.test_argo_rollout import destination_rule, virtual_service, wait_status

NAME = "myapp"
FAILED_BOUND = 8
"""Failed requests allowed: at 100 req/s, 10 % to a canary failing half, ~5 fail a
second; judged on 0.1 s ticks, this leaves room for a loaded machine and still fails a
judgement that waits for a person (or never comes: there is no analysis)."""


def rollout(version: str, args: str = "") -> dict[str, Any]:
    body = canary_rollout(NAME, version, [{"setWeight": 10}, {"pause": {}}], args=args)
    body["metadata"]["annotations"] = {FAIL_FAST_MIN_SUCCESS_ANNOTATION: "99"}
    return body


def test_a_failing_argo_canary_is_aborted_after_a_few_failed_requests(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.service(), virtual_service(), destination_rule(), rollout("v1"))
    wait_status(mesh, "Healthy", lambda s: s.get("phase") == "Healthy")
    mesh.converge()
    with when.traffic(rate=100, workers=8, max_seconds=60) as load:
        when.time_passes(0.5)
        mesh.apply(rollout("v2", args="--error-rate 0.5"))
        final = wait_status(mesh, "aborted", lambda s: s.get("phase") == "Degraded")
        when.time_passes(1.0)
    assert final["abort"] is True
    assert "fail-fast (meshpilot extension)" in final["message"], final["message"]
    failed = load.failures
    assert 2 <= len(failed) <= FAILED_BOUND, (
        f"{len(failed)} of {load.sent} failed: {Counter(f.status for f in failed)}; "
        f"{final['message']}")
    assert {f.status for f in failed} == {"500"}  # the canary's own answers
    mesh.converge()
    then.split_is({"v1": 20})

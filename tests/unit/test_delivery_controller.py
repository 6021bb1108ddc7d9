"""The rollout controller stepped tick by tick with a fake clock (as Flagger's scheduler
tests do), over in-memory fakes of its own ports."""

from __future__ import annotations

import copy

import pytest
from tests.unit.rollout_harness import NAME, NS, Harness, deployment

from meshpilot.delivery import Sample
from meshpilot.delivery.state import spec_hash


def observed_weights(h: Harness, limit: int = 40) -> list[int]:
    """Canary weight in the VirtualService after each tick until the rollout ends."""
    seen: list[int] = []
    for _ in range(limit):
        h.tick()
        seen.append(h.canary_weight_routed())
        if h.phase in ("Succeeded", "Failed"):
            break
    return seen


def dedupe(values: list[int]) -> list[int]:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


# --- initialization -------------------------------------------------------------------


def test_initialization_creates_primary_first_then_routes_and_scales_target_down() -> None:
    h = Harness()
    h.tick()
    assert h.phase == "Initializing"
    assert h.cluster.get("Deployment", f"{NAME}-primary") is not None
    assert h.cluster.get("VirtualService", NAME) is None  # nothing routes to a missing pod
    h.tick()
    assert h.phase == "Initialized"
    assert h.weights == [{f"{NAME}-primary": 100, f"{NAME}-canary": 0}]
    assert h.target_replicas() == 0
    assert h.cluster.get("Deployment", f"{NAME}-primary")["spec"]["replicas"] == 2
    assert h.status["conditions"][0]["type"] == "Promoted"
    assert "Initialization done! podinfo.default" in h.messages()


def test_missing_target_waits_and_says_so() -> None:
    h = Harness()
    h.cluster.delete(NS, [("Deployment", NAME)])
    h.tick()
    assert "Target Deployment podinfo.default not found; waiting for it" in h.messages()
    assert h.cluster.get("Deployment", f"{NAME}-primary") is None


# --- canary strategy ------------------------------------------------------------------


def test_canary_step_weight_promotes_and_scales_canary_to_zero() -> None:
    h = Harness()
    h.initialize()
    h.release("v2")
    seen = observed_weights(h)
    assert h.phase == "Succeeded", h.messages()
    assert dedupe(seen) == [0, 10, 20, 30, 40, 50, 0]
    assert h.primary_image() == "podinfo:v2"
    assert h.target_replicas() == 0
    assert h.weights == [{f"{NAME}-primary": 100, f"{NAME}-canary": 0}]
    status = h.status
    assert status["lastPromotedSpec"] == status["lastAppliedSpec"]
    assert status["conditions"][0]["status"] == "True"
    assert status["history"][-1]["outcome"] == "promoted"
    assert all(c["verdict"] == "pass" for c in status["checks"])
    assert "Promotion completed! Scaling down podinfo.default" in h.messages()


def test_canary_step_weights() -> None:
    h = Harness({"stepWeights": [1, 10, 50, 80], "stepWeight": None, "maxWeight": None})
    h.initialize()
    h.release("v2")
    assert dedupe(observed_weights(h)) == [0, 1, 10, 50, 80, 0]
    assert h.phase == "Succeeded"


def test_step_weight_promotion_shifts_back_gradually() -> None:
    h = Harness({"stepWeightPromotion": 20})
    h.initialize()
    h.release("v2")
    seen = dedupe(observed_weights(h))
    assert seen == [0, 10, 20, 30, 40, 50, 30, 10, 0]
    assert h.phase == "Succeeded"


def test_weights_in_each_rule_sum_to_100_throughout() -> None:
    h = Harness()
    h.initialize()
    h.release("v2")
    for _ in range(15):
        h.tick()
        for rule in h.weights:
            assert sum(rule.values()) == 100


# --- other strategies -----------------------------------------------------------------


def test_blue_green_runs_iterations_then_switches_all_traffic_then_promotes() -> None:
    h = Harness({"iterations": 3, "stepWeight": None, "maxWeight": None})
    h.initialize()
    h.release("v2")
    seen = observed_weights(h)
    assert dedupe(seen) == [0, 100, 0]
    assert h.phase == "Succeeded"
    advances = [m for m in h.messages() if "canary iteration" in m]
    assert advances[-1].endswith("3/3")
    assert "Routing all traffic to canary podinfo.default" in h.messages()


def test_blue_green_with_mirror_mirrors_during_iterations() -> None:
    h = Harness({"iterations": 2, "mirror": True, "stepWeight": None})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("iterations") == 1)
    vs = h.cluster.get("VirtualService", NAME)
    assert vs["spec"]["http"][0]["mirror"]["host"] == f"{NAME}-canary"
    assert h.canary_weight_routed() == 0
    h.run_until(lambda: h.phase == "Succeeded")
    assert "mirror" not in h.cluster.get("VirtualService", NAME)["spec"]["http"][0]


def test_ab_testing_routes_matching_requests_to_canary_first() -> None:
    match = [{"headers": {"x-canary": {"exact": "insider"}}}]
    h = Harness({"iterations": 2, "match": match, "stepWeight": None})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("iterations") == 1)
    vs = h.cluster.get("VirtualService", NAME)
    first, default = vs["spec"]["http"]
    assert first["match"] == match
    assert h.weights[0] == {f"{NAME}-primary": 0, f"{NAME}-canary": 100}
    assert "match" not in default and h.weights[1][f"{NAME}-primary"] == 100
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.weights[0] == {f"{NAME}-primary": 100, f"{NAME}-canary": 0}
    assert h.primary_image() == "podinfo:v2"


def test_mirror_strategy_mirrors_before_shifting() -> None:
    h = Harness({"mirror": True, "mirrorWeight": 50, "maxWeight": 20})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("mirrorStage") is True)
    rule = h.cluster.get("VirtualService", NAME)["spec"]["http"][0]
    assert rule["mirror"] == {"host": f"{NAME}-canary", "port": {"number": 9898}}
    assert rule["mirrorPercentage"] == {"value": 50.0}
    assert h.canary_weight_routed() == 0
    h.tick()
    rule = h.cluster.get("VirtualService", NAME)["spec"]["http"][0]
    assert "mirror" not in rule and h.canary_weight_routed() == 10
    h.run_until(lambda: h.phase == "Succeeded")


# --- checks: threshold, no data, comparison -------------------------------------------


def test_failing_check_reaches_threshold_and_rolls_back_at_once_with_values() -> None:
    h = Harness()
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    h.metrics.success[NAME] = Sample(80.0, 400)
    h.tick()
    assert h.status["failedChecks"] == 1 and h.phase == "Progressing"
    assert h.canary_weight_routed() == 20  # halted, not advanced
    h.tick()
    assert h.phase == "Failed"
    assert h.canary_weight_routed() == 0  # all traffic back to primary at once
    reason = h.status["history"][-1]["reason"]
    assert "request-success-rate 80% < 99%" in reason and "400 requests" in reason
    assert h.status["history"][-1]["outcome"] == "rolled-back"
    check = next(c for c in h.status["checks"] if c["name"] == "request-success-rate")
    assert check == {**check, "verdict": "fail", "value": 80.0, "samples": 400}
    assert h.status["conditions"][0]["status"] == "False"
    assert h.target_replicas() == 2  # drains before scaling down
    h.tick(dt=2.0)
    assert h.target_replicas() == 0
    assert h.primary_image() == "podinfo:v1"


def test_no_data_waits_instead_of_passing_then_continues() -> None:
    h = Harness()
    h.initialize()
    h.metrics.success[NAME] = Sample(100.0, 3)
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    h.tick(3)
    assert h.status["canaryWeight"] == 10 and h.phase == "Progressing"
    assert h.status["failedChecks"] == 0
    check = next(c for c in h.status["checks"] if c["name"] == "request-success-rate")
    assert check["verdict"] == "nodata" and check["samples"] == 3
    assert any("no data yet" in m and "3 requests" in m and "need 20" in m
               for m in h.messages())
    h.metrics.success[NAME] = Sample(100.0, 50)
    h.tick()
    assert h.status["canaryWeight"] == 20


def test_no_data_longer_than_progress_deadline_fails() -> None:
    h = Harness(progressDeadlineSeconds=60)
    h.initialize()
    h.metrics.latency[NAME] = Sample(None, 0)
    h.release("v2")
    h.run_until(lambda: h.phase == "Failed")
    assert "no data for" in h.status["history"][-1]["reason"]
    assert "request-duration" in h.status["history"][-1]["reason"]


def test_min_requests_from_template_variables() -> None:
    metrics = [{"name": "request-success-rate", "thresholdRange": {"min": 99},
                "templateVariables": {"minRequests": "2"}}]
    h = Harness({"metrics": metrics})
    h.initialize()
    h.metrics.success[NAME] = Sample(100.0, 3)
    h.release("v2")
    h.run_until(lambda: h.phase == "Succeeded")


def test_min_requests_from_annotation() -> None:
    h = Harness()
    body = h.cluster.get("Canary", NAME)
    body["metadata"]["annotations"] = {"meshpilot.io/min-requests": "1000"}
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    h.tick()
    assert h.status["canaryWeight"] == 10
    assert any("need 1000" in c["message"] for c in h.status["checks"])


COMPARE = [
    {"name": "request-success-rate", "thresholdRange": {"min": 90},
     "templateVariables": {"compare": "primary"}},
    {"name": "request-duration", "thresholdRange": {"max": 1000},
     "templateVariables": {"compare": "primary", "maxRatio": "1.1"}},
]


def test_compare_with_primary_passes_when_canary_is_as_good() -> None:
    h = Harness({"metrics": COMPARE})
    h.initialize()
    h.metrics.success[NAME] = Sample(99.8, 1000)
    h.metrics.success[f"{NAME}-primary"] = Sample(99.9, 5000)
    h.metrics.latency[NAME] = Sample(105.0, 1000)
    h.metrics.latency[f"{NAME}-primary"] = Sample(100.0, 5000)
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    checks = {c["name"]: c for c in h.status["checks"]}
    assert checks["request-duration"]["primaryValue"] == 100.0
    assert checks["request-success-rate"]["verdict"] == "pass"
    assert "not significantly below primary" in checks["request-success-rate"]["message"]
    h.run_until(lambda: h.phase == "Succeeded")


def test_compare_with_primary_fails_on_slower_canary() -> None:
    h = Harness({"metrics": COMPARE, "threshold": 1})
    h.initialize()
    h.metrics.latency[NAME] = Sample(120.0, 1000)
    h.metrics.latency[f"{NAME}-primary"] = Sample(100.0, 5000)
    h.release("v2")
    h.run_until(lambda: h.phase == "Failed")
    reason = h.status["history"][-1]["reason"]
    assert "request-duration p99 120ms > 1.1 x primary 100ms = 110ms" in reason


def test_compare_with_primary_fails_on_significantly_lower_success_rate() -> None:
    h = Harness({"metrics": COMPARE, "threshold": 1})
    h.initialize()
    h.metrics.success[NAME] = Sample(97.0, 1000)  # above the fixed 90% floor
    h.metrics.success[f"{NAME}-primary"] = Sample(99.9, 5000)
    h.release("v2")
    h.run_until(lambda: h.phase == "Failed")
    reason = h.status["history"][-1]["reason"]
    assert "significantly below primary" in reason and "97% of 1000" in reason


def test_compare_waits_when_primary_has_no_traffic() -> None:
    h = Harness({"metrics": COMPARE[:1]})
    h.initialize()
    h.metrics.success[f"{NAME}-primary"] = Sample(None, 0)
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    h.tick(2)
    assert h.status["canaryWeight"] == 10
    assert h.status["checks"][0]["verdict"] == "nodata"


# --- readiness, deadlines, skipAnalysis, suspend --------------------------------------


def test_canary_never_ready_rolls_back_after_progress_deadline() -> None:
    h = Harness(progressDeadlineSeconds=30)
    h.initialize()
    h.cluster.unready_templates.add(spec_hash(deployment("v2")["spec"]["template"]))
    h.release("v2")
    h.run_until(lambda: h.phase == "Failed")
    assert "not ready after 30s" in h.status["history"][-1]["reason"]
    assert h.canary_weight_routed() == 0


def test_a_restarting_canary_holds_the_step_and_its_routes() -> None:
    """A canary pod restarting mid-analysis halts advancement and leaves the router as it
    is, as Flagger's scheduler does when ``IsCanaryReady`` fails during an analysis (it
    returns before any route change): the weight stays, no step is taken, and the
    analysis goes on once the pod is back."""
    h = Harness()
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 30)
    h.cluster.unready_templates.add(spec_hash(deployment("v2")["spec"]["template"]))
    for _ in range(4):  # 40 s unready, within the 600 s progress deadline
        h.tick()
        assert h.status["canaryWeight"] == 30  # the step is held ...
        assert h.canary_weight_routed() == 30  # ... and so are the routes
    assert h.phase == "Progressing"
    h.cluster.unready_templates.clear()
    h.run_until(lambda: h.status.get("canaryWeight") == 40)
    assert h.canary_weight_routed() == 40


def test_a_new_leader_whose_canary_pods_are_starting_holds_the_step() -> None:
    """A take-over mid-canary: the new leader's controller resumes from the stored status
    while its own canary pods are still starting (the departed leader's pods of it still
    serve as endpoints). Flagger halts advancement on an unready canary and only a
    failed-checks threshold or the progress deadline rolls back, so every tick of the
    hand-over keeps the stored weight on the route, and the rollout then continues from
    that step."""
    h = Harness()
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    events = len(h.status["events"])
    h.cluster.unready_templates.add(spec_hash(deployment("v2")["spec"]["template"]))
    h.controller = h.new_controller()  # the leader died; another replica leads now
    for _ in range(3):
        h.tick(dt=1.0)
        assert (h.status["canaryWeight"], h.canary_weight_routed()) == (20, 20)
    assert any(m.startswith("Waiting for podinfo.default rollout to finish")
               for m in h.messages()[events:])
    h.cluster.unready_templates.clear()  # the new leader's pods are ready
    written = len(h.cluster.writes)
    h.run_until(lambda: h.phase == "Finalising")
    routed = [r["weight"] for objs in h.cluster.writes[written:] for o in objs
              if o["kind"] == "VirtualService" for r in o["spec"]["http"][0]["route"]
              if r["destination"]["host"] == "podinfo-canary"]
    assert routed and min(routed[:-1]) >= 20 and routed[-1] == 0  # 0 only when promoted


def test_skip_analysis_promotes_without_checks() -> None:
    h = Harness(skipAnalysis=True)
    h.initialize()
    h.release("v2")
    calls_before = len(h.metrics.calls)
    h.run_until(lambda: h.phase == "Succeeded")
    assert len(h.metrics.calls) == calls_before
    assert h.primary_image() == "podinfo:v2"
    assert h.status["history"][-1]["reason"] == "analysis skipped (skipAnalysis)"


def test_suspend_changes_nothing() -> None:
    h = Harness()
    h.initialize()
    body = h.cluster.get("Canary", NAME)
    body["spec"]["suspend"] = True
    h.release("v2")
    writes = len(h.cluster.writes)
    h.tick(3)
    assert h.phase == "Initialized" and len(h.cluster.writes) == writes


def test_new_revision_during_analysis_restarts_it() -> None:
    h = Harness()
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 30)
    h.release("v3")
    h.tick()
    assert h.status["canaryWeight"] == 0 and h.canary_weight_routed() == 0
    assert h.status["history"][-1]["outcome"] == "superseded"
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.primary_image() == "podinfo:v3"


def test_reverting_to_the_primary_revision_starts_nothing() -> None:
    h = Harness({"threshold": 1})
    h.initialize()
    h.metrics.success[NAME] = Sample(50.0, 100)
    h.release("v2")
    h.run_until(lambda: h.phase == "Failed")
    h.release("v1")
    h.tick(2)
    assert h.phase == "Failed"
    assert "back to the revision the primary runs" in h.messages()[-1]


def test_promotion_waits_for_primary_rollout() -> None:
    h = Harness({"maxWeight": 10})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.phase == "Promoting")
    promoted = h.cluster.get("Deployment", f"{NAME}-primary")["spec"]["template"]
    h.cluster.unready_templates.add(spec_hash(promoted))
    h.tick(2, dt=1.0)
    assert h.phase == "Promoting" and h.canary_weight_routed() == 10
    h.cluster.unready_templates.clear()
    h.run_until(lambda: h.phase == "Succeeded", dt=1.0)


# --- restart safety -------------------------------------------------------------------


def test_resume_after_restart_at_the_same_step() -> None:
    h = Harness()
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 30)
    vs_before = copy.deepcopy(h.cluster.get("VirtualService", NAME))
    h.controller = h.new_controller()  # the control plane was killed and restarted
    h.tick(dt=1.0)  # before the interval is up: nothing moves
    assert h.cluster.get("VirtualService", NAME)["spec"] == vs_before["spec"]
    assert h.status["canaryWeight"] == 30
    h.tick()
    assert h.status["canaryWeight"] == 40
    h.run_until(lambda: h.phase == "Succeeded")


def test_crash_between_status_and_objects_is_repaired_forward() -> None:
    h = Harness()
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    h.cluster.fail_writes = True
    h.tick()
    assert h.status["canaryWeight"] == 30 and h.canary_weight_routed() == 20
    h.cluster.fail_writes = False
    h.controller = h.new_controller()
    h.tick(dt=1.0)
    assert h.canary_weight_routed() == 30 and h.status["canaryWeight"] == 30


def test_user_apply_racing_the_scale_down_is_not_overwritten() -> None:
    h = Harness()
    h.initialize()
    target = h.cluster.get("Deployment", NAME)
    stale = copy.deepcopy(target)
    h.release("v2")  # bumps resourceVersion
    scaled = {**stale, "spec": {**stale["spec"], "replicas": 0}}
    with pytest.raises(Exception, match="conflict"):
        h.cluster.apply([scaled])
    assert h.cluster.get("Deployment", NAME)["spec"]["template"]["spec"]["containers"][0][
        "image"] == "podinfo:v2"


def test_one_second_intervals_roll_back_within_seconds() -> None:
    h = Harness({"interval": "1s", "threshold": 2})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10, dt=1.0)
    started = h.clock.now
    h.metrics.success[NAME] = Sample(50.0, 100)
    h.run_until(lambda: h.phase == "Failed", dt=1.0)
    assert h.clock.now - started <= 2.0
    assert h.canary_weight_routed() == 0


def test_revert_on_deletion_hands_traffic_back_to_the_target() -> None:
    h = Harness(revertOnDeletion=True)
    h.initialize()
    c = h.cluster.canary("default", NAME)
    h.cluster.delete("default", [("Canary", NAME)])
    h.controller.deleted(c)
    assert h.target_replicas() == 2
    apex = h.cluster.get("Service", NAME)
    assert apex["spec"]["selector"] == {"app": NAME}
    for kind, name in (("VirtualService", NAME), ("Deployment", f"{NAME}-primary"),
                       ("Service", f"{NAME}-canary"), ("DestinationRule", f"{NAME}-primary")):
        assert h.cluster.get(kind, name) is None

"""The HorizontalPodAutoscaler's arithmetic, tick by tick with a fake clock.

Each case follows Kubernetes' HPA controller (``pkg/controller/podautoscaler``):
``replica_calculator.go`` for the usage ratio, the 10 % tolerance and missing / unready
pods; ``horizontal.go`` for the 300 s scale-down stabilisation, the max(2x, 4) scale-up
limit without ``behavior``, and ``behavior``'s windows, policies and selectPolicy.
"""

from __future__ import annotations

import pytest

from meshpilot.api.autoscaling import HorizontalPodAutoscalerBehavior, parse_quantity
from meshpilot.delivery.autoscaling.replicas import (
    MetricError,
    PodUsage,
    Tolerance,
    object_average_replicas,
    object_value_replicas,
    per_pod_replicas,
)
from meshpilot.delivery.autoscaling.scaling import (
    ScalingHistory,
    normalize_default,
    normalize_with_behavior,
)

TOL = Tolerance()


def cpu_pods(*usage: float | None, request: float = 0.1, ready: bool = True) -> list[PodUsage]:
    return [PodUsage(f"p{i}", ready, u, request) for i, u in enumerate(usage)]


def utilization(current: int, pods: list[PodUsage], target: float) -> int:
    return per_pod_replicas(current, pods, target, TOL, utilization=True, cpu=True).replicas


# --- the replica calculator -------------------------------------------------------------

def test_within_the_tolerance_the_count_stays() -> None:
    """|1 - ratio| <= 0.1 changes nothing: 2 pods at 108 % and 92 % of a 100 % target."""
    assert utilization(2, cpu_pods(0.108, 0.108), 100) == 2
    assert utilization(2, cpu_pods(0.092, 0.092), 100) == 2


def test_outside_the_tolerance_the_count_is_the_ratio_times_the_pods() -> None:
    """ceil(ratio x pods): 2 pods at 150 % of 50 % -> 6; at 20 % of 50 % -> 1."""
    assert utilization(2, cpu_pods(0.15, 0.15), 50) == 6
    assert utilization(2, cpu_pods(0.02, 0.02), 50) == 1
    proposal = per_pod_replicas(2, cpu_pods(0.15, 0.05), 50, TOL, utilization=True, cpu=True)
    assert proposal.current == pytest.approx(100.0) and proposal.raw == pytest.approx(0.1)


def test_a_scale_down_assumes_missing_pods_at_the_target() -> None:
    """A pod with no sample yet counts at max(target, 100 %) of its request when the
    others ask for fewer pods: 2 idle + 1 missing at 50 % target -> 2, not 1."""
    assert utilization(3, cpu_pods(0.0, 0.0, None), 50) == 2


def test_a_scale_up_assumes_missing_and_unready_pods_idle() -> None:
    """Missing pods count 0 when scaling up: 1 pod at 200 % + 1 missing is 100 % over 2
    pods, so the count stays at 2 (4 if the missing pod were left out); an unready pod
    likewise pulls the ratio down."""
    assert utilization(2, cpu_pods(0.2, None), 100) == 2
    pods = [*cpu_pods(0.3), PodUsage("new", False, 0.3, 0.1)]
    assert utilization(2, pods, 100) == 3  # (300 % + 0) / 2 pods = 150 % -> 3


def test_a_proposal_that_changes_direction_once_filled_in_keeps_the_count() -> None:
    """Scale-down evidence from one pod, with two missing at the target, no longer says
    down within the tolerance: the count stays."""
    assert utilization(3, cpu_pods(0.08, None, None), 100) == 3


def test_utilization_needs_every_pod_to_request_cpu() -> None:
    with pytest.raises(MetricError, match="missing request for cpu"):
        utilization(1, cpu_pods(0.1, request=0.0), 50)
    with pytest.raises(MetricError, match="did not receive metrics"):
        utilization(1, cpu_pods(None), 50)


def test_average_value_and_object_targets() -> None:
    """AverageValue: ceil(sum / target); Object Value: ratio x ready pods; Object
    AverageValue: ceil(value / target), reported per current replica."""
    pods = [PodUsage("a", True, 30.0), PodUsage("b", True, 30.0)]
    assert per_pod_replicas(2, pods, 10.0, TOL, utilization=False, cpu=False).replicas == 6
    assert object_value_replicas(2, 2, 45.0, 10.0, TOL).replicas == 9
    assert object_value_replicas(2, 2, 10.5, 10.0, TOL).replicas == 2
    average = object_average_replicas(3, 90.0, 10.0, TOL)
    assert average.replicas == 9 and average.current == 30.0


def test_a_configured_tolerance_per_direction() -> None:
    """behavior.scaleUp/scaleDown.tolerance (Kubernetes 1.33): 0 up makes 104 % scale."""
    tol = Tolerance(up=0.0, down=0.5)
    pods = cpu_pods(0.104, 0.104)
    assert per_pod_replicas(2, pods, 100, tol, utilization=True, cpu=True).replicas == 3
    idle = cpu_pods(0.06, 0.06)
    assert per_pod_replicas(2, idle, 100, tol, utilization=True, cpu=True).replicas == 2


def test_quantities() -> None:
    assert parse_quantity("100m") == pytest.approx(0.1)
    assert parse_quantity("2k") == 2000 and parse_quantity(3) == 3
    with pytest.raises(ValueError, match="does not parse"):
        parse_quantity("ten")


# --- normalisation without behavior -----------------------------------------------------

def test_scale_down_waits_for_the_highest_recommendation_of_five_minutes() -> None:
    """Tick by tick every 15 s: 5 is recommended once, then 2; the count stays at 5
    until the 5 is older than 300 s."""
    history = ScalingHistory()
    assert normalize_default(history, 0, 5, 5, 1, 10).replicas == 5
    for t in range(15, 300, 15):
        outcome = normalize_default(history, t, 5, 2, 1, 10)
        assert outcome.replicas == 5 and outcome.able_reason == "ScaleDownStabilized"
    assert normalize_default(history, 301, 5, 2, 1, 10).replicas == 2


def test_scale_up_is_limited_and_clamped() -> None:
    """Without behavior a sync at most doubles (or reaches 4); max and min clamp."""
    up = normalize_default(ScalingHistory(), 0, 3, 20, 1, 50)
    assert (up.replicas, up.limited, up.limit_reason) == (6, True, "ScaleUpLimit")
    top = normalize_default(ScalingHistory(), 0, 3, 20, 1, 5)
    assert (top.replicas, top.limit_reason) == (5, "TooManyReplicas")
    low = normalize_default(ScalingHistory(), 0, 3, 1, 2, 5)
    assert (low.replicas, low.limit_reason) == (2, "TooFewReplicas")


# --- normalisation with behavior --------------------------------------------------------

def behavior(doc: dict[str, object]) -> HorizontalPodAutoscalerBehavior:
    return HorizontalPodAutoscalerBehavior.model_validate(doc)


def test_behavior_scale_down_window_and_pods_policy() -> None:
    """scaleDown: 10 s window, at most 1 pod per 5 s: from 4 to 1 takes a step per
    period once the window (samples strictly newer than 10 s) has passed."""
    b = behavior({"scaleDown": {"stabilizationWindowSeconds": 10,
                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 5}]}})
    history = ScalingHistory()
    current, seen = 4, []
    for t in range(0, 40, 2):
        outcome = normalize_with_behavior(history, t, current, 4 if t == 0 else 1, 1, 10, b)
        if outcome.replicas != current:
            history.record_scale(t, current, outcome.replicas, 5)
            current = outcome.replicas
            seen.append((t, current))
    assert seen == [(10, 3), (16, 2), (22, 1)]


def test_behavior_scale_up_policies_and_select() -> None:
    """Default scale-up: max(4 pods, 100 %) per 15 s; selectPolicy Min takes the smaller;
    Disabled never scales up."""
    default = behavior({})
    assert normalize_with_behavior(ScalingHistory(), 0, 2, 30, 1, 50, default).replicas == 6
    assert normalize_with_behavior(ScalingHistory(), 0, 10, 30, 1, 50, default).replicas == 20
    least = behavior({"scaleUp": {"selectPolicy": "Min"}})
    assert normalize_with_behavior(ScalingHistory(), 0, 10, 30, 1, 50, least).replicas == 14
    off = behavior({"scaleUp": {"selectPolicy": "Disabled"}})
    outcome = normalize_with_behavior(ScalingHistory(), 0, 2, 30, 1, 50, off)
    assert outcome.replicas == 2 and outcome.limit_reason == "ScaleUpLimit"


def test_behavior_scale_up_window_takes_the_lowest_recent_recommendation() -> None:
    """scaleUp.stabilizationWindowSeconds 6: a burst recommended once does not scale up
    until every recommendation of the window agrees."""
    b = behavior({"scaleUp": {"stabilizationWindowSeconds": 6}})
    history = ScalingHistory()
    assert normalize_with_behavior(history, 0, 2, 2, 1, 10, b).replicas == 2
    assert normalize_with_behavior(history, 3, 2, 5, 1, 10, b).replicas == 2
    assert normalize_with_behavior(history, 7, 2, 5, 1, 10, b).replicas == 5


def test_default_scale_down_window_applies_with_behavior_too() -> None:
    """A behavior without scaleDown keeps the controller's 300 s scale-down window."""
    b = behavior({"scaleUp": {"stabilizationWindowSeconds": 0}})
    history = ScalingHistory()
    normalize_with_behavior(history, 0, 5, 5, 1, 10, b)
    assert normalize_with_behavior(history, 200, 5, 1, 1, 10, b).replicas == 5
    assert normalize_with_behavior(history, 301, 5, 1, 1, 10, b).replicas == 1

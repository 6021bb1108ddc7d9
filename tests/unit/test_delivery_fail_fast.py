"""Issue 13's zero-failure levers, tick by tick: fail-fast judges a canary whose failures
are already conclusive between interval ends, and the mirror-first gate keeps user
requests off a canary until it has passed its checks on mirrored copies of live traffic
(documented as safe for idempotent requests, as Flagger's mirroring is)."""

from __future__ import annotations

import pytest
from tests.unit.rollout_harness import NAME, Harness

from meshpilot.delivery.fail_fast import wilson_upper
from meshpilot.delivery.providers import Sample

INTERVAL = 10.0  # the harness Canary's analysis interval


def at_first_weight(h: Harness) -> None:
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.canary_weight_routed() == 10)


def test_the_bound_separates_bad_luck_from_a_bad_revision() -> None:
    assert wilson_upper(0, 2) < 0.99  # two of two failed: surely below 99 %
    assert wilson_upper(98, 100) > 0.99  # two of a hundred: could be a 99 % revision
    assert wilson_upper(0, 0) == 1.0


def test_conclusive_failures_roll_back_within_the_interval() -> None:
    """Threshold 1: the canary fails half its requests; a tick one second after its
    failures are seen rolls it back, nine seconds before the interval would end."""
    h = Harness({"threshold": 1})
    at_first_weight(h)
    h.metrics.success[NAME] = Sample(50.0, 6)
    h.tick(dt=1.0)
    assert h.phase == "Failed", h.messages()
    assert h.canary_weight_routed() == 0
    assert "fail-fast" in h.status["history"][-1]["reason"]


@pytest.mark.parametrize("sample", [Sample(90.0, 10), Sample(98.0, 100), Sample(100.0, 40)],
                         ids=["one failure", "two in a hundred", "none"])
def test_what_is_not_conclusive_waits_for_the_interval(sample: Sample) -> None:
    h = Harness({"threshold": 1})
    at_first_weight(h)
    h.metrics.success[NAME] = sample
    h.tick(3, dt=1.0)
    assert h.phase == "Progressing" and h.canary_weight_routed() == 10


def test_each_failed_check_fail_fast_counts_rests_on_new_evidence() -> None:
    """Threshold 2: the first conclusive tick counts one failure; the interval restarts
    from it, and only evidence after it counts (the fake's sample stands for the newest
    requests), so the next failure is counted a second later at the earliest, once."""
    h = Harness({"threshold": 2})
    at_first_weight(h)
    h.metrics.success[NAME] = Sample(0.0, 4)
    h.tick(dt=1.0)
    assert h.status["failedChecks"] == 1 and h.phase == "Progressing"
    h.tick(dt=0.5)
    assert h.status["failedChecks"] == 1
    h.tick(dt=1.0)
    assert h.phase == "Failed"


def test_the_annotation_turns_it_off() -> None:
    h = Harness({"threshold": 1}, annotations={"meshpilot.io/fail-fast": "false"})
    at_first_weight(h)
    h.metrics.success[NAME] = Sample(50.0, 40)
    h.tick(3, dt=1.0)
    assert h.phase == "Progressing"
    h.tick(dt=INTERVAL)
    assert h.phase == "Failed"


def test_the_mirror_first_gate_holds_user_traffic_for_n_passed_intervals() -> None:
    h = Harness(annotations={"meshpilot.io/mirror-first": "3"})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("mirrorStage") is True)
    seen = []
    for _ in range(3):
        rule = h.cluster.get("VirtualService", NAME)["spec"]["http"][0]
        seen.append((rule.get("mirror", {}).get("host"), h.canary_weight_routed()))
        h.tick()
    assert seen == [(f"{NAME}-canary", 0)] * 3
    rule = h.cluster.get("VirtualService", NAME)["spec"]["http"][0]
    assert "mirror" not in rule and h.canary_weight_routed() == 10
    assert any("Mirrored traffic passed the checks 2/3" in m for m in h.messages())
    h.run_until(lambda: h.phase == "Succeeded")


def test_a_bad_revision_is_rolled_back_on_mirrored_traffic_alone() -> None:
    """No VirtualService write ever gives the bad canary a user request."""
    h = Harness({"threshold": 1}, annotations={"meshpilot.io/mirror-first": "2"})
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("mirrorStage") is True)
    h.metrics.success[NAME] = Sample(50.0, 40)
    h.run_until(lambda: h.phase == "Failed", dt=1.0)
    canary_weights = [route["weight"] for batch in h.cluster.writes for obj in batch
                      if obj["kind"] == "VirtualService"
                      for rule in obj["spec"]["http"] for route in rule["route"]
                      if route["destination"]["host"] == f"{NAME}-canary"]
    assert canary_weights and max(canary_weights) == 0
    assert "fail-fast" in h.status["history"][-1]["reason"]


@pytest.mark.parametrize(("key", "value"), [("meshpilot.io/mirror-first", "two"),
                                            ("meshpilot.io/fail-fast", "no"),
                                            ("meshpilot.io/min-requests", "-1")])
def test_bad_annotation_values_are_refused(key: str, value: str) -> None:
    from tests.unit.rollout_harness import canary

    from meshpilot.api.flagger import Canary

    body = canary()
    body["metadata"]["annotations"] = {key: value}
    with pytest.raises(ValueError, match=key):
        Canary.model_validate(body)


class LiveSidecars:
    """The canary's sidecar counters as a live read returns them: (requests, 5xx)."""

    def __init__(self) -> None:
        self.counts: tuple[int, int] | None = (100, 0)  # probes and earlier traffic

    def live_counts(self, namespace: str, workload: str) -> tuple[int, int] | None:
        return self.counts if workload == NAME else None


def test_live_counters_since_the_first_step_are_judged_on_the_next_tick() -> None:
    """Read live from the sidecars, failures count from the baseline taken before the
    canary's first request: the telemetry's last cycle (healthy here) is not waited for."""
    h = Harness({"threshold": 1})
    live = LiveSidecars()
    h.controller.sensors.live = live
    at_first_weight(h)
    assert h.status["failFastBaseline"] == [100, 0]
    live.counts = (104, 2)
    h.tick(dt=0.25)
    assert h.phase == "Failed"
    assert "4 requests, 2 failed" in h.status["history"][-1]["reason"]


def test_counters_set_back_by_a_pod_restart_are_a_new_baseline() -> None:
    h = Harness({"threshold": 1})
    live = LiveSidecars()
    h.controller.sensors.live = live
    at_first_weight(h)
    live.counts = (3, 2)  # a restarted pod: fewer than the baseline
    h.tick(dt=0.25)
    assert h.phase == "Progressing" and h.status["failFastBaseline"] == [3, 2]
    live.counts = (7, 5)
    h.tick(dt=0.25)
    assert h.phase == "Failed"

"""Fail-fast for an Argo canary (a meshpilot extension, opt-in), tick by tick.

Argo Rollouts judges a canary only at its analysis measurements (``rollout/analysis.go``)
and never between them: a Rollout without the annotation behaves so here too. With
``meshpilot.io/fail-fast-min-success-rate`` the canary's live counters are judged on every
tick by the rule Flagger's fail-fast uses here (two failures at least, the 99 % upper
bound below the minimum), and a conclusive failure aborts the Rollout as Argo aborts on a
failed analysis run (``kubectl argo rollouts abort``'s outcome: weight 0, Degraded,
``RolloutAborted`` with the reason).
"""

from __future__ import annotations

import copy

import yaml
from tests.unit.argo_harness import NAME, NS, ArgoHarness
from tests.unit.argo_harness import rollout as rollout_body

from meshpilot.api.argo import FAIL_FAST_MIN_SUCCESS_ANNOTATION
from meshpilot.delivery.argo import ArgoController
from meshpilot.delivery.argo.fail_fast import ArgoFailFast
from meshpilot.validation import codes, plan_apply


class Counters:
    """The canary pods' sidecar counters (requests, failed) by workload."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int]] = {}
        self.reads: list[str] = []

    def live_counts(self, namespace: str, workload: str) -> tuple[int, int] | None:
        self.reads.append(workload)
        return self.counts.get(workload, (0, 0))


def harness(minimum: str | None = "99") -> tuple[ArgoHarness, Counters]:
    h = ArgoHarness()
    counters = Counters()
    h.controller = ArgoController(h.clock, h.cluster, h.cluster, ArgoFailFast(counters))
    annotate(h, minimum)
    h.tick(2)
    assert h.status["phase"] == "Healthy"
    return h, counters


def annotate(h: ArgoHarness, minimum: str | None) -> None:
    body = h.cluster.objects[("Rollout", NS, NAME)]
    annotations = body["metadata"].setdefault("annotations", {})
    if minimum is not None:
        annotations[FAIL_FAST_MIN_SUCCESS_ANNOTATION] = minimum


def release(h: ArgoHarness, minimum: str | None = "99") -> str:
    status = copy.deepcopy(h.status)
    v2 = h.release("v2")
    h.cluster.objects[("Rollout", NS, NAME)]["status"] = status
    annotate(h, minimum)
    h.tick(3, dt=0.1)
    assert h.split() == {"stable": 80, "canary": 20}
    return f"{NAME}-{v2}"


def test_conclusive_failures_abort_the_rollout_between_measurements() -> None:
    h, counters = harness()
    canary = release(h)
    counters.counts[canary] = (3, 1)  # one failure is never conclusive
    h.tick(dt=0.1)
    assert h.split() == {"stable": 80, "canary": 20}
    counters.counts[canary] = (4, 2)
    h.tick(dt=0.1)
    st = h.status
    assert h.split() == {"stable": 100, "canary": 0}
    assert st["phase"] == "Degraded" and st["abort"] is True
    assert st["message"].startswith("RolloutAborted"), st["message"]
    assert "fail-fast (meshpilot extension)" in st["message"]
    assert "(4 requests, 2 failed" in st["message"]


def test_without_the_annotation_nothing_is_judged_between_measurements() -> None:
    h, counters = harness(None)
    canary = release(h, None)
    counters.counts[canary] = (10, 10)
    h.tick(5, dt=0.1)
    assert h.split() == {"stable": 80, "canary": 20} and not h.status.get("abort")
    assert counters.reads == []  # not even read


def test_a_healthy_canary_keeps_going_and_a_retry_judges_new_evidence_only() -> None:
    h, counters = harness("90")
    canary = release(h, "90")
    counters.counts[canary] = (200, 3)  # 98.5 %: above 90 %
    h.tick(3, dt=0.1)
    assert h.split() == {"stable": 80, "canary": 20}
    counters.counts[canary] = (220, 40)  # since the revision began: 81.8 %
    h.tick(dt=0.1)
    assert h.status["abort"] is True and h.split()["canary"] == 0
    assert h.command("retry") == ""
    h.tick(2, dt=0.1)
    assert h.split() == {"stable": 80, "canary": 20}  # the old failures do not count
    counters.counts[canary] = (240, 41)  # one of twenty new ones failed: not conclusive
    h.tick(2, dt=0.1)
    assert h.split() == {"stable": 80, "canary": 20} and not h.status["abort"]


def test_the_annotation_is_validated_at_apply() -> None:
    def apply(value: str, blue_green: bool = False) -> list[str]:
        body = rollout_body()
        body["metadata"]["annotations"] = {FAIL_FAST_MIN_SUCCESS_ANNOTATION: value}
        if blue_green:
            body["spec"]["strategy"] = {"blueGreen": {"activeService": NAME}}
        plan = plan_apply([("rollout.yaml", yaml.safe_dump(body, sort_keys=False))], [])
        found = [d for d in plan.diagnostics if d.code.startswith("MP0069")
                 or d.code.startswith("MP2031")]
        for d in found:  # named where it stands, with the valid alternatives
            assert d.file == "rollout.yaml" and d.line is not None, d
            assert d.path.endswith(FAIL_FAST_MIN_SUCCESS_ANNOTATION), d
        return [d.code for d in plan.diagnostics]

    assert codes.ARGO_FAIL_FAST_VALUE.code not in apply("99")
    assert codes.ARGO_FAIL_FAST_VALUE.code not in apply("99.5")
    for bad in ("0", "101", "high", "nan", "-1"):
        assert codes.ARGO_FAIL_FAST_VALUE.code in apply(bad), bad
    assert codes.ARGO_FAIL_FAST_BLUE_GREEN.code in apply("99", blue_green=True)


def test_a_deleted_rollout_forgets_its_evidence() -> None:
    h, counters = harness()
    canary = release(h)
    counters.counts[canary] = (5, 1)
    h.tick(dt=0.1)
    assert h.controller.fail_fast is not None
    h.controller.deleted(NS, NAME, h.status)
    assert h.controller.fail_fast._since == {}

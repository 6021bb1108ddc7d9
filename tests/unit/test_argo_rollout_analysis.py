"""Analysis in a Rollout's canary, stepped tick by tick: the Rollout controller and the
AnalysisRun runner over the same in-memory cluster, with a scripted metric provider.

Each case names the Argo behaviour it follows (``rollout/analysis.go``:
``reconcileStepBasedAnalysisRun``, ``reconcileBackgroundAnalysisRun``,
``needsNewAnalysisRun``, ``cancelAnalysisRuns``; ``docs/features/analysis.md``).
The objects are ``argo_harness``'s (Argo's ``examples/istio/istio-subset-split.yaml``).
"""

from __future__ import annotations

from typing import Any

from tests.unit.argo_analysis_fakes import ScriptedMeasurer
from tests.unit.argo_harness import NAME, NS, ArgoHarness

from meshpilot.delivery.argo.runner import AnalysisRunner
from meshpilot.delivery.argo.workloads import pod_template_hash

TEMPLATE = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
    "metadata": {"name": "success-rate", "namespace": NS},
    "spec": {"args": [{"name": "service-name"}, {"name": "canary-hash"}],
             "metrics": [{"name": "success-rate", "interval": "1s", "count": 2,
                          "successCondition": "result[0] >= 0.95",
                          "provider": {"prometheus": {
                              "address": "http://127.0.0.1:9",
                              "query": 'rate{service="{{args.service-name}}",'
                                       'hash="{{args.canary-hash}}"}'}}}]}}
STEP_ANALYSIS = {"analysis": {"templates": [{"templateName": "success-rate"}],
                              "args": [{"name": "service-name", "value": NAME},
                                       {"name": "canary-hash", "valueFrom": {
                                           "podTemplateHashValue": "Latest"}}]}}


class Analysed(ArgoHarness):
    def __init__(self, *script: Any, **canary: Any) -> None:
        super().__init__(**canary)
        self.cluster.put(TEMPLATE)
        self.measurer = ScriptedMeasurer(*script)
        self.runner = AnalysisRunner(self.clock, self.cluster, self.cluster, self.measurer)

    def tick(self, n: int = 1, dt: float = 1.0) -> None:
        """A Rollout tick, then a tick of each AnalysisRun (as the delivery loop)."""
        for _ in range(n):
            super().tick(1, dt)
            for kind, ns, name in list(self.cluster.objects):
                if kind == "AnalysisRun":
                    self.runner.tick(ns, name)

    def until(self, what: str, ready: Any, limit: int = 12) -> None:
        """Tick (one second each) until ``ready()``; at most ``limit`` ticks."""
        for _ in range(limit):
            if ready():
                return
            self.tick()
        assert ready(), f"not {what} after {limit} ticks: {self.status}"

    def phase_is(self, phase: str) -> bool:
        """The phase, once the Rollout has seen the latest template."""
        current = self.status.get("currentPodHash") == pod_template_hash(
            self.cluster.get("Rollout", NAME)["spec"]["template"])  # type: ignore[index]
        return current and self.status.get("phase") == phase

    def runs(self) -> dict[str, dict[str, Any]]:
        return {name: body for (kind, _, name), body in self.cluster.objects.items()
                if kind == "AnalysisRun"}

    def release_v2(self) -> tuple[str, str]:
        super().tick(2)
        v1 = self.status["stableRS"]
        return v1, self.release("v2")


def test_a_passing_step_analysis_moves_on_to_promotion() -> None:
    # reconcileStepBasedAnalysisRun: the step waits for its run; Successful moves on
    h = Analysed([0.99], [0.97], steps=[{"setWeight": 20}, STEP_ANALYSIS])
    _, v2 = h.release_v2()
    h.tick(2)  # setWeight 20: the canary's pod, then the weight
    assert h.split() == {"stable": 80, "canary": 20}
    h.tick()  # the analysis step makes its run, which measures once
    (name,) = h.runs()
    assert name == f"{NAME}-{v2}-1-1"
    run = h.runs()[name]
    assert run["metadata"]["labels"] == {"rollouts-pod-template-hash": v2,
                                         "rollout-type": "Step", "step-index": "1"}
    assert run["spec"]["args"] == [{"name": "service-name", "value": NAME},
                                   {"name": "canary-hash", "value": v2}]
    assert h.measurer.calls[0].provider.prometheus is not None
    assert f'hash="{v2}"' in h.measurer.calls[0].provider.prometheus.query
    st = h.status
    assert st["currentStepIndex"] == 1 and st["phase"] == "Progressing"
    assert st["canary"]["currentStepAnalysisRunStatus"]["name"] == name
    assert h.split() == {"stable": 80, "canary": 20}  # held while the run runs
    h.tick()
    assert h.runs()[name]["status"]["phase"] == "Successful"
    h.tick(4)
    assert h.status["phase"] == "Healthy" and h.status["stableRS"] == v2
    assert h.split() == {"stable": 100, "canary": 0}
    assert h.subset_hashes() == {"stable": v2, "canary": v2}


def test_a_failing_step_analysis_aborts_and_stable_takes_all_traffic() -> None:
    # reconcileStepBasedAnalysisRun: Failed -> AddAbort("Step-based analysis phase
    # error/failed: ..."); the abort sends all traffic to stable, the canary to 0 pods
    h = Analysed([0.5], steps=[{"setWeight": 20}, STEP_ANALYSIS])
    v1, v2 = h.release_v2()
    h.tick(2)
    assert h.split() == {"stable": 80, "canary": 20}
    h.tick(2)
    st = h.status
    assert st["abort"] is True and st["phase"] == "Degraded"
    assert "Step-based analysis phase error/failed" in st["message"]
    assert 'Metric "success-rate" assessed Failed' in st["message"]
    assert st["canary"]["currentStepAnalysisRunStatus"]["status"] == "Failed"
    assert h.split() == {"stable": 100, "canary": 0}
    assert st["stableRS"] == v1 and h.replicas(v1) == 2
    h.tick(31)  # abortScaleDownDelaySeconds
    assert h.replicas(v2) == 0


def test_retry_after_a_failed_analysis_makes_a_new_run() -> None:
    # needsNewAnalysisRun: after an abort, a retried Rollout gets a new run, never the
    # old (failed) one
    h = Analysed([0.5], [0.99], [0.99], steps=[{"setWeight": 20}, STEP_ANALYSIS])
    _, v2 = h.release_v2()
    h.until("aborted", lambda: h.status.get("abort") is True)
    assert h.command("retry") == ""
    h.until("promoted", lambda: h.phase_is("Healthy"))
    assert set(h.runs()) == {f"{NAME}-{v2}-1-1", f"{NAME}-{v2}-2-1"}
    assert h.status["phase"] == "Healthy" and h.status["stableRS"] == v2


def test_background_analysis_from_its_starting_step_aborts_on_failure() -> None:
    # reconcileBackgroundAnalysisRun: made once the steps reach startingStep, runs beside
    # them; Error/Failed -> abort ("Background analysis phase error/failed")
    background = {"templates": [{"templateName": "success-rate"}], "startingStep": 1,
                  "args": STEP_ANALYSIS["analysis"]["args"]}
    h = Analysed([0.99], [0.2], steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}],
                 analysis=background)
    _, v2 = h.release_v2()
    h.until("at the pause", lambda: h.phase_is("Paused"))
    (name,) = h.runs()
    assert name == f"{NAME}-{v2}-1"
    assert h.runs()[name]["metadata"]["labels"]["rollout-type"] == "Background"
    h.until("aborted", lambda: h.status.get("abort") is True)
    st = h.status
    assert st["abort"] is True and "Background analysis phase error/failed" in st["message"]
    assert st["canary"]["currentBackgroundAnalysisRunStatus"]["status"] == "Failed"
    assert h.split() == {"stable": 100, "canary": 0}


def test_background_analysis_is_terminated_once_promoted() -> None:
    # reconcileBackgroundAnalysisRun: an interval without count runs until the Rollout is
    # fully promoted, then it is terminated (Successful, "Run Terminated")
    template = {**TEMPLATE, "metadata": {"name": "forever", "namespace": NS},
                "spec": {"metrics": [{"name": "ok", "interval": "1s",
                                      "successCondition": "result[0] > 0",
                                      "provider": {"web": {"url": "http://127.0.0.1:9/"}}}]}}
    h = Analysed(*([[1]] * 20), steps=[{"setWeight": 50}, {"pause": {"duration": 2}}],
                 analysis={"templates": [{"templateName": "forever"}]})
    h.cluster.put(template)
    _, v2 = h.release_v2()
    h.until("promoted", lambda: h.phase_is("Healthy"))
    assert h.status["stableRS"] == v2
    run = h.runs()[f"{NAME}-{v2}-1"]
    assert run["spec"]["terminate"] is True
    assert run["status"]["phase"] == "Successful"
    assert run["status"]["message"] == "Run Terminated"


def test_an_inconclusive_step_pauses_and_promote_runs_it_again() -> None:
    # Inconclusive -> pause (InconclusiveAnalysis); after promote needsNewAnalysisRun
    # makes a new run for the step
    template = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "metrics": [{
        **TEMPLATE["spec"]["metrics"][0], "count": 1, "failureCondition": "result[0] < 0.5"}]}}
    h = Analysed([0.8], [0.99], steps=[{"setWeight": 20}, STEP_ANALYSIS])
    h.cluster.put(template)
    _, v2 = h.release_v2()
    h.until("paused", lambda: h.phase_is("Paused"))
    st = h.status
    assert st["message"] == "InconclusiveAnalysis"
    assert st["pauseConditions"][0]["reason"] == "InconclusiveAnalysis"
    assert h.split() == {"stable": 80, "canary": 20}
    assert h.command("promote") == ""
    h.until("promoted", lambda: h.phase_is("Healthy"))
    assert f"{NAME}-{v2}-2-1" in h.runs()


def test_a_missing_template_degrades_the_rollout_until_it_exists() -> None:
    # getAnalysisTemplatesFromRefs: a template not found is an InvalidSpec
    h = Analysed([0.99], [0.99], steps=[{"setWeight": 20}, {"analysis": {
        "templates": [{"templateName": "nope"}]}}])
    h.release_v2()
    h.until("degraded", lambda: h.phase_is("Degraded"))
    assert "AnalysisTemplate 'nope' not found" in h.status["message"]
    assert h.runs() == {}


def test_a_user_abort_terminates_the_running_analysis() -> None:
    # cancelAnalysisRuns: an aborted Rollout terminates its runs
    h = Analysed(*([[0.99]] * 5), steps=[{"setWeight": 20}, STEP_ANALYSIS])
    h.release_v2()
    h.until("analysing", lambda: bool(h.runs()))
    (name,) = h.runs()
    assert h.command("abort") == ""
    h.tick()
    run = h.runs()[name]
    assert run["spec"]["terminate"] is True and run["status"]["phase"] == "Successful"
    assert h.split() == {"stable": 100, "canary": 0}


def test_deleting_the_rollout_deletes_its_runs() -> None:
    h = Analysed([0.99], steps=[{"setWeight": 20}, STEP_ANALYSIS])
    h.release_v2()
    h.until("analysing", lambda: bool(h.runs()))
    status = h.status
    h.cluster.objects.pop(("Rollout", NS, NAME))
    h.controller.deleted(NS, NAME, status)
    assert h.runs() == {}


def test_a_cluster_template_is_found_with_cluster_scope() -> None:
    # AnalysisTemplateRef.clusterScope: the template is a ClusterAnalysisTemplate
    h = Analysed([0.99], [0.99], steps=[{"setWeight": 20}, {"analysis": {
        "templates": [{"templateName": "cluster-rate", "clusterScope": True}],
        "args": STEP_ANALYSIS["analysis"]["args"]}}])
    h.cluster.put({**TEMPLATE, "kind": "ClusterAnalysisTemplate",
                   "metadata": {"name": "cluster-rate", "namespace": ""}})
    _, v2 = h.release_v2()
    h.until("promoted", lambda: h.phase_is("Healthy"))
    assert h.status["stableRS"] == v2
    (run,) = h.runs().values()
    assert run["spec"]["metrics"][0]["name"] == "success-rate"


def test_finished_runs_beyond_the_history_limits_are_deleted() -> None:
    # spec.analysis successfulRunHistoryLimit / unsuccessfulRunHistoryLimit (Argo's
    # FilterAnalysisRunsToDelete: the current runs are kept, then that many of each)
    h = Analysed(*([[0.99]] * 6), steps=[{"setWeight": 20}, STEP_ANALYSIS])
    h.tick(2)  # v1 stable
    made: list[str] = []
    for version in ("v2", "v3", "v4"):
        pod_hash = h.release(version)
        h.cluster.objects[("Rollout", NS, NAME)]["spec"]["analysis"] = {
            "successfulRunHistoryLimit": 1, "unsuccessfulRunHistoryLimit": 1}
        h.until(f"{version} promoted", lambda: h.phase_is("Healthy"))
        made.append(f"{NAME}-{pod_hash}-{len(made) + 1}-1")
    # v4's run was made with v3's (kept, the 1 successful one) and v2's (deleted)
    assert set(h.runs()) == set(made[1:])
    assert h.status["meshpilot"]["analysisRuns"] == made[1:]

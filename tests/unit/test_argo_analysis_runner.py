"""An AnalysisRun stepped tick by tick with a fake clock and a scripted provider.

Each case names the Argo behaviour it follows, from ``analysis/analysis.go``
(``generateMetricTasks``, ``runMeasurements``, ``assessMetricStatus``,
``assessMetricFailureInconclusiveOrError``, ``assessRunStatus``) and
``utils/evaluate/evaluate.go`` (``EvaluateResult``), as ``docs/features/analysis.md``
describes them.
"""

from __future__ import annotations

from typing import Any

from tests.unit.argo_analysis_fakes import RunStore, ScriptedMeasurer
from tests.unit.delivery_fakes import FakeClock

from meshpilot.delivery.argo.runner import AnalysisRunner

NS, NAME = "default", "run"


def run_body(args: list[dict[str, Any]] | None = None, **metric: Any) -> dict[str, Any]:
    m = {"name": "success-rate", "successCondition": "result[0] >= 0.95",
         "provider": {"prometheus": {"address": "http://127.0.0.1:9", "query": "up"}},
         **metric}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {"metrics": [m], **({"args": args} if args else {})}}


class Run:
    def __init__(self, measurer: ScriptedMeasurer, **metric: Any) -> None:
        self.store = RunStore()
        self.clock = FakeClock()
        self.measurer = measurer
        self.store.put(run_body(**metric))
        self.runner = AnalysisRunner(self.clock, self.store, self.store, measurer)

    def tick(self, dt: float = 0.0) -> dict[str, Any]:
        self.clock.advance(dt)
        status = self.runner.tick(NS, NAME)
        assert status is not None
        return status

    def result(self) -> dict[str, Any]:
        (result,) = self.store.runs[(NS, NAME)]["status"]["metricResults"]
        return result  # type: ignore[no-any-return]


def test_count_and_interval_measure_on_schedule_then_succeed() -> None:
    # generateMetricTasks: first at once, then interval after the last finishedAt,
    # until count; assessMetricStatus: Successful when count is reached
    r = Run(ScriptedMeasurer([0.97], [0.96], [0.99]), interval="10s", count=3)
    st = r.tick()
    assert st["phase"] == "Running" and r.result()["count"] == 1
    assert r.tick(5)["phase"] == "Running" and r.result()["count"] == 1  # not due yet
    r.tick(5)
    assert r.result()["count"] == 2
    st = r.tick(10)
    assert st["phase"] == "Successful" and st["message"] == ""
    result = r.result()
    assert result["phase"] == "Successful" and result["successful"] == 3
    assert [m["value"] for m in result["measurements"]] == ["[0.97]", "[0.96]", "[0.99]"]
    assert all(m["phase"] == "Successful" and m["startedAt"] and m["finishedAt"]
               for m in result["measurements"])
    assert st["runSummary"] == {"count": 1, "successful": 1, "failed": 0,
                                "inconclusive": 0, "error": 0}
    assert st["completedAt"]
    r.tick(60)  # a completed run takes no more measurements
    assert len(r.measurer.calls) == 3


def test_failures_within_failure_limit_keep_running_and_one_more_fails_the_run() -> None:
    # assessMetricFailureInconclusiveOrError: Failed when failed > failureLimit
    r = Run(ScriptedMeasurer([0.5], [0.97], [0.4]), interval="1s", count=5,
            failureLimit=1)
    assert r.tick()["phase"] == "Running"
    assert r.tick(1)["phase"] == "Running"
    st = r.tick(1)
    assert st["phase"] == "Failed"
    assert st["message"] == ('Metric "success-rate" assessed Failed due to failed (2) > '
                             "failureLimit (1)")
    assert r.result()["failed"] == 2 and r.result()["count"] == 3


def test_a_negative_failure_limit_never_fails_and_count_ends_it() -> None:
    # failureLimit -1: the failure check does not apply (assessMetricFailure...)
    r = Run(ScriptedMeasurer([0.1], [0.1]), interval="1s", count=2, failureLimit=-1)
    r.tick()
    assert r.tick(1)["phase"] == "Successful"


def test_neither_condition_met_is_inconclusive_beyond_the_limit() -> None:
    # EvaluateResult: both conditions given, neither true -> Inconclusive;
    # inconclusive (2) > inconclusiveLimit (1) ends the run Inconclusive
    r = Run(ScriptedMeasurer([0.9], [0.9]), interval="1s", count=4,
            successCondition="result[0] >= 0.95", failureCondition="result[0] < 0.5",
            inconclusiveLimit=1)
    assert r.tick()["phase"] == "Running"
    st = r.tick(1)
    assert st["phase"] == "Inconclusive"
    assert "inconclusive (2) > inconclusiveLimit (1)" in st["message"]


def test_consecutive_errors_beyond_the_limit_are_an_error_and_retry_after_10s() -> None:
    # runMeasurements: an Error does not count and adds a consecutive error; any other
    # outcome resets them; DefaultErrorRetryInterval (10s) after an Error; the default
    # consecutiveErrorLimit is 4, so the fifth consecutive error ends the run
    r = Run(ScriptedMeasurer("down", [0.99], "down", "down", "down", "down", "down"),
            interval="1s", count=10)
    r.tick()
    assert r.result()["consecutiveError"] == 1 and r.result()["count"] == 0
    r.tick(1)
    assert len(r.measurer.calls) == 1  # an Error is retried after 10s, not the interval
    r.tick(9)
    assert r.result()["consecutiveError"] == 0 and r.result()["count"] == 1
    assert r.tick(1)["phase"] == "Running"  # the interval after a success
    for _ in range(3):
        assert r.tick(10)["phase"] == "Running"
    assert r.result()["consecutiveError"] == 4 and r.result()["error"] == 5
    st = r.tick(10)
    assert st["phase"] == "Error"
    assert "consecutiveErrors (5) > consecutiveErrorLimit (4)" in st["message"]
    assert r.result()["measurements"][-1]["message"] == "down"


def test_a_lower_consecutive_error_limit() -> None:
    r = Run(ScriptedMeasurer("down", "down"), consecutiveErrorLimit=1, interval="1s")
    r.tick()
    assert r.tick(10)["phase"] == "Error"


def test_initial_delay_waits_after_the_run_starts() -> None:
    # generateMetricTasks: no first measurement before startedAt + initialDelay
    r = Run(ScriptedMeasurer([0.99]), initialDelay="30s")
    st = r.tick()
    assert st["phase"] == "Running" and st["metricResults"] == [] and st["startedAt"]
    r.tick(29)
    assert r.measurer.calls == []
    assert r.tick(1)["phase"] == "Successful"  # no count, no interval: one measurement


def test_an_interval_without_count_runs_until_terminated() -> None:
    # EffectiveCount is nil with an interval: measured until spec.terminate, then
    # Successful with "Run Terminated" (assessRunStatus)
    r = Run(ScriptedMeasurer(*([[0.99]] * 5)), interval="1s")
    for _ in range(3):
        assert r.tick(1)["phase"] == "Running"
    r.store.runs[(NS, NAME)]["spec"]["terminate"] = True
    st = r.tick(1)
    assert st["phase"] == "Successful" and st["message"] == "Run Terminated"
    assert len(r.measurer.calls) == 3


def test_a_condition_error_is_an_error_measurement() -> None:
    # EvaluateResult: a condition that cannot be evaluated on the result is an Error,
    # and an empty result says there was no data
    r = Run(ScriptedMeasurer([]), consecutiveErrorLimit=0)
    st = r.tick()
    assert st["phase"] == "Error"
    assert "no data returned" in r.result()["measurements"][0]["message"]


def test_args_are_substituted_and_a_secret_never_shows() -> None:
    # analysis.md: {{args.NAME}} with value and valueFrom.secretKeyRef; Argo resolves
    # secrets at measurement time and redacts them from messages
    store = RunStore()
    store.secrets[(NS, "prom")] = {"token": b"s3cr3t"}
    store.put(run_body(args=[{"name": "service", "value": "reviews"},
                             {"name": "token", "valueFrom": {"secretKeyRef": {
                                 "name": "prom", "key": "token"}}}],
                       provider={"web": {"url": "http://127.0.0.1:9/{{args.service}}",
                                         "headers": [{"key": "Authorization",
                                                      "value": "Bearer {{args.token}}"}]}}))
    measurer = ScriptedMeasurer("401 for token s3cr3t")
    runner = AnalysisRunner(FakeClock(), store, store, measurer)
    st = runner.tick(NS, NAME)
    assert st is not None
    (call,) = measurer.calls
    assert call.provider.web is not None
    assert call.provider.web.url == "http://127.0.0.1:9/reviews"
    assert call.provider.web.headers and call.provider.web.headers[0].value == "Bearer s3cr3t"
    text = repr(store.runs[(NS, NAME)])
    assert "s3cr3t" not in text and "*****" in text


def test_an_argument_without_a_value_is_an_error_run() -> None:
    store = RunStore()
    store.put(run_body(args=[{"name": "service"}]))
    st = AnalysisRunner(FakeClock(), store, store, ScriptedMeasurer()).tick(NS, NAME)
    assert st is not None and st["phase"] == "Error"
    assert "args.service" in st["message"]


def test_a_dry_run_metric_is_measured_but_does_not_decide_the_run() -> None:
    # assessRunStatus with dryRun: a failing dry-run metric leaves the run Successful,
    # counted in dryRunSummary; measurementRetention keeps that many measurements
    store = RunStore()
    body = run_body(interval="1s", count=3)
    body["spec"]["metrics"].append({**body["spec"]["metrics"][0], "name": "canary-latency"})
    body["spec"]["dryRun"] = [{"metricName": "latency"}]
    body["spec"]["measurementRetention"] = [{"metricName": "success", "limit": 2}]
    store.put(body)
    clock = FakeClock()
    runner = AnalysisRunner(clock, store, store,
                            ScriptedMeasurer([0.99], [0.1], [0.99], [0.99]))
    st = runner.tick(NS, NAME)
    # the dry-run metric failed (and is done); that ends nothing
    assert st is not None and st["phase"] == "Running"
    for _ in range(2):
        clock.advance(1)
        st = runner.tick(NS, NAME)
    assert st is not None and st["phase"] == "Successful", st
    judged, dry = st["metricResults"]
    assert judged["count"] == 3 and len(judged["measurements"]) == 2
    assert dry["dryRun"] is True and dry["phase"] == "Failed"
    assert st["runSummary"]["successful"] == 1 and st["runSummary"]["count"] == 1
    assert st["dryRunSummary"] == {"count": 1, "successful": 0, "failed": 1,
                                   "inconclusive": 0, "error": 0}

"""Metric checks: Prometheus templates, provider answers, the primary comparison."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from tests.unit.delivery_fakes import FakeMetrics
from tests.unit.rollout_harness import NAME, Harness, canary

from meshpilot.api.flagger import Canary, CanaryMetric, MetricTemplateProvider
from meshpilot.delivery.checks import CheckContext, evaluate, render_query
from meshpilot.delivery.judge import proportion_below
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers.prometheus import PrometheusProvider, parse_prometheus_result
from meshpilot.delivery.state import CheckRecord, RolloutState

TEMPLATE = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "MetricTemplate",
    "metadata": {"name": "error-rate", "namespace": "default"},
    "spec": {
        "provider": {"type": "prometheus", "address": "http://prom:9090"},
        "query": 'sum(rate(errors{namespace="{{ namespace }}",workload="{{ target }}"}'
                 '[{{ interval }}])) / {{ variables.scale }}',
    },
}


def test_render_query_fills_flagger_variables() -> None:
    text = render_query(TEMPLATE["spec"]["query"], {
        "namespace": "test", "target": "podinfo", "interval": "1m",
        "variables": {"scale": "100"}})
    assert text == 'sum(rate(errors{namespace="test",workload="podinfo"}[1m])) / 100'
    assert render_query("{{name}}/{{ .namespace }}", {"name": "a", "namespace": "b"}) == "a/b"
    with pytest.raises(MetricQueryError, match=r"variables\.missing"):
        render_query("{{ variables.missing }}", {"variables": {}})


def vector(*values: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1.0, v]} for v in values]}}


def test_prometheus_results() -> None:
    assert parse_prometheus_result(vector("0.25")) == 0.25
    assert parse_prometheus_result(vector()) is None
    assert parse_prometheus_result(vector("NaN")) is None
    assert parse_prometheus_result(
        {"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}) == 3.0
    with pytest.raises(MetricQueryError, match="2 series"):
        parse_prometheus_result(vector("1", "2"))


def test_prometheus_provider_queries_the_http_api() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=vector("1.5"))

    provider = PrometheusProvider(httpx.Client(transport=httpx.MockTransport(handler)))
    value = provider.query(MetricTemplateProvider(type="prometheus", address="http://prom:9090/"),
                           "up")
    assert value == 1.5
    assert seen[0].url.path == "/api/v1/query" and seen[0].url.params["query"] == "up"


def test_prometheus_provider_errors_are_query_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"status": "error", "error": "parse error"})

    provider = PrometheusProvider(httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(MetricQueryError, match="400"):
        provider.query(MetricTemplateProvider(type="prometheus", address="http://p"), "(")


class FakeQuery:
    def __init__(self, values: dict[str, float | None]) -> None:
        self.values = values
        self.queries: list[str] = []
        self.credentials: list[Mapping[str, bytes] | None] = []

    def query(self, provider: MetricTemplateProvider, query: str,
              credentials: Mapping[str, bytes] | None = None) -> float | None:
        self.queries.append(query)
        self.credentials.append(credentials)
        for needle, value in self.values.items():
            if needle in query:
                return value
        return None


def template_canary(**metric: Any) -> Canary:
    body = canary({"metrics": [{"name": "errors", "templateRef": {"name": "error-rate"},
                                "thresholdRange": {"max": 1},
                                "templateVariables": {"scale": "1"}, **metric}]})
    return Canary.model_validate(body)


def ctx(c: Canary, query: FakeQuery, templates: bool = True) -> CheckContext:
    from meshpilot.api.flagger import MetricTemplate

    lookup = (lambda ns, name: MetricTemplate.model_validate(TEMPLATE)) if templates else (
        lambda ns, name: None)
    return CheckContext(c, FakeMetrics(), query, lookup)


def test_template_metric_pass_fail_nodata() -> None:
    c = template_canary()
    assert evaluate(c.spec.analysis.metrics[0], ctx(c, FakeQuery({"podinfo": 0.5}))).verdict \
        == "pass"
    failed = evaluate(c.spec.analysis.metrics[0], ctx(c, FakeQuery({"podinfo": 2.0})))
    assert failed.verdict == "fail" and failed.message == "errors 2 > 1"
    assert evaluate(c.spec.analysis.metrics[0], ctx(c, FakeQuery({}))).verdict == "nodata"
    missing = evaluate(c.spec.analysis.metrics[0], ctx(c, FakeQuery({}), templates=False))
    assert missing.verdict == "fail" and "MetricTemplate default/error-rate not found" in \
        missing.message


def test_template_metric_compared_with_primary() -> None:
    c = template_canary(templateVariables={"scale": "1", "compare": "primary",
                                           "maxRatio": "1.5"})
    query = FakeQuery({'workload="podinfo-primary"': 0.2, 'workload="podinfo"': 0.5})
    record = evaluate(c.spec.analysis.metrics[0], ctx(c, query))
    assert record.verdict == "fail" and record.primary_value == 0.2
    assert "1.5 x primary" in record.message
    assert any("podinfo-primary" in q for q in query.queries)


def test_template_metric_min_requests_uses_telemetry_request_count() -> None:
    c = template_canary(templateVariables={"scale": "1", "minRequests": "1000"})
    record = evaluate(c.spec.analysis.metrics[0], ctx(c, FakeQuery({"podinfo": 0.1})))
    assert record.verdict == "nodata" and "need 1000" in record.message


def test_unreachable_provider_is_no_data_not_a_pass() -> None:
    class Down:
        def query(self, provider: Any, query: str, credentials: Any = None) -> float | None:
            raise MetricQueryError("prometheus at http://prom:9090 did not answer")

    c = template_canary()
    context = CheckContext(c, FakeMetrics(), Down(), ctx(c, FakeQuery({})).templates)
    assert evaluate(c.spec.analysis.metrics[0], context).verdict == "nodata"


def test_template_metric_through_the_controller() -> None:
    h = Harness({"metrics": [{"name": "errors", "templateRef": {"name": "error-rate"},
                              "thresholdRange": {"max": 1}, "interval": "30s",
                              "templateVariables": {"scale": "1"}}], "threshold": 1})
    h.cluster.put(TEMPLATE)
    query = FakeQuery({"podinfo": 0.5})
    h.controller.sensors.query = query
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    # 10 s into the analysis, the 30s window is clamped to this revision's traffic
    assert query.queries[-1] == (
        'sum(rate(errors{namespace="default",workload="podinfo"}[10s])) / 1')
    query.values = {"podinfo": 5.0}
    h.run_until(lambda: h.phase == "Failed")
    assert "errors 5 > 1" in h.status["history"][-1]["reason"]


def test_legacy_threshold_on_builtins() -> None:
    c = Canary.model_validate(canary({"metrics": [
        {"name": "request-success-rate", "threshold": 99},
        {"name": "request-duration", "threshold": 40}]}))
    records = [evaluate(m, CheckContext(c, FakeMetrics())) for m in c.spec.analysis.metrics]
    assert [r.verdict for r in records] == ["pass", "fail"]  # 50ms > 40ms


def test_window_never_reaches_back_before_this_revisions_traffic() -> None:
    c = Canary.model_validate(canary({"metrics": [{"name": "request-success-rate",
                                                   "interval": "1m"}]}))
    metrics = FakeMetrics()
    metric = c.spec.analysis.metrics[0]
    evaluate(metric, CheckContext(c, metrics, now=1000.0, evidence_since=992.4))
    evaluate(metric, CheckContext(c, metrics, now=1000.0, evidence_since=900.0))
    evaluate(metric, CheckContext(c, metrics, now=1000.0, evidence_since=999.9))
    assert [call[2] for call in metrics.calls] == [7.0, 60.0, 1.0]


def test_metric_window_defaults_to_one_minute() -> None:
    c = Canary.model_validate(canary({"metrics": [{"name": "request-success-rate"}]}))
    metrics = FakeMetrics()
    evaluate(CanaryMetric(name="request-success-rate"), CheckContext(c, metrics))
    assert metrics.calls[0] == ("success_rate", NAME, 60.0)


# --- the statistics -------------------------------------------------------------------


def test_two_proportion_test() -> None:
    worse = proportion_below(970, 1000, 4995, 5000)
    assert worse.significant and worse.z < -10
    same = proportion_below(998, 1000, 4995, 5000)
    assert not same.significant
    # 2 failures in 50 against none in 500 is already significant at 0.98 ...
    assert proportion_below(48, 50, 500, 500).significant
    # ... one failure in 50 against none in 50 is not
    assert not proportion_below(49, 50, 50, 50).significant
    tolerated = proportion_below(990, 1000, 4995, 5000, allowed_drop=0.02)
    assert not tolerated.significant
    assert math.isclose(proportion_below(10, 10, 10, 10).p_value, 1.0)


def test_state_round_trips_through_json() -> None:
    import json

    st = RolloutState(phase="Progressing", canary_weight=30, step_index=2,
                      checks=[CheckRecord("x", "nodata", samples=3, message="few")])
    st.add_event(1.0, "hello")
    st.add_history("promoted", "ok", 2.0)
    st.add_check_point(1.5)
    again = RolloutState.from_status(json.loads(json.dumps(st.to_status())))
    assert again == st
    assert st.to_status()["checkHistory"] == [{
        "time": "1970-01-01T00:00:01Z", "weight": 30,
        "checks": [{"name": "x", "value": None, "verdict": "nodata"}]}]
    assert st.to_status()["canaryWeight"] == 30
    assert st.to_status()["checks"][0]["primaryValue"] is None


def test_check_history_keeps_the_last_runs_and_restarts_with_a_rollout() -> None:
    from meshpilot.delivery.state import MAX_CHECK_POINTS

    st = RolloutState(checks=[CheckRecord("x", "pass", value=100.0)])
    for second in range(MAX_CHECK_POINTS + 5):
        st.canary_weight = second
        st.add_check_point(float(second))
    assert len(st.check_history) == MAX_CHECK_POINTS
    assert st.check_history[0].weight == 5  # the oldest went first
    st.reset_for_rollout("rev2", 500.0)
    assert st.check_history == []


def test_a_template_secret_ref_passes_the_secret_to_the_provider() -> None:
    """Flagger's secretRef: the MetricTemplate's provider gets the decoded keys of the
    Secret of that name in the template's namespace; a Secret that is not there fails
    the check with both names rather than querying without credentials."""
    from meshpilot.api.flagger import MetricTemplate

    body = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "provider": {
        **TEMPLATE["spec"]["provider"], "secretRef": {"name": "prom-auth"}}}}
    c = template_canary()
    secrets = {("default", "prom-auth"): {"username": b"flagger", "password": b"s3cret"}}
    query = FakeQuery({"podinfo": 0.5})
    context = CheckContext(c, FakeMetrics(), query,
                           lambda ns, name: MetricTemplate.model_validate(body),
                           secrets=lambda ns, name: secrets.get((ns, name)))
    assert evaluate(c.spec.analysis.metrics[0], context).verdict == "pass"
    assert query.credentials == [{"username": b"flagger", "password": b"s3cret"}]
    secrets.clear()
    record = evaluate(c.spec.analysis.metrics[0], context)
    assert record.verdict == "fail"
    assert "Secret default/prom-auth" in record.message and len(query.queries) == 1

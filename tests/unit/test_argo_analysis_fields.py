"""Argo analysis kinds are validated strictly: what meshpilot runs is accepted, every
other provider or field of Argo's schema is refused by name, and a condition or jsonPath
outside the supported forms is refused when applied, not when measured.

The base template is the success-rate AnalysisTemplate of Argo's
``docs/features/analysis.md`` (a Prometheus query with ``{{args.service-name}}`` and
``successCondition: result[0] >= 0.95``, interval 5m, failureLimit 3).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from meshpilot.api.argo_analysis import AnalysisTemplate
from meshpilot.validation import Plan, plan_apply

BASE: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
    "metadata": {"name": "success-rate", "namespace": "default"},
    "spec": {
        "args": [{"name": "service-name"}],
        "metrics": [{
            "name": "success-rate", "interval": "5m",
            "successCondition": "result[0] >= 0.95", "failureLimit": 3,
            "provider": {"prometheus": {
                "address": "http://prometheus.example.com:9090",
                "query": 'sum(irate(istio_requests_total{reporter="source",'
                         'destination_service=~"{{args.service-name}}",'
                         'response_code!~"5.*"}[5m])) / sum(irate(istio_requests_total'
                         '{reporter="source",destination_service=~"{{args.service-name}}"}'
                         '[5m]))'}}}]},
}


def plan(body: dict[str, Any]) -> Plan:
    return plan_apply([("at.yaml", yaml.safe_dump(body, sort_keys=False))], [])


def codes_of(p: Plan) -> list[tuple[str, str]]:
    return [(d.code, d.path) for d in p.diagnostics]


def metric(**patch: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["spec"]["metrics"][0].update(patch)
    return body


def test_argos_success_rate_template_is_accepted_and_typed() -> None:
    p = plan(BASE)
    assert p.ok, [d.format() for d in p.diagnostics]
    m = AnalysisTemplate.model_validate(BASE).spec.metrics[0]
    assert m.failure_limit == 3 and m.interval == "5m" and m.effective_count is None


def test_a_web_metric_and_a_cluster_template_are_accepted() -> None:
    web = {"apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterAnalysisTemplate",
           "metadata": {"name": "web-check"},
           "spec": {"metrics": [{"name": "webmetric", "successCondition": "result == true",
                                 "provider": {"web": {
                                     "url": "http://127.0.0.1:1/api", "jsonPath": "{$.ok}",
                                     "headers": [{"key": "X-Token", "value": "t"}]}}}]}}
    p = plan(web)
    assert p.ok, [d.format() for d in p.diagnostics]


@pytest.mark.parametrize("provider", [
    {"job": {"spec": {"template": {}}}}, {"datadog": {"query": "x"}},
    {"kayenta": {}}, {"newRelic": {"query": "x"}}])
def test_providers_meshpilot_does_not_run_are_refused_by_name(provider: dict[str, Any]) -> None:
    # analysis.md lists job, datadog, kayenta, newRelic, ...: not run here, so refused
    p = plan(metric(provider=provider))
    assert not p.ok
    (name,) = provider
    assert ("MP0075", f"spec.metrics[0].provider.{name}") in codes_of(p), codes_of(p)


@pytest.mark.parametrize(("patch", "path"), [
    ({"consecutiveSuccessLimit": 3}, "spec.metrics[0].consecutiveSuccessLimit"),
    ({"provider": {"prometheus": {"address": "http://p:9090", "query": "up",
                                  "rangeQuery": {"start": "now()"}}}},
     "spec.metrics[0].provider.prometheus.rangeQuery"),
])
def test_fields_not_implemented_are_refused_by_name(patch: dict[str, Any], path: str) -> None:
    p = plan(metric(**patch))
    assert ("MP0076", path) in codes_of(p), codes_of(p)


def test_a_field_ref_argument_is_refused() -> None:
    body = copy.deepcopy(BASE)
    body["spec"]["args"] = [{"name": "ns", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.namespace"}}}]
    assert ("MP0076", "spec.args[0].valueFrom.fieldRef") in codes_of(plan(body))


def test_dry_run_and_retention_rules_must_match_a_metric() -> None:
    # GetDryRunMetrics / GetMeasurementRetentionMetrics: a rule matching no metric is an
    # error; the pattern is Go's (RE2) regexp, found anywhere in the name
    body = copy.deepcopy(BASE)
    body["spec"]["dryRun"] = [{"metricName": "success"}]
    body["spec"]["measurementRetention"] = [{"metricName": ".*", "limit": 20}]
    assert plan(body).ok
    body["spec"]["dryRun"] = [{"metricName": "^latency$"}]
    p = plan(body)
    assert not p.ok and "matches no metric" in " ".join(d.format() for d in p.diagnostics)


@pytest.mark.parametrize("condition", [
    "result[0] > 0.9 ? true : false", "result matches '^a'", "foo(result)",
    "result[0] >", "[x for x in result]"])
def test_conditions_outside_the_supported_forms_are_refused_at_apply(condition: str) -> None:
    p = plan(metric(successCondition=condition))
    assert ("MP0077", "spec.metrics[0].successCondition") in codes_of(p), codes_of(p)
    assert not p.ok


def test_a_json_path_filter_is_refused() -> None:
    body = metric(provider={"web": {"url": "http://127.0.0.1:1/",
                                    "jsonPath": "{$.items[?(@.ok)]}"}})
    assert ("MP0078", "spec.metrics[0].provider.web.jsonPath") in codes_of(plan(body))


def test_a_metric_with_two_providers_or_none_is_invalid() -> None:
    two = metric(provider={"prometheus": {"address": "http://p", "query": "up"},
                           "web": {"url": "http://w"}})
    assert not plan(two).ok
    assert not plan(metric(provider={})).ok


def test_a_cluster_template_takes_no_namespace() -> None:
    body = copy.deepcopy(BASE)
    body["kind"] = "ClusterAnalysisTemplate"
    p = plan(body)
    assert not p.ok and "cluster-scoped" in " ".join(d.format() for d in p.diagnostics)


ROLLOUT_WITH_ANALYSIS = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: demo}]}
  strategy:
    blueGreen:
      activeService: web-active
      prePromotionAnalysis:
        templates: [{templateName: success-rate}, {templateName: smoke, clusterScope: true}]
"""


def test_a_missing_analysis_template_is_a_warning_naming_it() -> None:
    # Argo finds templates when it makes a run (getAnalysisTemplatesFromRefs): a missing
    # one is told at apply, where the Rollout still goes in
    p = plan_apply([("ro.yaml", ROLLOUT_WITH_ANALYSIS)], [])
    assert p.ok
    warned = [(d.code, d.path, d.message) for d in p.diagnostics if d.code == "MP2050"]
    assert [w[1] for w in warned] == [
        "spec.strategy.blueGreen.prePromotionAnalysis.templates[0].templateName",
        "spec.strategy.blueGreen.prePromotionAnalysis.templates[1].templateName"]
    assert "AnalysisTemplate default/success-rate" in warned[0][2]
    assert "ClusterAnalysisTemplate smoke" in warned[1][2]
    both = plan_apply([("all.yaml", ROLLOUT_WITH_ANALYSIS + "---\n" + yaml.safe_dump(BASE)
                        + "---\n" + yaml.safe_dump({
                            "apiVersion": "argoproj.io/v1alpha1",
                            "kind": "ClusterAnalysisTemplate", "metadata": {"name": "smoke"},
                            "spec": BASE["spec"]}))], [])
    assert [d for d in both.diagnostics if d.code == "MP2050"] == []

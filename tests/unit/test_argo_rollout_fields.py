"""An Argo Rollout is validated strictly: what meshpilot runs is accepted, every other
field of Argo's schema is refused by name (MP0057), a misspelt one is unknown (MP0010).

The base object is Argo's ``examples/istio/istio-subset-split.yaml`` Rollout (subset-level
Istio splitting, a setWeight then a pause {} step); each case adds one field Argo's
``pkg/apis/rollouts/v1alpha1/types.go`` declares and meshpilot does not implement.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from tests.unit.test_validation_unapplied_fields import merged

from meshpilot.api.argo import Rollout
from meshpilot.validation import Plan, plan_apply

REFUSE = "MP0057"
BASE: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
    "metadata": {"name": "istio-subset-split", "namespace": "default"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "istio-subset-split"}},
        "template": {"metadata": {"labels": {"app": "istio-subset-split"}},
                     "spec": {"containers": [{"name": "app", "image": "nginx:1.19"}]}},
        "strategy": {"canary": {
            "trafficRouting": {"istio": {
                "virtualService": {"name": "istio-subset-split-vsvc", "routes": ["primary"]},
                "destinationRule": {"name": "istio-subset-split-destrule",
                                    "canarySubsetName": "canary",
                                    "stableSubsetName": "stable"}}},
            "steps": [{"setWeight": 10}, {"pause": {}}, {"pause": {"duration": "10s"}},
                      {"pause": {"duration": 5}}]}},
    },
}


def plan(body: dict[str, Any]) -> Plan:
    return plan_apply([("ro.yaml", yaml.safe_dump(body, sort_keys=False))], [])


def with_spec(patch: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["spec"] = merged(body["spec"], patch)
    return body


def canary(patch: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": {"canary": patch}}


def test_argos_subset_split_example_is_accepted_and_typed() -> None:
    p = plan(BASE)
    assert p.ok, [d.format() for d in p.diagnostics]
    rollout = Rollout.model_validate(BASE)
    steps = rollout.canary.steps
    assert steps[0].set_weight == 10
    assert steps[1].pause is not None and steps[1].pause.seconds is None
    assert steps[2].pause is not None and steps[2].pause.seconds == 10
    assert steps[3].pause is not None and steps[3].pause.seconds == 5  # Argo: int = seconds
    assert rollout.spec.revision_history_limit == 10  # Argo's default


def test_set_canary_scale_is_accepted_in_its_three_forms() -> None:
    # types.go SetCanaryScale: replicas, weight or matchTrafficWeight
    body = copy.deepcopy(BASE)
    body["spec"]["strategy"]["canary"]["steps"] = [
        {"setCanaryScale": {"replicas": 1}}, {"setCanaryScale": {"weight": 50}},
        {"setCanaryScale": {"matchTrafficWeight": True}}]
    p = plan(body)
    assert p.ok, [d.format() for d in p.diagnostics]
    scales = [s.set_canary_scale for s in Rollout.model_validate(body).canary.steps]
    assert [(s.replicas, s.weight, s.match_traffic_weight) for s in scales if s] == [
        (1, None, None), (None, 50, None), (None, None, True)]


CASES: list[tuple[dict[str, Any], str]] = [
    ({"progressDeadlineSeconds": 600}, "spec.progressDeadlineSeconds"),
    ({"minReadySeconds": 5}, "spec.minReadySeconds"),
    *((canary({field: value}), f"spec.strategy.canary.{field}") for field, value in (
        ("scaleDownDelaySeconds", 30), ("dynamicStableScale", True),
        ("canaryMetadata", {"labels": {"role": "canary"}}))),
    *((canary({"steps": [{"setWeight": 10}, {step: value}]}),
       f"spec.strategy.canary.steps[1].{step}") for step, value in (
        ("experiment", {"templates": []}), ("plugin", {"name": "p"}))),
    (canary({"analysis": {"templates": [{"templateName": "success-rate"}],
                          "analysisRunMetadata": {"labels": {"a": "b"}}}}),
     "spec.strategy.canary.analysis.analysisRunMetadata"),
    (canary({"steps": [{"analysis": {"templates": [{"templateName": "success-rate"}],
                                     "args": [{"name": "ns", "valueFrom": {
                                         "fieldRef": {"fieldPath": "metadata.name"}}}]}}]}),
     "spec.strategy.canary.steps[0].analysis.args[0].valueFrom.fieldRef"),
    (canary({"trafficRouting": {"nginx": {"stableIngress": "web"}}}),
     "spec.strategy.canary.trafficRouting.nginx"),
    (canary({"trafficRouting": {"istio": {"virtualService": {"tlsRoutes": [{"port": 443}]}}}}),
     "spec.strategy.canary.trafficRouting.istio.virtualService.tlsRoutes"),
    (canary({"trafficRouting": {"istio": {"virtualService": {"name": "vs.other"}}}}),
     "spec.strategy.canary.trafficRouting.istio.virtualService.name"),
]


@pytest.mark.parametrize(("patch", "path"), CASES, ids=[c[1] for c in CASES])
def test_a_field_meshpilot_does_not_run_is_refused_by_name(patch: dict[str, Any],
                                                           path: str) -> None:
    p = plan(with_spec(patch))
    assert not p.ok
    refused = [(d.code, d.path) for d in p.diagnostics]
    assert (REFUSE, path) in refused, [d.format() for d in p.diagnostics]
    (d,) = [d for d in p.diagnostics if d.path == path]
    assert "refused" in d.message and "ro.yaml" in d.format()




@pytest.mark.parametrize(("field", "value"), [("maxSurge", "25%"), ("maxUnavailable", 0)])
def test_surge_fields_are_accepted_with_a_warning_as_argo_ignores_them(field: str,
                                                                       value: Any) -> None:
    """Argo Rollouts does not act on maxSurge / maxUnavailable under traffic routing (its
    maintainers' answer in argo-rollouts discussion 2237); a user's file carrying them
    applies, and the warning says they change nothing."""
    p = plan(with_spec(canary({field: value})))
    assert p.ok, [d.format() for d in p.diagnostics]
    (d,) = [d for d in p.diagnostics if d.path == f"spec.strategy.canary.{field}"]
    assert d.code == "MP2016" and "not acted on" in d.message


def test_a_canary_without_istio_routing_is_refused() -> None:
    body = copy.deepcopy(BASE)
    del body["spec"]["strategy"]["canary"]["trafficRouting"]
    p = plan(body)
    assert [(d.code, d.path) for d in p.diagnostics] == [
        (REFUSE, "spec.strategy.canary.trafficRouting")]


@pytest.mark.parametrize(("patch", "code", "path"), [
    (canary({"steps": [{"setWeigth": 10}]}), "MP0010", "spec.strategy.canary.steps[0].setWeigth"),
    (canary({"steps": [{"setWeight": 120}]}), "MP0013", "spec.strategy.canary.steps[0].setWeight"),
    (canary({"steps": [{"setWeight": 10, "pause": {}}]}), "MP0017",
     "spec.strategy.canary.steps[0]"),
    (canary({"steps": [{"setCanaryScale": {"replicas": 1, "weight": 20}}]}), "MP0017",
     "spec.strategy.canary.steps[0].setCanaryScale"),
    (canary({"steps": [{"setCanaryScale": {"weight": 101}}]}), "MP0013",
     "spec.strategy.canary.steps[0].setCanaryScale.weight"),
    (canary({"steps": [{"pause": {"duration": "ten"}}]}), "MP0014",
     "spec.strategy.canary.steps[0].pause.duration"),
])
def test_bad_steps_are_errors_at_their_field(patch: dict[str, Any], code: str,
                                             path: str) -> None:
    p = plan(with_spec(patch))
    assert (code, path) in [(d.code, d.path) for d in p.diagnostics], [
        d.format() for d in p.diagnostics]


def test_host_level_splitting_needs_both_services() -> None:
    body = copy.deepcopy(BASE)
    del body["spec"]["strategy"]["canary"]["trafficRouting"]["istio"]["destinationRule"]
    p = plan(body)
    assert not p.ok
    assert any("canaryService and stableService" in d.message for d in p.diagnostics)
    body["spec"]["strategy"]["canary"].update(canaryService="web-canary",
                                              stableService="web-stable")
    assert plan(body).ok


def test_argos_whole_example_draws_no_subset_warning() -> None:
    # examples/istio/istio-subset-split.yaml: the DestinationRule's subsets select the
    # Rollout's pods, which exist once it runs; no MP2002 "selects no workload"
    rule = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "DestinationRule",
            "metadata": {"name": "istio-subset-split-destrule", "namespace": "default"},
            "spec": {"host": "istio-subset-split", "subsets": [
                {"name": "stable", "labels": {"app": "istio-subset-split"}},
                {"name": "canary", "labels": {"app": "istio-subset-split"}}]}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "istio-subset-split", "namespace": "default"},
               "spec": {"selector": {"app": "istio-subset-split"},
                        "ports": [{"name": "http", "port": 80}]}}
    p = plan_apply([("ex.yaml", yaml.safe_dump_all([service, rule, BASE]))], [])
    assert p.ok and [d.code for d in p.diagnostics] == [], [
        d.format() for d in p.diagnostics]


def blue_green(**fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["spec"]["strategy"] = {"blueGreen": {"activeService": "web-active",
                                              "previewService": "web-preview", **fields}}
    return body


def test_argos_blue_green_strategy_is_accepted() -> None:
    # bluegreen.md's fields meshpilot runs
    p = plan(blue_green(autoPromotionEnabled=False, autoPromotionSeconds=30,
                        scaleDownDelaySeconds=5,
                        prePromotionAnalysis={"templates": [{"templateName": "smoke"}]},
                        postPromotionAnalysis={"templates": [{"templateName": "smoke"}]}))
    assert p.ok, [d.format() for d in p.diagnostics]


@pytest.mark.parametrize(("field", "value"), [
    ("previewReplicaCount", 1), ("abortScaleDownDelaySeconds", 10),
    ("activeMetadata", {"labels": {"role": "active"}}), ("maxUnavailable", 1)])
def test_blue_green_fields_not_run_are_refused(field: str, value: Any) -> None:
    p = plan(blue_green(**{field: value}))
    assert (REFUSE, f"spec.strategy.blueGreen.{field}") in [
        (d.code, d.path) for d in p.diagnostics]


def test_both_strategies_or_one_service_for_both_roles_are_invalid() -> None:
    both = blue_green()
    both["spec"]["strategy"]["canary"] = BASE["spec"]["strategy"]["canary"]
    assert not plan(both).ok
    assert not plan(blue_green(previewService="web-active")).ok


def test_a_step_route_must_be_a_managed_route() -> None:
    # Argo's validation: setHeaderRoute/setMirrorRoute name one of managedRoutes
    body = copy.deepcopy(BASE)
    body["spec"]["strategy"]["canary"]["steps"] = [{"setHeaderRoute": {"name": "header-route"}}]
    p = plan(body)
    assert not p.ok and "managedRoutes" in " ".join(d.format() for d in p.diagnostics)
    body["spec"]["strategy"]["canary"]["trafficRouting"]["managedRoutes"] = [
        {"name": "header-route"}]
    assert plan(body).ok

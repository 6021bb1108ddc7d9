"""Canary, MetricTemplate and Service fields meshpilot does not act on are refused
(MP0048: they would change how a release is routed or judged) or warned about
(MP2016: they have nothing to act on here), at apply and in analyze / describe.

As in test_validation_unapplied_fields: each case is a base object (which draws neither
code) plus one field, reported at its exact path with its code; and every row of the
tables is exercised by some case. The cases follow Flagger's Canary and MetricTemplate
reference (fields for other routers and providers) and Kubernetes' Service spec.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.unit.test_validation_unapplied_fields import merged

from meshpilot.api.identity import ObjectKey
from meshpilot.validation import Plan, StateObject, check_state, plan_apply
from meshpilot.validation.flagger_fields import CANARY, METRIC_TEMPLATE
from meshpilot.validation.service_fields import SERVICE

WARN, REFUSE = "MP2016", "MP0048"

BASES: dict[str, tuple[str, dict[str, Any]]] = {
    "Canary": ("flagger.app/v1beta1", {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "service": {"port": 80},
        "analysis": {"interval": "10s", "stepWeight": 10, "maxWeight": 50,
                     "webhooks": [{"name": "load", "url": "http://flagger-loadtester/",
                                   "metadata": {"cmd": "hey -z 1m -q 10 -c 2 "
                                                       "http://web-canary.shop/"}}]}}),
    "MetricTemplate": ("flagger.app/v1beta1", {
        "provider": {"type": "prometheus", "address": "http://127.0.0.1:9090"},
        "query": "sum(up)"}),
    "Service": ("v1", {"selector": {"app": "web"},
                       "ports": [{"name": "http", "port": 80}]}),
}
TABLES = {"Canary": CANARY, "MetricTemplate": METRIC_TEMPLATE, "Service": SERVICE}


def document(kind: str, patch: dict[str, Any] | None = None) -> dict[str, Any]:
    api_version, spec = BASES[kind]
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "web", "namespace": "shop"}, "spec": merged(spec, patch or {})}


def plan(*docs: dict[str, Any]) -> Plan:
    return plan_apply([("it.yaml", yaml.safe_dump_all(docs, sort_keys=False))], [])


def reported(p: Plan) -> list[tuple[str, str]]:
    return [(d.code, d.path) for d in p.diagnostics
            if d.code in (WARN, REFUSE, "MP0071", "MP2046")]


def _refused_canary(field: str, value: Any) -> tuple[str, dict[str, Any], str, str]:
    *parents, leaf = field.split(".")
    patch: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        patch = {parent: patch}
    return "Canary", patch, f"spec.{field}", REFUSE


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    _refused_canary("provider", "linkerd"),
    _refused_canary("provider", "gatewayapi:v1beta1"),
    ("Canary", {"autoscalerRef": {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                                  "name": "web"}}, "spec.autoscalerRef.kind", "MP0071"),
    ("Canary", {"autoscalerRef": {"apiVersion": "autoscaling/v2",
                                  "kind": "HorizontalPodAutoscaler", "name": "web",
                                  "primaryScalerQueries": {"web": "sum(up)"}}},
     "spec.autoscalerRef.primaryScalerQueries", "MP2046"),
    _refused_canary("ingressRef", {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                   "name": "web"}),
    _refused_canary("routeRef", {"apiVersion": "gateway.networking.k8s.io/v1",
                                 "kind": "HTTPRoute", "name": "web"}),
    _refused_canary("upstreamRef", {"apiVersion": "gloo.solo.io/v1", "kind": "Upstream",
                                    "name": "web"}),
    _refused_canary("service.gatewayRefs", [{"name": "gw"}]),
    _refused_canary("service.backendTimeout", "5s"),
    _refused_canary("service.mirror", [{"backendRef": {"name": "web-canary"}}]),
    _refused_canary("service.meshName", "global"),
    _refused_canary("service.backends", ["backend.test"]),
    _refused_canary("service.unmanagedMetadata", {"labels": ["team"]}),
    ("Canary", {"service": {"headless": True}}, "spec.service.headless", WARN),
    ("Canary", {"service": {"trafficDistribution": "PreferClose"}},
     "spec.service.trafficDistribution", WARN),
    ("MetricTemplate", {"provider": {"type": "datadog"}}, "spec.provider.type", REFUSE),
    ("MetricTemplate", {"provider": {"region": "eu-west-1"}}, "spec.provider.region", WARN),
    ("Service", {"type": "NodePort"}, "spec.type", WARN),
    ("Service", {"type": "ExternalName", "externalName": "api.example.com"}, "spec.type",
     WARN),
    *(("Service", {field: value}, f"spec.{field}", WARN) for field, value in (
        ("clusterIP", "None"), ("clusterIPs", ["10.0.0.1"]), ("externalIPs", ["10.0.0.2"]),
        ("ipFamilies", ["IPv4"]), ("ipFamilyPolicy", "SingleStack"),
        ("loadBalancerIP", "10.0.0.3"), ("loadBalancerSourceRanges", ["10.0.0.0/8"]),
        ("loadBalancerClass", "metallb"), ("allocateLoadBalancerNodePorts", True),
        ("externalTrafficPolicy", "Local"), ("healthCheckNodePort", 30001),
        ("sessionAffinity", "ClientIP"),
        ("sessionAffinityConfig", {"clientIP": {"timeoutSeconds": 60}}),
        ("internalTrafficPolicy", "Local"), ("trafficDistribution", "PreferClose"),
        ("publishNotReadyAddresses", True))),
    ("Service", {"ports": [{"nodePort": 30080}]}, "spec.ports[0].nodePort", WARN),
    ("Service", {"ports": [{"protocol": "UDP"}]}, "spec.ports[0].protocol", WARN),
]


@pytest.mark.parametrize("kind", sorted(BASES))
def test_the_base_objects_draw_neither_code(kind: str) -> None:
    p = plan(document(kind))
    assert p.ok, [d.format() for d in p.diagnostics]
    assert reported(p) == []


@pytest.mark.parametrize(("kind", "patch", "path", "code"), CASES,
                         ids=[f"{c[0]}:{c[2]}:{i}" for i, c in enumerate(CASES)])
def test_a_field_not_acted_on_is_reported_at_its_path(kind: str, patch: dict[str, Any],
                                                      path: str, code: str) -> None:
    p = plan(document(kind, patch))
    assert reported(p) == [(code, path)], [d.format() for d in p.diagnostics]
    assert p.ok is code.startswith("MP2")  # a refusal changes nothing
    (d,) = [d for d in p.diagnostics if d.code == code]
    assert "not applied" in d.message or "refused" in d.message
    assert d.line is not None


NOT_REPORTED: list[tuple[str, dict[str, Any]]] = [
    ("Canary", {"provider": "istio"}),
    ("Canary", {"autoscalerRef": {"apiVersion": "autoscaling/v2",  # acted on
                                  "kind": "HorizontalPodAutoscaler", "name": "web",
                                  "primaryScalerReplicas": {"minReplicas": 2}}}),
    ("Canary", {"service": {"headless": False, "portDiscovery": True, "delegation": False,
                            "apex": {"labels": {"team": "web"}}}}),
    ("Canary", {"analysis": {"webhooks": [{"muteAlert": True}]}}),  # acted on: alerts
    ("Service", {"type": "ClusterIP", "sessionAffinity": "None",
                 "internalTrafficPolicy": "Cluster", "publishNotReadyAddresses": False,
                 "ports": [{"protocol": "TCP", "appProtocol": "http"}]}),
]


@pytest.mark.parametrize(("kind", "patch"), NOT_REPORTED,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(NOT_REPORTED)])
def test_acted_on_fields_and_defaults_are_not_reported(kind: str, patch: dict[str, Any]
                                                       ) -> None:
    p = plan(document(kind, patch))
    assert reported(p) == [], [d.format() for d in p.diagnostics]


def test_a_stored_canary_shows_its_refusal_in_describe_and_analyze() -> None:
    canary = document("Canary", {"autoscalerRef": {"apiVersion": "keda.sh/v1alpha1",
                                                   "kind": "ScaledObject", "name": "web"}})
    state = [StateObject(ObjectKey("flagger.app", "Canary", "shop", "web"), canary)]
    found = [(d.code, d.path) for d in check_state(state, all_objects=True)]
    assert ("MP0071", "spec.autoscalerRef.kind") in found


def test_every_row_of_the_tables_is_exercised() -> None:
    bodies: dict[str, list[dict[str, Any]]] = {}
    for kind, patch, _, _ in CASES:
        bodies.setdefault(kind, []).append(document(kind, patch))
    idle = [(kind, row.pattern) for kind, rows in TABLES.items() for row in rows
            if not any(any(True for _ in row.hits(body)) for body in bodies.get(kind, []))]
    assert idle == []


def test_a_template_secret_ref_without_its_secret_is_warned_about() -> None:
    """MP2024: applied (the checks fail, naming the Secret, until it exists); applied
    with the Secret in one file, no warning."""
    template = document("MetricTemplate", {"provider": {"secretRef": {"name": "prom-auth"}}})
    p = plan(template)
    assert p.ok
    assert [(d.code, d.path) for d in p.diagnostics] == [
        ("MP2024", "spec.provider.secretRef.name")]
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "prom-auth", "namespace": "shop"},
              "stringData": {"username": "flagger", "password": "pw"}}
    assert [d.code for d in plan(template, secret).diagnostics] == []

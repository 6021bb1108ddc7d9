"""A Canary's generated VirtualService never claims another service's in-mesh host
(MP1004), the fix that opens issue 13: Flagger's session-affinity e2e spec lists
``hosts: ["*"]`` with a gateway, which is fine; the same hosts bound to the mesh, or a
host that is another Service's, would capture that service's traffic."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshpilot.api.identity import ObjectKey
from meshpilot.validation import StateObject, check_state, plan_apply

OTHER = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "other"},
         "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}}
ENTRY = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
         "metadata": {"name": "api", "namespace": "default"},
         "spec": {"hosts": ["api.example.com"], "resolution": "DNS",
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}}


def canary(**service: Any) -> dict[str, Any]:
    return {"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "default"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": "podinfo"},
                     "service": {"port": 9898, **service}}}


def codes(*docs: dict[str, Any]) -> list[tuple[str, str]]:
    plan = plan_apply([("it.yaml", yaml.safe_dump_all(docs, sort_keys=False))], [])
    return [(d.code, d.path) for d in plan.diagnostics if d.code == "MP1004"]


@pytest.mark.parametrize("host", ["web.other", "web.other.svc",
                                  "web.other.svc.cluster.local", "*.other.svc.cluster.local",
                                  "api.example.com"])
def test_a_mesh_bound_canary_may_not_list_another_services_host(host: str) -> None:
    assert codes(OTHER, ENTRY, canary(hosts=["podinfo.example.com", host])) == [
        ("MP1004", "spec.service.hosts[1]")]
    assert codes(OTHER, ENTRY, canary(hosts=[host], gateways=["mesh", "public"])) == [
        ("MP1004", "spec.service.hosts[0]")]


def test_star_bound_to_the_mesh_is_refused_even_alone() -> None:
    assert codes(canary(hosts=["*"])) == [("MP1004", "spec.service.hosts[0]")]


@pytest.mark.parametrize("service", [
    {"hosts": ["*"], "gateways": ["public-gateway"]},  # Flagger's session-affinity spec
    {"hosts": ["web.other"], "gateways": ["istio-system/public-gateway"]},
    {"hosts": ["podinfo", "podinfo-canary.default", "app.example.com"]},
    {"delegation": True},
])
def test_own_names_unknown_names_and_gateway_hosts_are_fine(service: dict[str, Any]) -> None:
    assert codes(OTHER, ENTRY, canary(**service)) == []


def test_a_stored_canary_shows_it_in_analyze() -> None:
    state = [StateObject(ObjectKey("", "Service", "other", "web"), OTHER),
             StateObject(ObjectKey("flagger.app", "Canary", "default", "podinfo"),
                         canary(hosts=["web.other"]))]
    assert [(d.code, d.path) for d in check_state(state, all_objects=True)
            if d.code == "MP1004"] == [("MP1004", "spec.service.hosts[0]")]


def test_a_canary_whose_generated_service_names_would_be_invalid_is_refused() -> None:
    """NAME-primary must be a valid Service name (63 characters at most): a target name
    of 56 characters is refused at apply, naming the generated Service."""
    body = canary()
    body["spec"]["targetRef"]["name"] = "a" * 56
    plan = plan_apply([("it.yaml", yaml.safe_dump(body))], [])
    assert not plan.ok
    (d,) = plan.diagnostics
    assert "a" * 56 + "-primary" in d.message and "at most 55" in d.message
    body["spec"]["targetRef"]["name"] = "a" * 55
    assert plan_apply([("it.yaml", yaml.safe_dump(body))], []).ok

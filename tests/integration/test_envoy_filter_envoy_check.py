"""EnvoyFilters judged by real Envoy (``envoy --mode validate``) at apply, before any proxy
gets them: Istio's local rate limit task's filter passes; a patch Envoy refuses (an HTTP
filter after the terminal router, a token bucket of 0 tokens) is refused with Envoy's
own reason; a REMOVE that leaves a route naming a missing cluster is refused; a patch
that matches nothing in a running proxy's config is warned about. Istio validates
EnvoyFilter patches only by their shape, and its proxies NACK a bad result: these cases
follow what Envoy itself says, earlier."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from tests.unit.test_xds_shared import node, objects

from meshpilot.mesh.model import InboundPort, MeshSnapshot, ProxyNode
from meshpilot.server.envoy_filter_check import EnvoyFilterCheck, envoy_validate
from meshpilot.validation import Plan, plan_apply

LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
H = ".default.svc.cluster.local"
HCM = "envoy.filters.network.http_connection_manager"
NODE = ProxyNode(id="sidecar~127.10.0.9~productpage-1.default", kind="sidecar",
                 namespace="default", ip="127.10.0.9", labels={"app": "productpage"},
                 inbound=(InboundPort(9080, 40001, "http"),))
NODE_LIST = [NODE]
RATE_LIMIT: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
    "metadata": {"name": "filter-local-ratelimit-svc", "namespace": "istio-system"},
    "spec": {"workloadSelector": {"labels": {"app": "productpage"}}, "configPatches": [{
        "applyTo": "HTTP_FILTER",
        "match": {"context": "SIDECAR_INBOUND",
                  "listener": {"filterChain": {"filter": {"name": HCM}}}},
        "patch": {"operation": "INSERT_BEFORE", "value": {
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {
                "@type": "type.googleapis.com/udpa.type.v1.TypedStruct", "type_url": LRL,
                "value": {"stat_prefix": "http_local_rate_limiter",
                          "token_bucket": {"max_tokens": 4, "tokens_per_fill": 4,
                                           "fill_interval": "60s"}}}}}}]},
}


def check(doc: dict[str, Any], nodes: list[ProxyNode] | None = None,
          mesh: MeshSnapshot | None = None) -> Plan:
    """The plan of applying ``doc`` with the check's findings only (the document's own
    were judged when it was planned: none but MP2057, no workload being stored here)."""
    plan = plan_apply([("ef.yaml", yaml.safe_dump(doc))], [])
    assert plan.ok and {d.code for d in plan.diagnostics} <= {"MP2057"}, plan.diagnostics
    snapshot = mesh or MeshSnapshot(version=1, services={}, endpoints={})
    running = NODE_LIST if nodes is None else nodes
    checker = EnvoyFilterCheck(lambda: snapshot, lambda: list(running), envoy_validate)
    plan.diagnostics[:] = checker(plan)
    return plan


def test_envoy_takes_the_rate_limit_task() -> None:
    plan = check(RATE_LIMIT)
    assert plan.ok and not plan.diagnostics, plan.diagnostics
    # no proxy runs yet: judged on one made up for its selector (no MP2058 then)
    plan = check(RATE_LIMIT, nodes=[])
    assert plan.ok and not plan.diagnostics, plan.diagnostics


def test_an_apply_without_an_envoy_filter_runs_no_envoy() -> None:
    calls: list[Any] = []
    plan = plan_apply([("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                                    "spec: {ports: [{port: 80}]}\n")], [])
    checker = EnvoyFilterCheck(lambda: MeshSnapshot(1, {}, {}), lambda: [NODE],
                               lambda b: calls.append(b))  # type: ignore[func-returns-value]
    assert checker(plan) == [] and calls == []


def test_a_filter_after_the_router_is_refused_with_envoys_reason() -> None:
    doc = copy.deepcopy(RATE_LIMIT)
    patch = doc["spec"]["configPatches"][0]
    patch["match"]["listener"]["filterChain"]["filter"]["subFilter"] = {
        "name": "envoy.filters.http.router"}
    patch["patch"]["operation"] = "INSERT_AFTER"
    plan = check(doc)
    assert [(d.code, d.path) for d in plan.errors] == [("MP0088", "spec.configPatches")]
    message = plan.errors[0].message
    assert "Envoy refuses" in message and "router" in message, message
    assert plan.errors[0].line is not None and NODE.id in message


def test_values_only_envoy_knows_are_wrong_are_refused() -> None:
    """protobuf parses both; Envoy's own constraints refuse them."""
    doc = copy.deepcopy(RATE_LIMIT)
    doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"][
        "stat_prefix"] = ""
    plan = check(doc)
    assert [d.code for d in plan.errors] == ["MP0088"]
    assert "StatPrefix: value length must be at least 1" in plan.errors[0].message
    negative = {**RATE_LIMIT, "metadata": {"name": "t", "namespace": "default"},
                "spec": {"configPatches": [{"applyTo": "CLUSTER", "patch": {
                    "operation": "MERGE", "value": {"connect_timeout": "-1s"}}}]}}
    plan = check(negative)
    assert [d.code for d in plan.errors] == ["MP0088"]
    assert plan.errors[0].message.count("Expected positive duration") == 1
    assert "goo.gle" not in plan.errors[0].message  # Envoy's reason, not its echo


def test_a_remove_that_leaves_a_dangling_name_is_refused() -> None:
    """A route still sends to subset v2 of svc000: removing its cluster is refused."""
    doc = {**RATE_LIMIT, "metadata": {"name": "gone", "namespace": "default"},
           "spec": {"configPatches": [{
               "applyTo": "CLUSTER",
               "match": {"cluster": {"service": f"svc000{H}", "subset": "v2"}},
               "patch": {"operation": "REMOVE"}}]}}
    plan = check(doc, [node(1)], objects(2, {}))
    assert [d.code for d in plan.errors] == ["MP0088"]
    assert f"Cluster of a routed subset missing: outbound|8080|v2|svc000{H}" in \
        plan.errors[0].message


def test_a_patch_matching_nothing_is_warned_about() -> None:
    doc = copy.deepcopy(RATE_LIMIT)
    doc["spec"]["configPatches"][0]["match"]["listener"]["portNumber"] = 7777
    plan = check(doc)
    assert plan.ok
    assert [(d.code, d.path) for d in plan.diagnostics] == [
        ("MP2058", "spec.configPatches[0].match")]


def test_route_inserts_reach_outbound_routes_and_not_the_inbound_matcher() -> None:
    """Outbound virtual hosts have a route list: an INSERT_FIRST lands there. The
    inbound one routes through its source-counting matcher (MERGE reaches those
    routes), so a route inserted beside it is refused with Envoy's reason."""
    teapot = {"name": "teapot", "match": {"prefix": "/tea"}, "direct_response": {"status": 418}}
    for context, refused in (("SIDECAR_OUTBOUND", False), ("SIDECAR_INBOUND", True)):
        doc = {**RATE_LIMIT, "metadata": {"name": "tea", "namespace": "default"},
               "spec": {"configPatches": [{"applyTo": "HTTP_ROUTE", "match": {
                   "context": context}, "patch": {"operation": "INSERT_FIRST",
                                                  "value": teapot}}]}}
        plan = check(doc, [node(1)], objects(1, {}))
        if refused:
            assert [d.code for d in plan.errors] == ["MP0088"]
            assert "cannot set both matcher and routes" in plan.errors[0].message
        else:
            assert plan.ok and not plan.diagnostics, plan.diagnostics

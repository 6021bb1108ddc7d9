"""EnvoyFilter at apply, after Istio's EnvoyFilter reference: what Istio accepts and
meshpilot does not apply is refused with MP0086 naming the field and the applied values;
a patch value that is not the Envoy v3 message its applyTo takes is refused with
protobuf's reason (MP0087); Istio's local rate limit task's filter (TypedStruct form)
is accepted; a selector no workload matches is warned about (MP2057)."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml

from meshpilot.validation import Plan, plan_apply

LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
RATE_LIMIT = f"""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: filter-local-ratelimit-svc, namespace: istio-system}}
spec:
  workloadSelector:
    labels: {{app: productpage}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter: {{name: "envoy.filters.network.http_connection_manager"}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: {LRL}
          value:
            stat_prefix: http_local_rate_limiter
            token_bucket: {{max_tokens: 4, tokens_per_fill: 4, fill_interval: 60s}}
            filter_enabled:
              runtime_key: local_rate_limit_enabled
              default_value: {{numerator: 100, denominator: HUNDRED}}
            filter_enforced:
              runtime_key: local_rate_limit_enforced
              default_value: {{numerator: 100, denominator: HUNDRED}}
            response_headers_to_add:
            - append: false
              header: {{key: x-local-rate-limit, value: 'true'}}
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: productpage, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  template:
    metadata: {labels: {app: productpage}}
    spec:
      containers: [{name: app, image: demo}]
"""


def plan(*texts: str) -> Plan:
    return plan_apply([("ef.yaml", "---\n".join(textwrap.dedent(t) for t in texts))], [])


def with_patch(patch: dict[str, Any], **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
                           "metadata": {"name": "f", "namespace": "default"},
                           "spec": {"configPatches": [patch], **spec}})


def codes_at(p: Plan) -> set[tuple[str, str]]:
    return {(d.code, d.path) for d in p.diagnostics}


def test_the_rate_limit_task_is_accepted_without_findings() -> None:
    p = plan(RATE_LIMIT, DEPLOYMENT)
    assert p.ok and not p.diagnostics, p.diagnostics


def test_a_selector_nothing_carries_is_warned_about() -> None:
    p = plan(RATE_LIMIT)
    assert p.ok
    assert codes_at(p) == {("MP2057", "spec.workloadSelector.labels")}
    gateway = RATE_LIMIT.replace("{app: productpage}", "{istio: ingressgateway}")
    assert not plan(gateway).diagnostics  # the built-in gateway carries it


CLUSTER_MERGE = {"applyTo": "CLUSTER", "patch": {"operation": "MERGE",
                                                 "value": {"connect_timeout": "1s"}}}


@pytest.mark.parametrize(("patch", "spec", "path"), [
    ({**CLUSTER_MERGE, "applyTo": "BOOTSTRAP"}, {}, "spec.configPatches[0].applyTo"),
    ({**CLUSTER_MERGE, "applyTo": "EXTENSION_CONFIG"}, {}, "spec.configPatches[0].applyTo"),
    ({**CLUSTER_MERGE, "patch": {"operation": "INSERT_FIRST", "value": {"name": "x"}}}, {},
     "spec.configPatches[0].patch.operation"),
    ({"applyTo": "ROUTE_CONFIGURATION", "patch": {"operation": "ADD", "value": {}}}, {},
     "spec.configPatches[0].patch.operation"),
    ({**CLUSTER_MERGE, "match": {"proxy": {"proxyVersion": "^1\\.2.*"}}}, {},
     "spec.configPatches[0].match.proxy"),
    ({"applyTo": "LISTENER", "match": {"listener": {"listenerFilter": "envoy.filters."
                                                                      "listener.tls_inspector"}},
      "patch": {"operation": "REMOVE"}}, {},
     "spec.configPatches[0].match.listener.listenerFilter"),
    ({**CLUSTER_MERGE, "patch": {**CLUSTER_MERGE["patch"], "filterClass": "AUTHZ"}}, {},
     "spec.configPatches[0].patch.filterClass"),
    (CLUSTER_MERGE, {"targetRefs": [{"kind": "Gateway", "name": "g"}]}, "spec.targetRefs"),
])
def test_what_is_not_applied_is_refused_naming_the_field(
        patch: dict[str, Any], spec: dict[str, Any], path: str) -> None:
    p = plan(with_patch(patch, **spec))
    assert not p.ok
    assert ("MP0086", path) in codes_at(p), p.diagnostics
    assert any("use one of" in d.message or "not applied" in d.message for d in p.errors)


@pytest.mark.parametrize(("value", "reason"), [
    ({"connect_timeout": "soon"}, "connect_timeout"),
    ({"conect_timeout": "1s"}, "conect_timeout"),
    ({"typed_extension_protocol_options": {"x": {"@type": "type.googleapis.com/no.Such"}}},
     "no.Such"),
])
def test_a_value_envoy_cannot_take_is_refused_with_the_reason(value: Any, reason: str) -> None:
    p = plan(with_patch({**CLUSTER_MERGE, "patch": {"operation": "MERGE", "value": value}}))
    assert [(d.code, d.path) for d in p.errors] == [
        ("MP0087", "spec.configPatches[0].patch.value")]
    assert reason in p.errors[0].message
    assert p.errors[0].line is not None  # located in the file


def test_what_an_operation_needs_is_required() -> None:
    no_value = plan(with_patch({"applyTo": "CLUSTER", "patch": {"operation": "MERGE"}}))
    assert ("MP0011", "spec.configPatches[0].patch.value") in codes_at(no_value)
    every_filter = plan(with_patch({"applyTo": "HTTP_FILTER", "patch": {"operation": "REMOVE"}}))
    assert ("MP0011", "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name"
            ) in codes_at(every_filter)
    wrong_match = plan(with_patch({**CLUSTER_MERGE, "match": {"listener": {"portNumber": 1}}}))
    assert ("MP0017", "spec.configPatches[0].match.listener") in codes_at(wrong_match)


def test_an_at_type_outside_the_envoy_api_is_never_imported() -> None:
    """A type name is user input: one naming a module outside the Envoy API's protos is
    refused without importing that module (importing can run code)."""
    import sys

    for url in ("type.googleapis.com/antigravity.Fly", "type.googleapis.com/this.Zen",
                "type.googleapis.com/envoy..x.Y"):
        before = set(sys.modules)
        p = plan(with_patch({**CLUSTER_MERGE, "patch": {"operation": "MERGE", "value": {
            "typed_extension_protocol_options": {"x": {"@type": url}}}}}))
        assert [d.code for d in p.errors] == ["MP0087"], p.diagnostics
        assert not {m for m in set(sys.modules) - before
                    if m.split(".")[0] in ("antigravity", "this")}

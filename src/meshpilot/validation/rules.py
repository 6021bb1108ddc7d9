"""Per-kind rules on one object's body, beyond what its model checks: they need several
fields at once, parse embedded formats (PEM), or yield warnings, which a model cannot.

Errors refuse the apply (``check_document``); warnings are reported with the
cross-object ones (``check_state``), so ``apply``, ``analyze`` and ``describe`` show
the same findings. A rule takes the body as the model writes it back (wire names), so
a field given by its Python name is checked like the same field in camelCase.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from meshpilot.api.base import Resource
from meshpilot.validation.argo_analysis_fields import analysis_findings
from meshpilot.validation.argo_fields import rollout_findings
from meshpilot.validation.authorization_rules import authorization_policy_findings
from meshpilot.validation.autoscaler_rules import hpa_findings
from meshpilot.validation.canary_rules import canary_findings
from meshpilot.validation.deployment_rules import deployment_findings, namespace_findings
from meshpilot.validation.envoy_filter_rules import envoy_filter_findings
from meshpilot.validation.finding import Finding
from meshpilot.validation.flagger_fields import CANARY, METRIC_TEMPLATE
from meshpilot.validation.gateway_rules import gateway_findings
from meshpilot.validation.l4_route_rules import virtual_service_findings
from meshpilot.validation.locality_rules import destination_rule_findings, entry_findings
from meshpilot.validation.metric_template_rules import metric_template_findings
from meshpilot.validation.request_authentication_rules import request_authentication_findings
from meshpilot.validation.retry_on_primary_rules import (
    canary_retry_findings,
    rollout_retry_findings,
    virtual_service_retry_findings,
)
from meshpilot.validation.service_entry_rules import service_entry_findings
from meshpilot.validation.service_fields import SERVICE
from meshpilot.validation.unapplied_fields import rule_for as unapplied
from meshpilot.validation.unapplied_fields import rule_of
from meshpilot.validation.workload_group_rules import (
    workload_entry_findings,
    workload_group_findings,
)

Rule = Callable[[Mapping[str, Any]], list[Finding]]


def _tls_secret(body: Mapping[str, Any]) -> list[Finding]:
    # imported on first use: it brings in cryptography, which the CLI's other commands
    # (which load this module) do not need
    from meshpilot.validation.tls_secret import tls_secret_findings

    return tls_secret_findings(body)


def _all_of(*rules: Rule) -> Rule:
    """One rule giving the findings of ``rules``, in order."""
    return lambda body: [finding for rule in rules for finding in rule(body)]


RULES: Mapping[str, Rule] = MappingProxyType({
    "AnalysisRun": analysis_findings,
    "AnalysisTemplate": analysis_findings,
    "AuthorizationPolicy": authorization_policy_findings,
    "ClusterAnalysisTemplate": analysis_findings,
    "Canary": _all_of(canary_findings, rule_of(CANARY), canary_retry_findings),
    "Deployment": deployment_findings,
    "DestinationRule": _all_of(destination_rule_findings, unapplied("DestinationRule")),
    "EnvoyFilter": envoy_filter_findings,
    "Gateway": _all_of(gateway_findings, unapplied("Gateway")),
    "HorizontalPodAutoscaler": hpa_findings,
    "MetricTemplate": _all_of(rule_of(METRIC_TEMPLATE), metric_template_findings),
    "Namespace": namespace_findings,
    "RequestAuthentication": request_authentication_findings,
    "Rollout": _all_of(rollout_findings, rollout_retry_findings),
    "Secret": _tls_secret,
    "Service": rule_of(SERVICE),
    "ServiceEntry": _all_of(service_entry_findings, unapplied("ServiceEntry")),
    "Sidecar": unapplied("Sidecar"),
    "VirtualService": _all_of(virtual_service_findings, unapplied("VirtualService"),
                              virtual_service_retry_findings),
    "WorkloadEntry": _all_of(entry_findings, workload_entry_findings),
    "WorkloadGroup": workload_group_findings,
})
"""The kinds with rules of their own; other kinds have only their model's checks."""


def canonical(model: Resource) -> dict[str, Any]:
    """The body as the model writes it: wire names, defaults filled in."""
    return model.model_dump(by_alias=True, exclude_none=True)


def findings_for(kind: str, body: Mapping[str, Any]) -> list[Finding]:
    rule = RULES.get(kind)
    return rule(body) if rule is not None else []



def findings_for_stored(model_type: type[Resource], body: Mapping[str, Any]) -> list[Finding]:
    """For an object already in the state: its canonical form when it parses (it did
    when it was applied), else the body as stored."""
    kind = str(body.get("kind") or "")
    if kind not in RULES:
        return []
    try:
        model = model_type.model_validate(body)
    except ValidationError:
        return findings_for(kind, body)
    return findings_for(kind, canonical(model))

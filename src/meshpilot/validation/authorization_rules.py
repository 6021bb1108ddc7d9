"""AuthorizationPolicy rules beyond its model: values Istio would refuse or never match,
and the parts meshpilot cannot enforce (CUSTOM, targetRef), which are refused rather
than stored and ignored.

Each list field of a source or operation has one check per value; the table below says
which, so adding a field is one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from meshpilot.validation import codes, match_values
from meshpilot.validation.conditions import condition_findings
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.target_refs import target_ref_findings

_CHECKS: Mapping[str, match_values.ValueCheck] = MappingProxyType({
    # from[].source
    "principals": match_values.principal,
    "notPrincipals": match_values.principal,
    "requestPrincipals": match_values.pattern("request principal"),
    "notRequestPrincipals": match_values.pattern("request principal"),
    "namespaces": match_values.pattern("namespace"),
    "notNamespaces": match_values.pattern("namespace"),
    "serviceAccounts": match_values.service_account,
    "notServiceAccounts": match_values.service_account,
    "ipBlocks": match_values.ip_block,
    "notIpBlocks": match_values.ip_block,
    "remoteIpBlocks": match_values.ip_block,
    "notRemoteIpBlocks": match_values.ip_block,
    # to[].operation
    "hosts": match_values.pattern("host"),
    "notHosts": match_values.pattern("host"),
    "ports": match_values.port,
    "notPorts": match_values.port,
    "methods": match_values.method,
    "notMethods": match_values.method,
    "paths": match_values.request_path,
    "notPaths": match_values.request_path,
})


def authorization_policy_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    found = list(_custom_action(spec))
    found.extend(target_ref_findings("AuthorizationPolicy", spec))
    for i, rule in enumerate(as_list(spec.get("rules"))):
        found.extend(_rule_findings(as_mapping(rule), ("spec", "rules", i)))
    return found


def _custom_action(spec: Mapping[str, Any]) -> Iterator[Finding]:
    if spec.get("action") != "CUSTOM":
        return
    provider = as_mapping(spec.get("provider")).get("name")
    named = f", so provider {provider!r} does not exist" if isinstance(provider, str) else ""
    yield Finding(
        codes.CUSTOM_ACTION, ("spec", "action"),
        "action CUSTOM hands requests to an external authorizer (ext_authz), and meshpilot "
        f"has no extension providers{named}: the policy could only be ignored, so it is "
        "refused; write the rules as an ALLOW or DENY policy (AUDIT is accepted too)",
    )


def _rule_findings(rule: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    for j, item in enumerate(as_list(rule.get("from"))):
        where = (*path, "from", j, "source")
        source = as_mapping(as_mapping(item).get("source"))
        yield from _fields(source, where)
        yield from _service_accounts_alone(source, where)
    for j, item in enumerate(as_list(rule.get("to"))):
        yield from _fields(as_mapping(as_mapping(item).get("operation")), (*path, "to", j,
                                                                          "operation"))
    for j, condition in enumerate(as_list(rule.get("when"))):
        yield from condition_findings(as_mapping(condition), (*path, "when", j))


def _fields(values: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    for field, items in values.items():
        check = _CHECKS.get(field)
        if check is None:
            continue
        for i, value in enumerate(as_list(items)):
            if isinstance(value, str):
                where = (*path, field, i)
                finding = match_values.empty(where, f"value in {field}", value) or check(
                    where, value)
                if finding is not None:
                    yield finding


def _service_accounts_alone(source: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    """Istio: serviceAccounts cannot be combined with principals or namespaces."""
    accounts = [f for f in ("serviceAccounts", "notServiceAccounts") if source.get(f)]
    others = [f for f in ("principals", "notPrincipals", "namespaces", "notNamespaces")
              if source.get(f)]
    if accounts and others:
        yield Finding(codes.INVALID_VALUE, (*path, accounts[0]),
                      f"{accounts[0]} cannot be combined with {', '.join(others)} in one "
                      "source (Istio's rule); use one form, or two sources")


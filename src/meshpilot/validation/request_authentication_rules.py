"""RequestAuthentication rules beyond its model: targetRef is refused (as on
AuthorizationPolicy), and one issuer given twice in one policy is warned about.

Envoy's JWT filter checks a token against the rule for its issuer; with two rules for
one issuer, which audiences, keys and token locations apply is not defined. Across
policies the same holds per workload: that is a cross-object check (security_state).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.target_refs import target_ref_findings


def request_authentication_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    return [*target_ref_findings("RequestAuthentication", spec), *_issuer_twice(spec)]


def issuers(spec: Mapping[str, Any]) -> Iterator[tuple[int, str]]:
    """(rule index, issuer) of every rule that names one."""
    for i, rule in enumerate(as_list(spec.get("jwtRules"))):
        issuer = as_mapping(rule).get("issuer")
        if isinstance(issuer, str) and issuer:
            yield i, issuer


def _issuer_twice(spec: Mapping[str, Any]) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for i, issuer in issuers(spec):
        if issuer in first:
            yield Finding(
                codes.DUPLICATE_ISSUER, ("spec", "jwtRules", i, "issuer"),
                f"issuer {issuer!r} already has a rule (jwtRules[{first[issuer]}]); a token "
                "from it is checked against one of them, and which one is not defined: "
                "merge them into one rule (audiences, keys and token locations together)",
            )
        else:
            first[issuer] = i

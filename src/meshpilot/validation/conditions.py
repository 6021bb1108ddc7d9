"""The keys an AuthorizationPolicy ``when`` condition may test, after Istio's
"Authorization Policy Conditions" reference, and what their values must look like.

A condition on a key the proxy does not know would match nothing (or, negated, every
request), so an unknown key is refused with the valid ones listed. The keys Istio
retired get the replacement Istio names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from meshpilot.validation import codes, match_values
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_list

_PLAIN = frozenset({
    "source.ip", "remote.ip", "source.namespace", "source.principal",
    "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
    "destination.ip", "destination.port", "connection.sni",
})
_BRACKETED = (
    re.compile(r"^request\.headers\[[^\[\]]+\]$"),
    re.compile(r"^request\.auth\.claims(\[[^\[\]]+\])+$"),  # nested: [a][b]
    re.compile(r"^experimental\.envoy\.filters\.[A-Za-z0-9_.]+\[[^\[\]]+\]$"),
)
VALID_KEYS = (
    "request.headers[<header>]", "source.ip", "remote.ip", "source.namespace",
    "source.principal", "request.auth.principal", "request.auth.audiences",
    "request.auth.presenter", "request.auth.claims[<claim>]", "destination.ip",
    "destination.port", "connection.sni", "experimental.envoy.filters.<filter>[<key>]",
)
_RETIRED = MappingProxyType({
    "destination.namespace": "the policy's own namespace (metadata.namespace)",
    "destination.labels": "the policy's selector",
    "destination.name": "the policy's selector",
    "destination.user": "the policy's selector",
})

_VALUE_CHECKS: Mapping[str, match_values.ValueCheck] = MappingProxyType({
    "source.ip": match_values.ip_block,
    "remote.ip": match_values.ip_block,
    "destination.ip": match_values.ip_block,
    "destination.port": match_values.port,
    "source.principal": match_values.principal,
})


def known_key(key: str) -> bool:
    return key in _PLAIN or any(p.match(key) for p in _BRACKETED)


def condition_findings(condition: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    """The key first: values are judged by what the key says they are."""
    key = condition.get("key")
    if not isinstance(key, str):
        return  # the model reports a missing or mistyped key
    if not known_key(key):
        yield Finding(codes.UNKNOWN_CONDITION, (*path, "key"), _unknown(key))
        return
    check = _VALUE_CHECKS.get(key) or match_values.pattern(f"value of {key}")
    for field in ("values", "notValues"):
        for i, value in enumerate(as_list(condition.get(field))):
            if isinstance(value, str):
                where = (*path, field, i)
                finding = match_values.empty(where, f"value of {key}", value) or check(
                    where, value)
                if finding is not None:
                    yield finding


def _unknown(key: str) -> str:
    base = re.sub(r"\[.*$", "", key)
    if base in _RETIRED:
        return (f"condition key {key!r} is no longer supported by Istio; use "
                f"{_RETIRED[base]} instead")
    bracket = next((v for v in VALID_KEYS if "[" in v and v.startswith(base + "[")), None)
    if bracket is not None:
        return f"condition key {key!r} needs a name in brackets: {bracket}"
    return f"unknown condition key {key!r}; valid keys: {', '.join(VALID_KEYS)}"

"""``targetRef``/``targetRefs`` on AuthorizationPolicy and RequestAuthentication.

In Istio they attach a policy to a Gateway API Gateway, a GatewayClass, or a Service or
ServiceEntry served by a waypoint proxy; a sidecar never enforces such a policy. meshpilot
serves none of those attachment points (no Gateway API kinds, no waypoints), so such a
policy would be enforced nowhere. A security policy that silently protects nothing is
worse than a refused one: it is refused, saying how to reach the workloads instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path

FIELDS = ("group", "kind", "name", "namespace")  # Istio's PolicyTargetReference


def target_ref_findings(kind: str, spec: Mapping[str, Any]) -> Iterator[Finding]:
    for path, ref in _refs(spec):
        yield from _shape(path, ref)
        named = f"{ref.get('kind') or '?'} {ref.get('name') or '?'}"
        yield Finding(
            codes.TARGET_REF, path,
            f"this {kind} is attached by targetRef (to {named}), so it would be enforced "
            "nowhere: "
            "meshpilot applies policies to sidecars only, chosen by selector.matchLabels, "
            "or namespace-wide (no selector) or mesh-wide (root namespace istio-system); "
            "replace the targetRef with a selector for the workloads to protect",
        )


def _refs(spec: Mapping[str, Any]) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    single = spec.get("targetRef")
    if isinstance(single, Mapping):
        yield ("spec", "targetRef"), single
    several = spec.get("targetRefs")
    for i, ref in enumerate(several if isinstance(several, list) else ()):
        if isinstance(ref, Mapping):
            yield ("spec", "targetRefs", i), ref


def _shape(path: Path, ref: Mapping[str, Any]) -> Iterator[Finding]:
    """Istio's PolicyTargetReference: kind and name required, nothing else but group and
    namespace."""
    for key in ref:
        if key not in FIELDS:
            yield Finding(codes.UNKNOWN_FIELD, (*path, str(key)),
                          f"unknown field {str(key)!r}; valid fields here: {', '.join(FIELDS)}")
    for key in ("kind", "name"):
        if not isinstance(ref.get(key), str) or not ref.get(key):
            yield Finding(codes.MISSING_FIELD, (*path, key),
                          f"required field {key!r} is missing")

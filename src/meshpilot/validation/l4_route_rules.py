"""VirtualService ``tcp`` and ``tls`` routes that meshpilot accepts and does not apply
everywhere Istio would: warnings, so that ``apply``, ``describe`` and ``analyze`` say so.

- MP2014: a sidecar here has no outbound TCP or TLS listener (an app reaches services
  through its sidecar's HTTP proxy), so a ``tcp`` or ``tls`` route applies at Gateway
  servers only; for the mesh (no ``gateways``, or ``mesh`` among them, as Istio reads
  them) it does nothing. Reported once per route that would apply to the mesh.
- MP2015: ``destinationSubnets`` and ``sourceSubnet`` in such a match are not translated:
  the gateway leaves that match out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.shapes import as_list, as_mapping

MESH = "mesh"
_SUBNET_FIELDS = ("destinationSubnets", "sourceSubnet")


def virtual_service_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    bound = [str(g) for g in as_list(spec.get("gateways"))]
    found: list[Finding] = []
    for kind in ("tcp", "tls"):
        for i, route in enumerate(as_list(spec.get(kind))):
            found.extend(_route_findings(kind, i, as_mapping(route), bound))
    return found


def _route_findings(kind: str, i: int, route: Mapping[str, Any], bound: list[str]
                    ) -> Iterator[Finding]:
    matches = [as_mapping(m) for m in as_list(route.get("match"))]
    if _for_mesh(matches, bound):
        yield Finding(codes.MESH_L4_ROUTE, ("spec", kind, i),
                      f"a {kind} route applies here at Gateway servers only: sidecars have no "
                      f"outbound {kind.upper()} listener (apps reach services through their "
                      "sidecar's HTTP proxy), so for the mesh it does nothing; bind it to a "
                      "Gateway with gateways: [NAME]")
    for j, match in enumerate(matches):
        for field in _SUBNET_FIELDS:
            if match.get(field):
                yield Finding(codes.L4_SUBNET_MATCH, ("spec", kind, i, "match", j, field),
                              f"{field} is not translated: the gateway leaves this match out "
                              "(match on port, gateways, sourceLabels or sourceNamespace)")


def _for_mesh(matches: list[Mapping[str, Any]], bound: list[str]) -> bool:
    """Whether the route applies to sidecars, as Istio reads ``gateways``: a match's own
    list replaces the VirtualService's; an empty one means ``mesh`` alone."""
    default = bound or [MESH]
    if not matches:
        return MESH in default
    return any(MESH in ([str(g) for g in as_list(m.get("gateways"))] or default)
               for m in matches)

"""VirtualService ``tcp`` and ``tls`` route matches, per document.

For the mesh a ``tcp`` or ``tls`` route applies at the sidecars' outbound TCP listeners,
which exist for the TCP and TLS ports of Services and ServiceEntry hosts
(:mod:`meshpilot.mesh.tcp_outbound`); a route on hosts whose ports are all HTTP is the
cross-object check's (MP2014, :mod:`meshpilot.validation.mesh_l4_state`).

``destinationSubnets`` and ``sourceSubnet`` are applied (at sidecars and gateways, see
:mod:`meshpilot.xds.translate.subnets`), so a value that is not an address or CIDR block
is refused (MP0033) rather than left to match nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.validation.finding import Finding
from meshpilot.validation.match_values import ip_block
from meshpilot.validation.shapes import as_list, as_mapping

MESH = "mesh"


def virtual_service_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    found: list[Finding] = []
    for kind in ("tcp", "tls"):
        for i, route in enumerate(as_list(spec.get(kind))):
            found.extend(_subnet_findings(kind, i, as_mapping(route)))
    return found


def _subnet_findings(kind: str, i: int, route: Mapping[str, Any]) -> Iterator[Finding]:
    for j, match in enumerate(as_mapping(m) for m in as_list(route.get("match"))):
        at = ("spec", kind, i, "match", j)
        for k, value in enumerate(as_list(match.get("destinationSubnets"))):
            found = ip_block((*at, "destinationSubnets", k), str(value))
            if found is not None:
                yield found
        source = match.get("sourceSubnet")
        if source and (found := ip_block((*at, "sourceSubnet"), str(source))) is not None:
            yield found


def for_mesh(matches: list[Mapping[str, Any]], bound: list[str]) -> bool:
    """Whether the route applies to sidecars, as Istio reads ``gateways``: a match's own
    list replaces the VirtualService's; an empty one means ``mesh`` alone."""
    default = bound or [MESH]
    if not matches:
        return MESH in default
    return any(MESH in ([str(g) for g in as_list(m.get("gateways"))] or default)
               for m in matches)

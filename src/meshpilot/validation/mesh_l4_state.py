"""Mesh ``tcp`` and ``tls`` routes on Services with no port of their kind (MP2014), a
check across objects: a VirtualService against the Services its ``hosts`` name.

For the mesh, sidecars apply ``tcp`` routes at their listeners for a Service's TCP ports
(``tcp-*``, ``mongo``, ``redis``, ...) and ``tls`` routes at those for its TLS and HTTPS
ports (:mod:`meshpilot.xds.translate.sidecar_tcp`), as Istio's sidecars do. A route on
Services that have only HTTP ports does nothing there (their traffic is routed by
``http`` routes): said here, so it is not silently ignored. Hosts that can name no
Service at all are the per-document rule's (:mod:`meshpilot.validation.l4_route_rules`);
a wildcard host may match some Service's port, so it is not judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from meshpilot.api.hosts import fqdn
from meshpilot.validation import codes
from meshpilot.validation.l4_route_rules import for_mesh
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

_KINDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "tcp": frozenset({"TCP"}), "tls": frozenset({"TLS", "HTTPS"})})
"""Each route kind → the port protocols a sidecar applies it at."""


def check_mesh_l4_routes(obj: StateObject, service_protocols: Mapping[str, frozenset[str]],
                         found: Findings) -> None:
    """MP2014 on each mesh ``tcp`` / ``tls`` route of ``obj`` when the Services its hosts
    name (``service_protocols``: Service FQDN → its ports' protocols) have no port of
    the route's kind."""
    services = _named_services(obj, service_protocols)
    bound = [str(g) for g in as_list(obj.spec.get("gateways"))]
    for kind, wanted in _KINDS.items():
        if not services or any(service_protocols[h] & wanted for h in services):
            continue
        for i in _mesh_routes(obj, kind, bound):
            found.add(codes.MESH_L4_ROUTE, obj, ("spec", kind, i), (
                f"for the mesh a {kind} route applies at the sidecars' listeners for a "
                f"Service's {' and '.join(sorted(wanted))} ports, and "
                f"{', '.join(services)} has none (its HTTP ports are routed by http "
                "routes), so for the mesh it does nothing; name such a port in the "
                "Service (a name like tcp-*, tls-* or an appProtocol), or bind the "
                "route to a Gateway"))


def _named_services(obj: StateObject, service_protocols: Mapping[str, frozenset[str]]
                    ) -> list[str]:
    """The Services ``obj``'s hosts name; none to judge when a host is a wildcard."""
    hosts = [fqdn(str(h), obj.namespace) for h in as_list(obj.spec.get("hosts"))]
    if any(h.startswith("*") for h in hosts):
        return []
    return [h for h in hosts if h in service_protocols]


def _mesh_routes(obj: StateObject, kind: str, bound: list[str]) -> list[int]:
    """The places of ``obj``'s routes of ``kind`` that apply to the mesh."""
    routes = [as_mapping(r) for r in as_list(obj.spec.get(kind))]
    return [i for i, route in enumerate(routes)
            if for_mesh([as_mapping(m) for m in as_list(route.get("match"))], bound)]

"""Mesh ``tcp`` and ``tls`` routes on Services with no port of their kind (MP2014), a
check across objects: a VirtualService against the Services its ``hosts`` name.

For the mesh, sidecars apply ``tcp`` routes at their listeners for a Service's TCP ports
(``tcp-*``, ``mongo``, ``redis``, ...) and ``tls`` routes at those for its TLS and HTTPS
ports (:mod:`meshpilot.xds.translate.sidecar_tcp`), as Istio's sidecars do. A route on
Services that have only HTTP ports does nothing there (their traffic is routed by
``http`` routes): said here, so it is not silently ignored. Hosts that can name no
Service or entry at all do nothing either, and are said the same way; a wildcard host
may match some Service's port, so it is not judged.
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
    """MP2014 on each mesh ``tcp`` / ``tls`` route of ``obj`` when the Services and
    ServiceEntry hosts its hosts name (``service_protocols``: FQDN → its ports'
    protocols) have no port of the route's kind, or when its hosts name none at all."""
    hosts = [fqdn(str(h), obj.namespace) for h in as_list(obj.spec.get("hosts"))]
    if any(h.startswith("*") for h in hosts):
        return  # a wildcard may match some Service's port: not judged
    services = [h for h in hosts if h in service_protocols]
    bound = [str(g) for g in as_list(obj.spec.get("gateways"))]
    for kind, wanted in _KINDS.items():
        if services and any(service_protocols[h] & wanted for h in services):
            continue
        for i in _mesh_routes(obj, kind, bound):
            found.add(codes.MESH_L4_ROUTE, obj, ("spec", kind, i),
                      _why(kind, wanted, services, hosts))


def _why(kind: str, wanted: frozenset[str], services: list[str], hosts: list[str]) -> str:
    ports = " and ".join(sorted(wanted))
    if not services:
        return (f"for the mesh a {kind} route applies at the sidecars' listeners for the "
                f"{ports} ports of Services and ServiceEntry hosts, and none is named "
                f"{', '.join(hosts)}, so for the mesh it does nothing; name the Service "
                "or entry host in hosts, or bind the route to a Gateway")
    return (f"for the mesh a {kind} route applies at the sidecars' listeners for the "
            f"{ports} ports of Services and ServiceEntry hosts, and {', '.join(services)} "
            "has none (its HTTP ports are routed by http routes), so for the mesh it does "
            "nothing; give it such a port (a name like tcp-*, tls-*, an appProtocol or an "
            "entry port's protocol), or bind the route to a Gateway")


def _mesh_routes(obj: StateObject, kind: str, bound: list[str]) -> list[int]:
    """The places of ``obj``'s routes of ``kind`` that apply to the mesh."""
    routes = [as_mapping(r) for r in as_list(obj.spec.get(kind))]
    return [i for i, route in enumerate(routes)
            if for_mesh([as_mapping(m) for m in as_list(route.get("match"))], bound)]

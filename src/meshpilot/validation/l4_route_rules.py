"""VirtualService ``tcp`` and ``tls`` routes that meshpilot accepts and does not apply
everywhere Istio would: warnings, so that ``apply``, ``describe`` and ``analyze`` say so.

- MP2014: for the mesh (no ``gateways``, or ``mesh`` among them, as Istio reads them) a
  ``tcp`` or ``tls`` route applies at the sidecars' outbound TCP listeners, which exist
  for the TCP and TLS ports of Kubernetes Services only
  (:mod:`meshpilot.mesh.tcp_outbound`); a VirtualService none of whose hosts can name a
  Service (``api.example.com``, ``*.example.com``: ServiceEntry hosts) does nothing for
  the mesh, but for a ``tls`` route's CONNECT tunnels to a ServiceEntry's TLS or HTTPS
  port (:mod:`meshpilot.xds.translate.tunnels`). Reported once per such route.
- MP2015: ``destinationSubnets`` and ``sourceSubnet`` in such a match are not translated:
  gateways and sidecars leave that match out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.api.hosts import CLUSTER_DOMAIN, fqdn
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.shapes import as_list, as_mapping

MESH = "mesh"
_SUBNET_FIELDS = ("destinationSubnets", "sourceSubnet")


def virtual_service_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    bound = [str(g) for g in as_list(spec.get("gateways"))]
    namespace = str(as_mapping(body.get("metadata")).get("namespace") or "default")
    to_services = any(_may_be_service(str(h), namespace) for h in as_list(spec.get("hosts")))
    found: list[Finding] = []
    for kind in ("tcp", "tls"):
        for i, route in enumerate(as_list(spec.get(kind))):
            found.extend(_route_findings(kind, i, as_mapping(route), bound, to_services))
    return found


def _may_be_service(host: str, namespace: str) -> bool:
    """Whether ``host`` (as written in a VirtualService of ``namespace``) can name a
    Kubernetes Service: its FQDN under ``svc.<domain>``, or a wildcard that can match one."""
    name = fqdn(host, namespace)
    services = f".{CLUSTER_DOMAIN}"
    if name.startswith("*"):
        return services.endswith(name[1:]) or name.endswith(services)
    return name.endswith(services)


def _route_findings(kind: str, i: int, route: Mapping[str, Any], bound: list[str],
                    to_services: bool) -> Iterator[Finding]:
    matches = [as_mapping(m) for m in as_list(route.get("match"))]
    if not to_services and for_mesh(matches, bound):
        effect = ("it applies only to CONNECT tunnels (HTTPS_PROXY clients) to a TLS or "
                  "HTTPS port a ServiceEntry lists for these hosts" if kind == "tls"
                  else "it does nothing")
        yield Finding(codes.MESH_L4_ROUTE, ("spec", kind, i),
                      f"for the mesh a {kind} route applies at the sidecars' listeners for "
                      f"the {kind.upper()} ports of Kubernetes Services, and none of this "
                      "VirtualService's hosts can name a Service (ServiceEntry hosts get no "
                      f"sidecar listener), so for the mesh {effect}; name the Service "
                      "in hosts, or bind the route to a Gateway with gateways: [NAME]")
    for j, match in enumerate(matches):
        for field in _SUBNET_FIELDS:
            if match.get(field):
                yield Finding(codes.L4_SUBNET_MATCH, ("spec", kind, i, "match", j, field),
                              f"{field} is not translated: gateways and sidecars leave this "
                              "match out (match on port, gateways, sourceLabels or "
                              "sourceNamespace)")


def for_mesh(matches: list[Mapping[str, Any]], bound: list[str]) -> bool:
    """Whether the route applies to sidecars, as Istio reads ``gateways``: a match's own
    list replaces the VirtualService's; an empty one means ``mesh`` alone."""
    default = bound or [MESH]
    if not matches:
        return MESH in default
    return any(MESH in ([str(g) for g in as_list(m.get("gateways"))] or default)
               for m in matches)

"""How the mesh names a calling workload: the source id its sidecar sends, and telemetry reads.

Envoy's stats know the upstream cluster a client called, but not who called a server.
So every outbound request carries the caller's *source id*
``<workload>|<namespace>|<app>|<version>`` in :data:`SOURCE_HEADER` (set by the caller's
sidecar, overwriting anything the app sent), and every inbound route configuration counts
requests per known source id. The xDS translation writes that header and those
counters; telemetry reads the counts back into Istio's ``source_*`` labels. Both use the
encoding defined here, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from meshpilot.mesh.model import Endpoint, ProxyNode

SOURCE_HEADER = "x-meshpilot-source"
UNKNOWN = "unknown"
OTHER_SOURCE = "other"
"""What Envoy counts requests from no known source under (its own catch-all)."""
MESH_PROXY_SOURCE = ("mesh-proxy", "default", "mesh-client", UNKNOWN)
GATEWAY_SOURCE = ("istio-ingressgateway", "istio-system", "istio-ingressgateway", UNKNOWN)
"""The built-in proxies (the control plane starts them with these names and labels)."""


def source_id(workload: str, namespace: str, labels: Mapping[str, str]) -> str:
    """The header value (and counter name) naming one source workload."""
    return "|".join((workload or UNKNOWN, namespace or UNKNOWN,
                     labels.get("app") or UNKNOWN, labels.get("version") or UNKNOWN))


def parse_source_id(value: str) -> tuple[str, str, str, str]:
    """``(workload, namespace, app, version)``; all ``unknown`` if not one of ours."""
    parts = value.split("|")
    if len(parts) != 4:
        return (UNKNOWN,) * 4  # type: ignore[return-value]
    return parts[0], parts[1], parts[2], parts[3]


def node_source_id(node: ProxyNode) -> str:
    """The source id a proxy's requests carry."""
    return source_id(node.workload or node.kind, node.namespace, node.labels)


def known_sources(endpoints: Iterable[tuple[Endpoint, ...]]) -> tuple[str, ...]:
    """The source ids of the built-in proxies and of every workload behind ``endpoints``
    (per service), sorted."""
    out = {"|".join(MESH_PROXY_SOURCE), "|".join(GATEWAY_SOURCE)}
    for group in endpoints:
        for ep in group:
            if ep.workload:
                out.add(source_id(ep.workload, ep.namespace, ep.labels))
    return tuple(sorted(out))

"""What the proxies need so their stats can be read as Istio's standard metrics.

Envoy's stats know the upstream cluster (``outbound|8080|v2|myapp...``: the destination,
seen by the client) but not who called a server. So:

- every outbound request sets the header
  ``x-meshpilot-source: <workload>|<namespace>|<app>|<version>`` (overwriting any value
  the app sent): sidecars and the mesh proxy set it in their outbound connection manager
  (an early header mutation, so the per-service route configurations stay the same for
  every proxy and are built once), gateways in their route configurations;
- every inbound HTTP route configuration (``inbound|<port>||``, over RDS, the same for
  every pod with that port) declares one Envoy *virtual cluster* per known source
  workload, matching that header exactly; Envoy then counts
  ``vhost.inbound|http|<port>.vcluster.<source>.upstream_rq_<code>`` and
  ``.upstream_rq_time`` per source, and everything else under its built-in ``other``
  virtual cluster (reported as source ``unknown``).

Known sources are the workloads behind the snapshot's endpoints plus the two built-in
proxies (mesh proxy, ingress gateway). The header is not authenticated (there is no
mTLS here): a process that reaches a pod's inbound port directly could claim any source.

Outbound and inbound clusters also track request/response sizes (``istio_request_bytes``,
``istio_response_bytes``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.core.v3 import extension_pb2 as core_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm,
)

from meshpilot.mesh.model import MeshSnapshot, ProxyNode, same_objects
from meshpilot.xds.translate import index, pb
from meshpilot.xds.translate.names import TYPE_ROUTE

SOURCE_HEADER = "x-meshpilot-source"
UNKNOWN = "unknown"
OTHER_VCLUSTER = "other"  # Envoy's own catch-all virtual cluster
MESH_PROXY_SOURCE = ("mesh-proxy", "default", "mesh-client", UNKNOWN)
GATEWAY_SOURCE = ("istio-ingressgateway", "istio-system", "istio-ingressgateway", UNKNOWN)
"""The built-in proxies (the control plane starts them with these names and labels)."""

_POD_SUFFIX = re.compile(r"^(?P<workload>.+)-[0-9a-f]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")


def workload_of(pod: str) -> str:
    """Deployment name of a pod named ``<deployment>-<template hash>-<suffix>``."""
    m = _POD_SUFFIX.match(pod)
    return m.group("workload") if m else pod


def source_id(workload: str, namespace: str, labels: Mapping[str, str]) -> str:
    """The header value (and virtual cluster name) naming one source workload."""
    return "|".join((workload or UNKNOWN, namespace or UNKNOWN,
                     labels.get("app") or UNKNOWN, labels.get("version") or UNKNOWN))


def parse_source_id(value: str) -> tuple[str, str, str, str]:
    """``(workload, namespace, app, version)``; all ``unknown`` if not one of ours."""
    parts = value.split("|")
    if len(parts) != 4:
        return (UNKNOWN,) * 4  # type: ignore[return-value]
    return parts[0], parts[1], parts[2], parts[3]


def node_source_id(node: ProxyNode) -> str:
    workload = workload_of(node.workload) if node.kind == "sidecar" else node.workload
    return source_id(workload or node.kind, node.namespace, node.labels)


def known_sources(snapshot: MeshSnapshot) -> list[str]:
    cached = index.of(snapshot).sources
    if cached is not None:
        return cached
    global _last_sources
    last_endpoints, last = _last_sources
    now = tuple(snapshot.endpoints.values())
    if same_objects(now, last_endpoints):
        index.of(snapshot).sources = last  # the same endpoints (by identity): same callers
        return last
    out = {"|".join(MESH_PROXY_SOURCE), "|".join(GATEWAY_SOURCE)}
    for endpoints in now:
        for ep in endpoints:
            if ep.workload:
                out.add(source_id(workload_of(ep.workload), ep.namespace, ep.labels))
    sources = sorted(out)
    index.of(snapshot).sources = sources
    _last_sources = (now, sources)
    return sources


_last_sources: tuple[tuple[object, ...], list[str]] = ((), [])
"""The previous snapshot's endpoint tuples and the callers found in them."""


def source_mutation(node: ProxyNode) -> core_pb2.TypedExtensionConfig:
    """The connection manager's early header mutation setting ``node``'s source header."""
    config = early_hm.HeaderMutation(
        mutations=[mutation_rules_pb2.HeaderMutation(append=_source_header(node_source_id(node)))]
    )
    return core_pb2.TypedExtensionConfig(name=EARLY_MUTATION, typed_config=pb.pack(config))


EARLY_MUTATION = "envoy.http.early_header_mutation.header_mutation"


def _source_header(value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=SOURCE_HEADER, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def virtual_clusters(sources: Iterable[str]) -> list[rc.VirtualCluster]:
    return [
        rc.VirtualCluster(
            name=s,
            headers=[rc.HeaderMatcher(name=SOURCE_HEADER, string_match={"exact": s})],
        )
        for s in sources
    ]


def mark_gateway_routes(out: dict, node: ProxyNode) -> None:
    """A gateway's route configs set its source header (in place). Sidecars set theirs
    in their outbound listener: see :func:`source_mutation`."""
    header = _source_header(node_source_id(node))
    for config in out[TYPE_ROUTE].values():
        config.request_headers_to_add.append(header)


def count_sources(config: route_pb2.RouteConfiguration, sources: Iterable[str]) -> None:
    """An inbound route config gets one virtual cluster per known source (in place)."""
    vclusters = virtual_clusters(sources)
    for vhost in config.virtual_hosts:
        vhost.virtual_clusters.extend(vclusters)

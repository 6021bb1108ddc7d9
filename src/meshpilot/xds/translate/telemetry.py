"""What the proxies need so their stats can be read as Istio's standard metrics.

Envoy's stats know the upstream cluster (``outbound|8080|v2|myapp...``: the destination,
seen by the client) but not who called a server. So (the source id and its header are
defined in :mod:`meshpilot.mesh.sources`):

- every outbound request sets the caller's source id header, overwriting any value the
  app sent: sidecars and the mesh proxy set it in their outbound connection manager (an
  early header mutation, so the per-service route configurations stay the same for every
  proxy and are built once), gateways in their route configurations;
- every inbound HTTP route configuration (``inbound|<port>||``, over RDS, the same for
  every pod with that port) declares Envoy *virtual clusters* per known source id (its
  requests proved by mTLS, and its plaintext ones); Envoy then counts
  ``vhost.inbound|http|<port>.vcluster.<source>.upstream_rq_<code>`` and
  ``.upstream_rq_time`` per source, and everything else under its built-in ``other``
  virtual cluster (reported as source ``unknown``).

Outbound and inbound clusters also track request/response sizes (``istio_request_bytes``,
``istio_response_bytes``).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.core.v3 import extension_pb2 as core_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm,
)

from meshpilot.mesh.model import ProxyNode
from meshpilot.mesh.sources import (
    SOURCE_HEADER,
    UNKNOWN,
    counted_name,
    node_source_id,
    source_identity,
    spiffe_id,
)
from meshpilot.xds.translate import pb
from meshpilot.xds.translate.names import TYPE_ROUTE
from meshpilot.xds.translate.tls import PEER_PRINCIPAL_HEADER

EARLY_MUTATION = "envoy.http.early_header_mutation.header_mutation"


def source_mutation(node: ProxyNode) -> core_pb2.TypedExtensionConfig:
    """The connection manager's early header mutation setting ``node``'s source header."""
    config = early_hm.HeaderMutation(
        mutations=[mutation_rules_pb2.HeaderMutation(append=_source_header(node_source_id(node)))]
    )
    return core_pb2.TypedExtensionConfig(name=EARLY_MUTATION, typed_config=pb.pack(config))


def _source_header(value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=SOURCE_HEADER, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def virtual_clusters(sources: Iterable[str], trust_domain: str) -> list[rc.VirtualCluster]:
    """Per source id, one counter for its requests proved by the peer certificate (the
    inbound sidecar's principal header names the source's own identity) and one for its
    plaintext requests (no principal header at all); a claim over mTLS by someone else
    matches neither and is counted under Envoy's ``other``."""
    out = []
    for source in sources:
        claim = rc.HeaderMatcher(name=SOURCE_HEADER, string_match={"exact": source})
        namespace, account = source_identity(source)
        if account != UNKNOWN:
            proof = rc.HeaderMatcher(name=PEER_PRINCIPAL_HEADER, string_match={
                "exact": spiffe_id(trust_domain, namespace, account)})
            out.append(rc.VirtualCluster(name=counted_name(source, True),
                                         headers=[claim, proof]))
        absent = rc.HeaderMatcher(name=PEER_PRINCIPAL_HEADER, present_match=True,
                                  invert_match=True)
        out.append(rc.VirtualCluster(name=counted_name(source, False),
                                     headers=[claim, absent]))
    return out


def mark_gateway_routes(out: dict, node: ProxyNode) -> None:
    """A gateway's route configs set its source header (in place). Sidecars set theirs
    in their outbound listener: see :func:`source_mutation`."""
    header = _source_header(node_source_id(node))
    for config in out[TYPE_ROUTE].values():
        config.request_headers_to_add.append(header)


def count_sources(config: route_pb2.RouteConfiguration, sources: Iterable[str],
                  trust_domain: str) -> None:
    """An inbound route config gets the virtual clusters of every known source (in
    place)."""
    vclusters = virtual_clusters(sources, trust_domain)
    for vhost in config.virtual_hosts:
        vhost.virtual_clusters.extend(vclusters)

"""Wildcard ServiceEntry hosts resolved NONE: passed through to the name each connection
is for.

Istio's sidecar sends what such an entry covers (``*.wikipedia.org``, its "Egress using
Wildcard Hosts" task) to the connection's original destination address. Apps here are
not captured, so there is no original destination; what an app does give is a name: the
host of its HTTP request (the sidecar is its HTTP proxy) or the SNI of its TLS ClientHello
(at the sidecar's TCP listener for the entry's TLS port,
:mod:`~meshpilot.xds.translate.sidecar_tcp`). So the entry's clusters are dynamic forward
proxy clusters: each resolves that name (with the mesh config's ``dnsResolvers`` when it
names some) and connects to it on the entry's port. They share the DNS cache of
``PassthroughCluster`` (:mod:`~meshpilot.xds.translate.egress`), whose HTTP filter
already runs in every outbound request's chain and resolves the host of any request whose
route's cluster is one of these.

A plain TCP port names nothing, so it has no listener (a warning at apply says so).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.extensions.filters.network.sni_dynamic_forward_proxy.v3 import (
    sni_dynamic_forward_proxy_pb2 as sni_dfp,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as http_pb2

from meshpilot.api.mesh_config import MeshConfig
from meshpilot.mesh.model import MeshService
from meshpilot.xds.translate import egress, pb

SNI_FILTER = "envoy.filters.network.sni_dynamic_forward_proxy"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def is_passthrough(service: MeshService) -> bool:
    """A wildcard entry host resolved NONE (the builder keeps such a host only when the
    entry lists no endpoints)."""
    return service.resolution == "NONE" and service.host.startswith("*.")


def _forward_proxy(config: MeshConfig) -> cluster_pb2.Cluster.CustomClusterType:
    """``PassthroughCluster``'s cluster type: Envoy requires every user of one DNS cache
    to configure it the same way, so it is taken from there, not written twice."""
    return egress.passthrough_cluster(config).cluster_type


def dns_cache(config: MeshConfig) -> dns_cache_pb2.DnsCacheConfig:
    """The shared DNS cache's configuration."""
    found = dfp_cluster.ClusterConfig()
    assert _forward_proxy(config).typed_config.Unpack(found)
    return found.dns_cache_config


def as_forward_proxy(cluster: cluster_pb2.Cluster, config: MeshConfig) -> None:
    """Make ``cluster`` (its name, policy and TLS already set) a dynamic forward proxy
    cluster: it balances over the one host each connection names, so its own load
    balancing settings are dropped (Envoy accepts only CLUSTER_PROVIDED here)."""
    cluster.ClearField("least_request_lb_config")
    cluster.ClearField("ring_hash_lb_config")
    cluster.ClearField("maglev_lb_config")
    cluster.ClearField("round_robin_lb_config")
    cluster.ClearField("load_assignment")
    cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    cluster.cluster_type.CopyFrom(_forward_proxy(config))
    _name_checked(cluster)
    if not cluster.HasField("connect_timeout"):
        cluster.connect_timeout.CopyFrom(pb.duration(egress.CONNECT_TIMEOUT))


def _name_checked(cluster: cluster_pb2.Cluster) -> None:
    """Envoy requires a forward proxy cluster with HTTP options to send the name it
    resolved as SNI and check the upstream certificate against it (when a
    DestinationRule originates TLS): what a client of that name would do itself."""
    packed = cluster.typed_extension_protocol_options.get(_HTTP_OPTIONS)
    if packed is None:
        return
    options = http_pb2.HttpProtocolOptions()
    assert packed.Unpack(options)
    options.upstream_http_protocol_options.auto_sni = True
    options.upstream_http_protocol_options.auto_san_validation = True
    cluster.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(pb.pack(options))


def sni_filter(port: int, config: MeshConfig) -> lc.Filter:
    """The network filter that resolves a TLS connection's SNI name, to be connected to
    on ``port`` by the forward proxy cluster after it."""
    return lc.Filter(name=SNI_FILTER, typed_config=pb.pack(
        sni_dfp.FilterConfig(dns_cache_config=dns_cache(config), port_value=port)))

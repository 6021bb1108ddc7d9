"""The names one resource gives of others, read from the resource itself.

Envoy fetches some resources by the name another one gives: a cluster's
ClusterLoadAssignment (EDS), a listener's or a routing scope's RouteConfiguration (RDS).
Those names decide what a proxy will ask for (so what an update waits for) and what a
consistent config must contain. Each function here reads them from one message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message


def eds_name(cluster: Message) -> str | None:
    """The ClusterLoadAssignment an EDS cluster waits for (None for other cluster types)."""
    if not isinstance(cluster, cluster_pb2.Cluster):
        return None
    if cluster.HasField("type") and cluster.type == cluster_pb2.Cluster.EDS:
        return cluster.eds_cluster_config.service_name or cluster.name
    return None


def eds_names(cluster: Message) -> Iterable[str]:
    name = eds_name(cluster)
    return (name,) if name else ()


def _connection_managers(listener: Message) -> Iterator[hcm_pb2.HttpConnectionManager]:
    """The HTTP connection managers of a listener's filter chains."""
    if not isinstance(listener, listener_pb2.Listener):
        return
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for flt in chain.filters:
            if flt.HasField("typed_config") and flt.typed_config.Is(
                hcm_pb2.HttpConnectionManager.DESCRIPTOR
            ):
                hcm = hcm_pb2.HttpConnectionManager()
                flt.typed_config.Unpack(hcm)
                yield hcm


def rds_names(listener: Message) -> set[str]:
    """Route configurations a listener's HTTP connection managers fetch over RDS."""
    return {hcm.rds.route_config_name for hcm in _connection_managers(listener)
            if hcm.HasField("rds")}


def ecds_names(listener: Message) -> set[str]:
    """Extension configs (ECDS) a listener's HTTP connection managers name: the filters
    whose config is discovered rather than written in the listener."""
    return {f.name for hcm in _connection_managers(listener) for f in hcm.http_filters
            if f.HasField("config_discovery")}


def scope_route_name(scope: Message) -> str | None:
    """The RouteConfiguration a routing scope (SRDS) points at, fetched over RDS."""
    if isinstance(scope, scoped_route_pb2.ScopedRouteConfiguration):
        return scope.route_configuration_name or None
    return None


def scope_route_names(scope: Message) -> Iterable[str]:
    name = scope_route_name(scope)
    return (name,) if name else ()


def subset_clusters(config: Message) -> set[str]:
    """The subset clusters (``outbound|<port>|<subset>|<host>``) a route configuration
    sends or mirrors traffic to. A route naming a subset that no cluster provides would
    answer 503 for every request it matches; a host with no cluster at all is allowed
    (Istio routes to it and Envoy answers "no cluster", which validation warns about)."""
    if not isinstance(config, route_pb2.RouteConfiguration):
        return set()
    out: set[str] = set()
    for vhost in config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            names = [action.cluster, *(w.name for w in action.weighted_clusters.clusters),
                     *(m.cluster for m in action.request_mirror_policies)]
            out.update(n for n in names if _has_subset(n))
    return out


def _has_subset(cluster: str) -> bool:
    parts = cluster.split("|")
    return len(parts) == 4 and parts[0] == "outbound" and bool(parts[2])


def subset_parent(cluster: str) -> str:
    """``outbound|p|subset|host`` -> ``outbound|p||host``: the service's own cluster."""
    direction, port, _, host = cluster.split("|")
    return f"{direction}|{port}||{host}"


def cluster_secret_names(cluster: Message) -> set[str]:
    """SDS secrets a cluster's TLS transport sockets name (its own and its matches')."""
    if not isinstance(cluster, cluster_pb2.Cluster):
        return set()
    sockets = [cluster.transport_socket] if cluster.HasField("transport_socket") else []
    sockets += [m.transport_socket for m in cluster.transport_socket_matches]
    return {n for s in sockets for n in _tls_secret_names(s.typed_config,
                                                          tls_pb2.UpstreamTlsContext)}


def listener_secret_names(listener: Message) -> set[str]:
    """SDS secrets the TLS transport sockets of a listener's filter chains name."""
    if not isinstance(listener, listener_pb2.Listener):
        return set()
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    return {n for c in chains if c.HasField("transport_socket")
            for n in _tls_secret_names(c.transport_socket.typed_config,
                                       tls_pb2.DownstreamTlsContext)}


def _tls_secret_names(packed: any_pb2.Any,
                      kind: type[tls_pb2.UpstreamTlsContext] | type[tls_pb2.DownstreamTlsContext]
                      ) -> set[str]:
    if not packed.Is(kind.DESCRIPTOR):
        return set()
    context = kind()
    packed.Unpack(context)
    common = context.common_tls_context
    names = {c.name for c in common.tls_certificate_sds_secret_configs}
    if common.HasField("validation_context_sds_secret_config"):
        names.add(common.validation_context_sds_secret_config.name)
    combined = common.combined_validation_context
    if common.HasField("combined_validation_context") and \
            combined.HasField("validation_context_sds_secret_config"):
        names.add(combined.validation_context_sds_secret_config.name)
    return names

"""The east-west gateway: how proxies on joined hosts reach the control-plane host's pods.

Pods on the control-plane host listen on loopback addresses (``runtime.ipam``), which
mean nothing on another host. As Istio's multi-network model does, a proxy on another
network is given, instead of those endpoints, the address of a gateway on their network
(``up --listen ADDR``, port :data:`GATEWAY_PORT` as Istio's), and the gateway forwards
each connection *unchanged* to a local pod, chosen by the TLS SNI the caller sent
(Istio's ``AUTO_PASSTHROUGH`` east-west gateway). The SNI is the one every mesh client
already sends over mutual TLS, ``outbound_.PORT_.SUBSET_.HOST``
(:func:`names.outbound_sni`), so it names a service port and subset; the gateway holds
one cluster of that name per service port and DestinationRule subset, whose endpoints
are the matching local pods. The gateway never terminates TLS: the caller's certificate
reaches the destination sidecar, so identity and authorization hold there.

Two pure functions: :func:`via_gateway` rewrites a caller's assignment, and
:func:`gateway_resources` is the gateway's whole configuration.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.sni_cluster.v3 import sni_cluster_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf.message import Message

from meshpilot.mesh.index import destination_rule
from meshpilot.mesh.model import MeshService, MeshSnapshot, ProxyNode
from meshpilot.xds.translate import access_log, clusters, envoy_filter, names, pb, tls
from meshpilot.xds.translate.endpoints import host_gateway_of, network_of, socket

GATEWAY_PORT = 15443
"""Where the east-west gateway listens at the ``--listen`` address (Istio's port)."""
GATEWAY_NAME = "istio-eastwestgateway"
LISTENER = "east_west_15443"
SNI_CLUSTER_FILTER = "envoy.filters.network.sni_cluster"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
CONNECT_TIMEOUT = "5s"

Resources = dict[str, dict[str, Message]]


def on_this_host(address: str) -> bool:
    """Whether an endpoint address is a loopback one: a pod of the control-plane host,
    reachable from nowhere else."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _takes_mtls(lb: ec.LbEndpoint) -> bool:
    fields = lb.metadata.filter_metadata.get(tls.SOCKET_MATCH_FILTER)
    return fields is not None and fields.fields.get(tls.TLS_MODE_KEY) is not None


def _target(lb: ec.LbEndpoint, gateway: tuple[str, int] | None) -> tuple[str, int] | None:
    """The gateway a loopback endpoint is reached through: its own host's, when another
    replica's host runs it (:func:`~meshpilot.xds.translate.endpoints.host_gateway_of`),
    else ``gateway``; None for an endpoint reached as it is."""
    if not on_this_host(lb.endpoint.address.socket_address.address):
        return None
    return host_gateway_of(lb) or gateway


def via_gateway(assignment: endpoint_pb2.ClusterLoadAssignment,
                gateway: tuple[str, int] | None) -> endpoint_pb2.ClusterLoadAssignment:
    """``assignment`` as a proxy on another network must see it: in each locality group,
    the control-plane host's endpoints that take mutual TLS become one endpoint at the
    gateway weighing what they weighed together (Istio aggregates a network's endpoints
    the same way); those that do not are left out (the gateway forwards mutual TLS only,
    by its SNI). A loopback endpoint of another replica's host goes to that host's
    gateway the same way, whatever ``gateway`` is (none: the caller is on this host).
    Endpoints elsewhere are kept as they are."""
    if not any(_target(lb, gateway) for group in assignment.endpoints
               for lb in group.lb_endpoints):
        return assignment  # nothing to send through a gateway: the very same message
    out = endpoint_pb2.ClusterLoadAssignment()
    out.CopyFrom(assignment)
    del out.endpoints[:]
    for group in assignment.endpoints:
        kept = [lb for lb in group.lb_endpoints if _target(lb, gateway) is None]
        through: dict[tuple[str, int], list[ec.LbEndpoint]] = {}
        for lb in group.lb_endpoints:
            target = _target(lb, gateway)
            if target is not None and _takes_mtls(lb):
                through.setdefault(target, []).append(lb)
        for target in sorted(through):
            merged = ec.LbEndpoint()
            merged.CopyFrom(through[target][0])
            merged.endpoint.address.CopyFrom(socket(*target))
            merged.load_balancing_weight.value = sum(
                max(lb.load_balancing_weight.value, 1) for lb in through[target])
            kept.append(merged)
        if kept:
            copy = out.endpoints.add()
            copy.CopyFrom(group)
            del copy.lb_endpoints[:]
            copy.lb_endpoints.extend(kept)
    return out


def gateway_node(address: str) -> ProxyNode:
    """The gateway as the control plane runs it (its own Envoy, at ``address``)."""
    return ProxyNode(id=f"router~{address}~{GATEWAY_NAME}.istio-system~istio-system.svc."
                        "cluster.local", kind="gateway", namespace="istio-system", ip=address,
                     workload=GATEWAY_NAME, name=GATEWAY_NAME,
                     labels={"istio": "eastwestgateway", "app": GATEWAY_NAME})


def _passthrough_cluster(name: str) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS,
                                  connect_timeout=pb.duration(CONNECT_TIMEOUT))
    cluster.eds_cluster_config.eds_config.CopyFrom(pb.ads_source())
    cluster.eds_cluster_config.service_name = name
    return cluster


def _served(lb: ec.LbEndpoint, network: str, local: bool = True) -> bool:
    """Whether the gateway forwards to ``lb``: a pod of this host (not another replica's
    host's, which that host's gateway serves; none for a joined host's gateway, not
    ``local``), or, when the gateway
    is on a named network, an endpoint of that network that takes mutual TLS (Istio's
    gateway of a network forwards to every workload on it)."""
    if on_this_host(lb.endpoint.address.socket_address.address):
        return local and host_gateway_of(lb) is None  # not another replica's host's pod
    return bool(network) and network_of(lb) == network and _takes_mtls(lb)


def _local_part(assignment: endpoint_pb2.ClusterLoadAssignment, name: str, network: str,
                local: bool = True) -> endpoint_pb2.ClusterLoadAssignment:
    """The assignment's endpoints the gateway serves (:func:`_served`), all at priority
    0 (the gateway has no locality of its own to prefer), under the SNI cluster's
    name."""
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    lbs = [lb for group in assignment.endpoints for lb in group.lb_endpoints
           if _served(lb, network, local)]
    if lbs:
        out.endpoints.add().lb_endpoints.extend(
            ec.LbEndpoint(endpoint=lb.endpoint, load_balancing_weight=lb.load_balancing_weight)
            for lb in lbs)
    return out


def _sni_of(cluster_name: str) -> str:
    _, port, subset, host = cluster_name.split("|", 3)
    return names.outbound_sni(int(port), subset or None, host)


def _mesh_services(snapshot: MeshSnapshot) -> Iterator[MeshService]:
    for host in sorted(snapshot.services):
        service = snapshot.services[host]
        if service.location != "MESH_EXTERNAL" and service.resolution not in (
                "DNS", "DNS_ROUND_ROBIN", "NONE"):
            yield service


def gateway_resources(snapshot: MeshSnapshot, node: ProxyNode, local: bool = True
                      ) -> tuple[Resources, list[str]]:
    """The gateway's listener at ``node.ip:GATEWAY_PORT`` and, per mesh service port and
    subset (the DestinationRule the gateway's namespace sees, as for any proxy), an EDS
    cluster named by the SNI with the local pods (and the endpoints of the gateway's named
    network) as endpoints. The listener's one chain
    matches those SNI names exactly: a connection naming anything else is closed. It
    writes Istio's access log lines where the node says, as every proxy does. Last, the
    EnvoyFilters that select the gateway patch it, as any proxy; the second value says
    per patch what could not be applied. A joined host's gateway (not ``local``) serves
    only its network's endpoints: the control-plane host's pods are not reachable there."""
    out: Resources = {names.TYPE_LISTENER: {}, names.TYPE_CLUSTER: {}, names.TYPE_ENDPOINT: {}}
    for service in _mesh_services(snapshot):
        rule = destination_rule(snapshot, service.host, node)
        for cluster, assignment in clusters.for_service(snapshot, service, rule):
            if assignment is None:
                continue
            sni = _sni_of(cluster.name)
            out[names.TYPE_CLUSTER][sni] = _passthrough_cluster(sni)
            out[names.TYPE_ENDPOINT][sni] = _local_part(assignment, sni, node.network, local)
    served = sorted(out[names.TYPE_CLUSTER])
    if served:
        out[names.TYPE_LISTENER][LISTENER] = access_log.with_access_log(
            _listener(node.ip, served), node.access_log)
    problems = envoy_filter.apply_filters(out, node, envoy_filter.selected(snapshot, node))
    return out, problems


def _listener(address: str, served: list[str]) -> listener_pb2.Listener:
    chain = lc.FilterChain(filters=[
        lc.Filter(name=SNI_CLUSTER_FILTER, typed_config=pb.pack(sni_cluster_pb2.SniCluster())),
        # the cluster named here is replaced by the SNI before the connection is made
        # a caller's connection is pooled and lives long: its log line is written when
        # it is made, not only when it closes
        lc.Filter(name=TCP_PROXY_FILTER, typed_config=pb.pack(tcp_proxy_pb2.TcpProxy(
            stat_prefix=LISTENER, cluster=served[0],
            access_log_options=tcp_proxy_pb2.TcpProxy.TcpAccessLogOptions(
                flush_access_log_on_connected=True)))),
    ])
    chain.filter_chain_match.transport_protocol = "tls"
    chain.filter_chain_match.server_names.extend(served)
    return listener_pb2.Listener(name=LISTENER, address=socket(address, GATEWAY_PORT),
                                 listener_filters=[tls.tls_inspector()],
                                 filter_chains=[chain])

"""Listeners: the sidecar's outbound HTTP proxy, its inbound ports, gateway ports.

Connection-manager defaults: codec AUTO; HTTP/1.1 absolute-form requests (what a
client sends through ``HTTP_PROXY``) accepted; downstream idle timeout 1h (Envoy's
own default, made explicit); sidecars keep ``use_remote_address`` false (their
downstream is the local app or a peer sidecar, as in Istio) while gateways, the edge,
set it true so the client address is appended to XFF and external requests are not
trusted with ``x-envoy-*`` headers. Inbound ports with protocol TCP use tcp_proxy.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshpilot.api.networking import ConnectionPoolSettings
from meshpilot.mesh import sidecar_ingress, sources
from meshpilot.mesh.model import InboundPort, ProxyNode
from meshpilot.mesh.protocols import is_tcp
from meshpilot.xds.translate import (
    egress,
    filters,
    headers,
    ingress_tls,
    jwt,
    names,
    pb,
    rbac,
    telemetry,
    tls,
    wildcards,
)
from meshpilot.xds.translate.endpoints import socket
from meshpilot.xds.translate.workload_security import InboundSecurity

IDLE_TIMEOUT = "3600s"


def connection_manager(
    stat_prefix: str,
    *,
    rds: str | None = None,
    scoped: str | None = None,
    route_config: route_pb2.RouteConfiguration | None = None,
    edge: bool = False,
    fault_and_cors: bool = True,
    before_router: Sequence[hcm.HttpFilter] = (),
) -> hcm.HttpConnectionManager:
    chain = filters.http_filters(fault_and_cors=fault_and_cors)
    chain[-1:-1] = before_router
    out = hcm.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm.HttpConnectionManager.AUTO,
        http_filters=chain,
        http_protocol_options=protocol_pb2.Http1ProtocolOptions(allow_absolute_url={"value": True}),
        common_http_protocol_options=protocol_pb2.HttpProtocolOptions(
            idle_timeout=pb.duration(IDLE_TIMEOUT)
        ),
        use_remote_address={"value": edge},
    )
    headers.server_name(out)
    if edge:
        out.strip_any_host_port = True
        out.normalize_path.value = True
        headers.gateway(out)
    if rds is not None:
        out.rds.config_source.CopyFrom(pb.ads_source())
        out.rds.route_config_name = rds
    elif scoped is not None:
        out.scoped_routes.CopyFrom(scoped_routes(scoped))
    elif route_config is not None:
        out.route_config.CopyFrom(route_config)
    return out


def scoped_routes(name: str) -> hcm.ScopedRoutes:
    """Routing scopes over SRDS, one per host a client may write, keyed by the request's
    host without its port (``myapp:8080`` → ``myapp``; Envoy reads ``host`` as
    ``:authority``, which is what an absolute-form proxy request's URL sets). Each scope
    names its service's route config, fetched over RDS: a change to one service's routes
    resends that service's route config only.
    """
    extractor = hcm.ScopedRoutes.ScopeKeyBuilder.FragmentBuilder.HeaderValueExtractor(
        name="host", element_separator=":", index=0
    )
    return hcm.ScopedRoutes(
        name=name,
        scope_key_builder=hcm.ScopedRoutes.ScopeKeyBuilder(
            fragments=[
                hcm.ScopedRoutes.ScopeKeyBuilder.FragmentBuilder(
                    header_value_extractor=extractor
                )
            ]
        ),
        rds_config_source=pb.ads_source(),
        scoped_rds=hcm.ScopedRds(scoped_rds_config_source=pb.ads_source()),
    )


def _listener(
    name: str, ip: str, port: int, network_filter: lc.Filter, direction: int
) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=socket(ip, port),
        traffic_direction=direction,
        filter_chains=[lc.FilterChain(filters=[network_filter])],
    )


def _hcm_filter(manager: hcm.HttpConnectionManager) -> lc.Filter:
    return lc.Filter(name=names.HCM_FILTER, typed_config=pb.pack(manager))


def outbound(node: ProxyNode, wild: wildcards.WildScopes = ()) -> listener_pb2.Listener:
    """``outbound_http_proxy`` on ``node.ip:node.outbound_port`` (``outbound_ip`` when
    set), routes over SRDS + RDS (scoped for the wildcard hosts ``wild`` too). Hosts
    outside the registry go by the outbound traffic policy (:mod:`.egress`), whose filters
    come over ECDS: this listener is the same in every mode and whatever services there
    are."""
    policy, passthrough = egress.listener_filters()
    manager = connection_manager(names.OUTBOUND_STAT_PREFIX, scoped=names.OUTBOUND_SCOPES,
                                 before_router=[passthrough])
    manager.http_filters.insert(0, policy)
    # an HTTPS_PROXY client's CONNECT: only routes that end the tunnel take it
    manager.upgrade_configs.append(hcm.HttpConnectionManager.UpgradeConfig(
        upgrade_type=egress.CONNECT))
    manager.local_reply_config.CopyFrom(egress.local_replies())
    manager.early_header_mutation_extensions.append(telemetry.source_mutation(node))
    manager.early_header_mutation_extensions.append(
        tls.removal_mutation(egress.stripped_headers()))
    wildcards.apply(manager, wild)
    return _listener(
        names.OUTBOUND_LISTENER,
        node.outbound_ip or node.ip,
        node.outbound_port,
        _hcm_filter(manager),
        base_pb2.OUTBOUND,
    )


def inbound(node: ProxyNode, port: InboundPort, security: InboundSecurity
            ) -> listener_pb2.Listener:
    """``inbound_<port>`` on ``node.ip:container_port`` → cluster ``inbound|<port>||``,
    enforcing the workload's ``security``: the port's mTLS mode picks the filter chains
    (STRICT: mTLS only; PERMISSIVE: mTLS and plaintext; DISABLE: plaintext, or the
    user's TLS where a Sidecar ingress listener gives ``tls``: :mod:`.ingress_tls`), a JWT
    filter checks tokens, RBAC filters apply the AuthorizationPolicies (a policy that
    cannot be enforced denies everything: never a silent allow), and on the mTLS chain
    the caller's SPIFFE ID is written into a header no client can forge.

    Every request an HTTP port answers is counted by its source, whoever answers it (the
    app, or the sidecar refusing it): the listener logs each request into the counters
    under the name of the route that sorted it by its caller (see :mod:`.telemetry`); the
    listener names no source, so a new workload does not change it.
    The routes come over RDS (:func:`inbound_route`): they are the same for every pod
    with that container port, so a new caller (one more counted source) changes one
    shared route config, not every pod's listener. Enforcement stays in the listener: a
    route config that is missing or late changes what a request is counted as, never
    whether it is let through.
    """
    cluster = names.inbound_cluster(port.container_port)
    name = names.inbound_listener(port.container_port)
    trust_domain = security.trust_domain
    said = sidecar_ingress.setting(node, port.container_port)
    if is_tcp(port.protocol):
        guards = _network_guards(security)
        pool = said.pool if said is not None else None

        def make(mtls: bool) -> list[lc.Filter]:
            return [*guards, _inbound_tcp_proxy(port.container_port, cluster, mtls, pool)]
    else:
        checks = [*_jwt_filters(security), *_http_guards(security)]
        # a claim header reaches the app only from a verified token: a client's is removed
        claim_headers = sorted({c.header.lower() for rule in security.jwt_rules
                                for c in rule.output_claim_to_headers})

        def make(mtls: bool) -> list[lc.Filter]:
            manager = connection_manager(name, rds=names.inbound_route(port.container_port),
                                         fault_and_cors=False, before_router=checks)
            manager.early_header_mutation_extensions.append(tls.peer_principal_mutation(mtls))
            if mtls:
                headers.inbound_mtls(manager)
            if claim_headers:
                manager.early_header_mutation_extensions.append(
                    tls.removal_mutation(claim_headers))
            manager.access_log.append(telemetry.inbound_access_log(
                port.container_port, grpc=port.protocol == "GRPC"))
            return [_hcm_filter(manager)]

    if said is not None and ingress_tls.terminates(said, security):
        chains, listener_filters = [ingress_tls.chain(said, node.namespace, make)], []
    else:
        chains, listener_filters = tls.inbound_filter_chains(
            security.mode(port.container_port), make, trust_domain=trust_domain)
    return listener_pb2.Listener(
        name=name, address=socket(node.ip, port.container_port),
        traffic_direction=base_pb2.INBOUND, filter_chains=chains,
        listener_filters=listener_filters,
        # a server-speaks-first protocol's silent client is not held by the TLS inspector
        continue_on_listener_filters_timeout=bool(listener_filters))


def _inbound_tcp_proxy(container_port: int, cluster: str, mtls: bool,
                       pool: ConnectionPoolSettings | None = None) -> lc.Filter:
    """The tcp_proxy of one chain of an inbound TCP port. Each chain counts under its own
    stat prefix (``inbound_9000.mutual_tls`` / ``.none``), so telemetry can tell the
    connections that came over mutual TLS from plaintext ones, as it does for HTTP. A
    Sidecar's connection pool for the port sets its idle timeout and its connections'
    longest life (``tcp.idleTimeout``, ``tcp.maxConnectionDuration``), as Istio's
    tcp_proxy takes them."""
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=sources.inbound_tcp_stat_prefix(container_port, mtls), cluster=cluster)
    tcp = pool.tcp if pool is not None else None
    if tcp is not None and tcp.idle_timeout:
        proxy.idle_timeout.CopyFrom(pb.duration(tcp.idle_timeout))
    if tcp is not None and tcp.max_connection_duration:
        proxy.max_downstream_connection_duration.CopyFrom(
            pb.duration(tcp.max_connection_duration))
    if mtls:  # the caller is known from its certificate: counted by caller
        telemetry.count_tcp_callers(proxy, container_port)
    else:
        proxy.access_log.append(telemetry.inbound_tcp_close_log(container_port, mtls))
    return lc.Filter(name=names.TCP_PROXY_FILTER, typed_config=pb.pack(proxy))


def _jwt_filters(security: InboundSecurity) -> list[hcm.HttpFilter]:
    try:
        found = jwt.jwt_authn_filter(security.jwt_rules)
    except jwt.UnsupportedJwtRule:
        return [rbac.deny_all_http()]
    return [found] if found is not None else []


def _http_guards(security: InboundSecurity) -> list[hcm.HttpFilter]:
    try:
        return rbac.http_rbac_filters(security.authorization, security.trust_domain)
    except rbac.UnsupportedAuthorization:
        return [rbac.deny_all_http()]


def _network_guards(security: InboundSecurity) -> list[lc.Filter]:
    try:
        return rbac.network_rbac_filters(security.authorization, security.trust_domain)
    except rbac.UnsupportedAuthorization:
        return [rbac.deny_all_network()]


def inbound_route(container_port: int) -> route_pb2.RouteConfiguration:
    """The routes of every ``inbound_<port>`` listener: all to ``inbound|<port>||`` (one
    route here; the telemetry makes it one per counted source)."""
    cluster = names.inbound_cluster(container_port)
    route = rc.Route(
        name="default",
        match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(cluster=cluster, timeout=pb.duration("0s")),
    )
    return route_pb2.RouteConfiguration(
        name=names.inbound_route(container_port),
        virtual_hosts=[
            rc.VirtualHost(name=f"inbound|http|{container_port}", domains=["*"], routes=[route])
        ],
        validate_clusters={"value": False},
    )


def gateway(node: ProxyNode, server_port: int, bind_port: int) -> listener_pb2.Listener:
    """``gateway_<port>`` on ``node.ip:<mapped port>``, routes ``http.<port>`` over RDS."""
    manager = connection_manager(
        names.gateway_listener(server_port), rds=names.gateway_route(server_port), edge=True
    )
    return _listener(
        names.gateway_listener(server_port),
        node.ip,
        bind_port,
        _hcm_filter(manager),
        base_pb2.OUTBOUND,
    )


def gateway_tls(node: ProxyNode, server_port: int, bind_port: int,
                chains: Sequence[lc.FilterChain]) -> listener_pb2.Listener:
    """``gateway_<port>`` for TLS servers: the chains (one per terminating server or
    passthrough route) are told apart by SNI, which the TLS inspector reads from the
    ClientHello; a connection whose SNI no chain serves is closed."""
    return listener_pb2.Listener(
        name=names.gateway_listener(server_port),
        address=socket(node.ip, bind_port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=chains,
        listener_filters=[tls.tls_inspector()],
    )


def gateway_tcp(node: ProxyNode, server_port: int, bind_port: int,
                filters: Sequence[lc.Filter], *, chains: Sequence[lc.FilterChain] = ()
                ) -> listener_pb2.Listener:
    """``gateway_<port>`` for a TCP server: one chain, its network ``filters`` (the
    tcp_proxy of the server's route), or the given ``chains`` (one per client address
    range, when routes match on ``sourceSubnet``)."""
    return listener_pb2.Listener(
        name=names.gateway_listener(server_port),
        address=socket(node.ip, bind_port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=list(chains) or [lc.FilterChain(filters=filters)],
    )


def gateway_https_filters(server_port: int, route_name: str) -> list[lc.Filter]:
    """The network filters of a TLS-terminating gateway chain: the gateway's connection
    manager, routing with ``route_name`` over RDS."""
    manager = connection_manager(names.gateway_listener(server_port), rds=route_name,
                                 edge=True)
    return [_hcm_filter(manager)]

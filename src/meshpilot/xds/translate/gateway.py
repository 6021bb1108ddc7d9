"""The ingress gateway's own resources: per Gateway server port it listens on, a
listener, its route configurations, and the SDS secrets of the certificates it presents.

The servers of every Gateway selecting the gateway are merged by port, as Istio does:

- plaintext HTTP servers: one listener routing with ``http.<port>`` (the vhosts of every
  server on the port; ``httpsRedirect`` ones answer 301 to https);
- TCP servers: one listener forwarding each connection with tcp_proxy to the destination
  (or weighted destinations) of the first VirtualService ``tcp`` route bound to the
  server's Gateway whose hosts meet the server's and whose match applies on the port
  (Istio's "TCP Traffic Shifting" task). Plain TCP carries no host, so a port serves the
  first TCP server on it. A match's ``destinationSubnets`` are held against the
  gateway's listen address; a route whose matches name ``sourceSubnet`` gets a chain of
  its own on those source ranges, so each client's connection takes the first route that
  matches its address (:mod:`~meshpilot.xds.translate.subnets`);
- TLS servers: one listener whose filter chains are told apart by SNI. A terminating
  server (SIMPLE, MUTUAL, OPTIONAL_MUTUAL) is one chain presenting its certificate and
  routing with its own route config ``https.<port>.<port name>.<gateway>.<namespace>``
  (Istio's), so a request reaches only the hosts of the server whose certificate and
  client verification its connection went through; on a TLS (not HTTPS) port the chain
  forwards the decrypted connection by a ``tcp`` route, as above. A PASSTHROUGH server is
  one chain per VirtualService ``tls`` route match bound to it, matched on the route's
  ``sniHosts``, forwarding the still-encrypted connection to the route's destination.

A port serves one kind (plaintext HTTP, TCP or TLS): a server of another kind than the
port's first server is left out (Istio refuses that conflict too). An SNI name is served
by the first chain that claims it on a port, as Envoy refuses two chains for one name.

Nothing is dropped silently: every server or route left out, and why, is a
:class:`GatewayProblem` in :attr:`GatewayResources.problems`, for the caller to report
(a missing credential Secret among them: Istio's gateway does not serve that host
either). Pure: no I/O, the same input gives the same resources.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from meshpilot.api.networking import (
    L4MatchAttributes,
    RouteDestination,
    Server,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
    VirtualService,
)
from meshpilot.mesh import index
from meshpilot.mesh.index import labels_match
from meshpilot.mesh.model import MeshSnapshot, Named, ProxyNode
from meshpilot.xds.translate import gateway_tls, listeners, names, pb, subnets
from meshpilot.xds.translate.gateway_tls import (
    CredentialUnavailable,
    ServerMode,
    UnsupportedGatewayTls,
    server_names,
)
from meshpilot.xds.translate.matches import Where, applies
from meshpilot.xds.translate.routes import Ctx, cluster_for
from meshpilot.xds.translate.vhosts import bound_hosts, gateway_vhosts

ANY_SNI = "*"


@dataclass(frozen=True)
class GatewayProblem:
    """A Gateway server, or a route bound to it, that the gateway does not serve."""

    gateway: str  # ns/name of the Gateway
    server: int  # the server's place in spec.servers
    port: int  # its port number
    field: str  # the field at fault, under the server (``tls.credentialName``)
    message: str  # why, and what would be served; never a Secret's value

    def __str__(self) -> str:
        return (f"Gateway {self.gateway} spec.servers[{self.server}].{self.field} "
                f"(port {self.port}): {self.message}")


@dataclass(frozen=True)
class GatewayResources:
    """Everything a gateway serves by itself, and what it leaves out."""

    listeners: tuple[listener_pb2.Listener, ...] = ()
    routes: tuple[route_pb2.RouteConfiguration, ...] = ()
    secrets: tuple[secret_pb2.Secret, ...] = ()
    problems: tuple[GatewayProblem, ...] = ()


@dataclass(frozen=True)
class BoundServer:
    """A server of a Gateway selecting the gateway, and how it is served."""

    ref: str  # ns/name of its Gateway
    index: int  # its place in spec.servers
    server: Server
    mode: ServerMode

    @property
    def pair(self) -> tuple[str, Server]:
        return self.ref, self.server

    def problem(self, field: str, message: str) -> GatewayProblem:
        return GatewayProblem(self.ref, self.index, self.server.port.number, field, message)


def bound_servers(snapshot: MeshSnapshot, node: ProxyNode, problems: list[GatewayProblem]
                  ) -> dict[int, list[BoundServer]]:
    """The servers the gateway ``node`` serves, by port number, in Gateway (namespace,
    name) then server order; a server that cannot be served is added to ``problems``."""
    by_port: dict[int, list[BoundServer]] = {}
    for named in sorted(snapshot.gateways, key=lambda n: (n.namespace, n.name)):
        if node.labels and not labels_match(named.obj.spec.selector, node.labels):
            continue
        ref = f"{named.namespace}/{named.name}"
        for i, server in enumerate(named.obj.spec.servers):
            try:
                mode = gateway_tls.server_mode(server)
            except UnsupportedGatewayTls as exc:
                problems.append(GatewayProblem(ref, i, server.port.number, exc.field,
                                               exc.reason))
                continue
            by_port.setdefault(server.port.number, []).append(BoundServer(ref, i, server, mode))
    return by_port


class _Build:
    """What one :func:`gateway_resources` call gathers."""

    def __init__(self, snapshot: MeshSnapshot, node: ProxyNode) -> None:
        self.snapshot, self.node = snapshot, node
        self.secret_index = gateway_tls.secret_index(snapshot.secrets)
        self.listeners: list[listener_pb2.Listener] = []
        self.routes: dict[str, route_pb2.RouteConfiguration] = {}
        self.secrets: dict[str, secret_pb2.Secret] = {}
        self.problems: list[GatewayProblem] = []

    def result(self) -> GatewayResources:
        return GatewayResources(tuple(self.listeners), tuple(self.routes.values()),
                                tuple(self.secrets[n] for n in sorted(self.secrets)),
                                tuple(self.problems))


class _Claims:
    """The SNI names already served on one port (:data:`ANY_SNI`: a chain for any)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def claim(self, wanted: list[str]) -> tuple[list[str], list[str]]:
        """(the names now this chain's, the names an earlier chain has); ``[]`` wanted
        means any SNI."""
        keys = wanted or [ANY_SNI]
        lost = [n for n in keys if n in self.taken]
        free = [n for n in keys if n not in self.taken]
        self.taken.update(free)
        return free, lost


def gateway_resources(snapshot: MeshSnapshot, node: ProxyNode) -> GatewayResources:
    """The gateway's listeners (one per Gateway server port mapped in
    ``node.gateway_ports``), their route configs, the SDS secrets of the credentials its
    terminating servers name (from ``snapshot.secrets`` in the gateway's namespace), and
    the problems of what it leaves out (see the module docstring)."""
    build = _Build(snapshot, node)
    for port, servers in sorted(bound_servers(snapshot, node, build.problems).items()):
        bind = node.gateway_ports.get(port)
        if bind is None:
            continue
        kept = _one_kind(port, servers, build)
        if kept[0].mode == "http":
            _http_port(build, port, bind, kept)
        elif kept[0].mode == "tcp":
            _tcp_port(build, port, bind, kept)
        else:
            _tls_port(build, port, bind, kept)
    return build.result()


def gateway_secrets(snapshot: MeshSnapshot, node: ProxyNode
                    ) -> tuple[list[secret_pb2.Secret], list[GatewayProblem]]:
    """The SDS secrets (Envoy ``Secret``) of the credentials the gateway's servers name,
    and the credentials it could not find or use (their servers are left out)."""
    built = gateway_resources(snapshot, node)
    return list(built.secrets), [p for p in built.problems
                                 if p.field == CredentialUnavailable.FIELD]


_KINDS = MappingProxyType({"http": "plaintext HTTP", "tcp": "TCP", "terminate": "TLS",
                          "passthrough": "TLS"})


def _one_kind(port: int, servers: list[BoundServer], build: _Build) -> list[BoundServer]:
    first = servers[0]
    kind = _KINDS[first.mode]
    kept = []
    for s in servers:
        if _KINDS[s.mode] == kind:
            kept.append(s)
            continue
        build.problems.append(s.problem("port", (
            f"port {port} already serves {kind} (server {first.index} of Gateway "
            f"{first.ref}); one port serves one of plaintext HTTP, TCP and TLS")))
    return kept


def _http_port(build: _Build, port: int, bind: int, servers: list[BoundServer]) -> None:
    build.listeners.append(listeners.gateway(build.node, port, bind))
    name = names.gateway_route(port)
    build.routes[name] = route_pb2.RouteConfiguration(name=name, virtual_hosts=gateway_vhosts(
        build.snapshot, build.node, port, [s.pair for s in servers]))


def _tcp_port(build: _Build, port: int, bind: int, servers: list[BoundServer]) -> None:
    first, *others = servers
    for s in others:
        build.problems.append(s.problem("port", (
            f"port {port} already serves TCP for server {first.index} of Gateway "
            f"{first.ref}: plain TCP carries no host to tell servers apart, so only the "
            "first is served")))
    chains = [_source_chain(lc.FilterChain(filters=[proxy]), ranges)
              for ranges, proxy in _tcp_route_filters(build, port, first)]
    if chains:
        build.listeners.append(listeners.gateway_tcp(build.node, port, bind, [],
                                                     chains=chains))


SourceRanges = list[subnets.Network] | None
"""The client addresses a chain takes (None: every address no other chain takes)."""


def _source_chain(chain: lc.FilterChain, ranges: SourceRanges) -> lc.FilterChain:
    for net in ranges or ():
        chain.filter_chain_match.source_prefix_ranges.add(
            address_prefix=str(net.network_address), prefix_len=pb.u32(net.prefixlen))
    return chain


def _tcp_route_filters(build: _Build, port: int, s: BoundServer
                       ) -> list[tuple[SourceRanges, lc.Filter]]:
    """tcp_proxy by the first ``tcp`` route that serves the server (see the module
    docstring), per client address range when routes match on ``sourceSubnet``; empty,
    and a problem, when none does."""
    where = Where(build.node.labels, build.node.namespace, port, frozenset({s.ref}))
    picked: list[tuple[list[str] | None, Named[VirtualService], TCPRoute]] = []
    for named, at, route, sources in _tcp_routes(build, s, where):
        if not route.route:
            build.problems.append(s.problem("port", f"VirtualService {at}: the route has "
                                            "no destination; left out"))
            continue
        picked.append((sources, named, route))
        if sources is None:
            break
    if not picked:
        build.problems.append(s.problem("port", (
            f"a {s.server.port.protocol} server forwards connections by a VirtualService "
            "tcp route bound to its Gateway, and none applies on this port: nothing is "
            "served")))
    ranges = subnets.first_match_ranges([sources for sources, _, _ in picked])
    ctx = Ctx(build.snapshot, build.node, where)
    return [(r, tcp_proxy(route.route, named.namespace, ctx))
            for r, (_, named, route) in zip(ranges, picked, strict=True) if r != []]


def _tcp_routes(build: _Build, s: BoundServer, where: Where
                ) -> Iterator[tuple[Named[VirtualService], str, TCPRoute, list[str] | None]]:
    """The ``tcp`` routes of the VirtualServices bound to the server's Gateway whose hosts
    meet the server's, that apply here (no match, or a match that applies), in order,
    each with the ``sourceSubnet`` values its applying matches are limited to (None: a
    match, or no match at all, takes any client)."""
    for named in index.gateway_virtual_services(build.snapshot, {s.ref},
                                                build.node.namespace):
        if not any(True for _ in bound_hosts(named.namespace, named.obj.spec.hosts, [s.pair])):
            continue
        for i, route in enumerate(named.obj.spec.tcp):
            at = f"{named.namespace}/{named.name} spec.tcp[{i}]"
            if not route.match:
                yield named, at, route, None
                continue
            found = [m for m in route.match if _l4_applies(build, m, named.namespace, where)]
            if found:
                sources = [m.source_subnet for m in found if m.source_subnet]
                yield named, at, route, sources if len(sources) == len(found) else None


def _l4_applies(build: _Build, match: L4MatchAttributes | TLSMatchAttributes,
                vs_namespace: str, where: Where) -> bool:
    """Whether a match applies at this gateway: its build-time conditions, and its
    ``destinationSubnets`` held against the gateway's own address (the destination of
    every connection to it)."""
    if match.destination_subnets and not subnets.contains(match.destination_subnets,
                                                          build.node.ip):
        return False
    return applies(match, vs_namespace, where)


def _tls_port(build: _Build, port: int, bind: int, servers: list[BoundServer]) -> None:
    claims = _Claims()
    chains: list[lc.FilterChain] = []
    for s in servers:
        if s.mode == "terminate":
            chains.extend(_terminating_chains(build, port, s, claims))
        else:
            chains.extend(_passthrough_chains(build, port, s, claims))
    if chains:
        build.listeners.append(listeners.gateway_tls(build.node, port, bind, chains))


def _claimed(claims: _Claims, s: BoundServer, build: _Build, wanted: list[str],
             what: str) -> list[str]:
    free, lost = claims.claim(wanted)
    if lost:
        build.problems.append(s.problem("hosts", (
            f"{what}: {', '.join(lost)} already served on port {s.server.port.number} by an "
            "earlier server or route, which keeps it")))
    return free


def _terminating_chains(build: _Build, port: int, s: BoundServer, claims: _Claims
                        ) -> list[lc.FilterChain]:
    """The chain of a SIMPLE / MUTUAL / OPTIONAL_MUTUAL server (on a TLS port, one per
    client address range of its ``tcp`` routes), with its route config and secrets added
    to ``build``; none (and a problem) when it cannot be served."""
    settings = s.server.tls
    assert settings is not None  # a terminating server has tls (server_mode)
    try:
        socket = gateway_tls.downstream_socket(settings)
        secrets = (gateway_tls.credential_secrets(build.secret_index, build.node.namespace,
                                                  settings)
                   if settings.credential_name else [])
    except (UnsupportedGatewayTls, CredentialUnavailable) as exc:
        build.problems.append(s.problem(exc.field, exc.reason))
        return []
    sni = _claimed(claims, s, build, server_names(s.server.hosts), "hosts")
    if not sni:
        return []
    route = _route_name(build, port, s)
    found: list[tuple[SourceRanges, list[lc.Filter]]]
    if s.server.port.protocol.upper() == "TLS":  # decrypted, then forwarded by tcp routes
        found = [(r, [proxy]) for r, proxy in _tcp_route_filters(build, port, s)]
        if not found:
            return []
    else:
        build.routes[route] = route_pb2.RouteConfiguration(
            name=route, virtual_hosts=gateway_vhosts(build.snapshot, build.node, port,
                                                     [s.pair]))
        found = [(None, listeners.gateway_https_filters(port, route))]
    build.secrets.update((secret.name, secret) for secret in secrets)
    chains = []
    for i, (ranges, filters) in enumerate(found):
        chain = lc.FilterChain(name=route if i == 0 else f"{route}.{i}", filters=filters,
                               transport_socket=socket)
        chain.filter_chain_match.server_names.extend(n for n in sni if n != ANY_SNI)
        chains.append(_source_chain(chain, ranges))
    return chains


def _route_name(build: _Build, port: int, s: BoundServer) -> str:
    namespace, _, gateway = s.ref.partition("/")
    name = names.gateway_tls_route(port, s.server.port.name or str(s.index), gateway, namespace)
    return name if name not in build.routes else f"{name}.{s.index}"


# --- passthrough -------------------------------------------------------------------------

_TlsMatch = tuple[Named[VirtualService], str, TLSRoute, TLSMatchAttributes, list[str]]
"""A bound ``tls`` route match: its VirtualService, where it is written (``ns/name
spec.tls[i].match[j]``), the route, the match and the SNI names it serves on the
server."""


def _tls_matches(build: _Build, s: BoundServer, where: Where) -> Iterator[_TlsMatch]:
    """The ``tls`` route matches of the VirtualServices bound to the server's Gateway that
    apply to this port (``destinationSubnets`` included) and whose ``sniHosts`` meet the
    server's hosts."""
    for named in index.gateway_virtual_services(build.snapshot, {s.ref},
                                                where.node_namespace):
        for i, route in enumerate(named.obj.spec.tls):
            for j, match in enumerate(route.match):
                if not _l4_applies(build, match, named.namespace, where):
                    continue
                sni = [h for h, _ in bound_hosts(named.namespace, match.sni_hosts, [s.pair])]
                if sni:
                    at = f"{named.namespace}/{named.name} spec.tls[{i}].match[{j}]"
                    yield named, at, route, match, sni


def _passthrough_chains(build: _Build, port: int, s: BoundServer, claims: _Claims
                        ) -> list[lc.FilterChain]:
    """Istio's TLS passthrough: per bound route match, a chain on its SNI names that
    forwards the connection, not terminated, to the route's destinations."""
    where = Where(build.node.labels, build.node.namespace, port, frozenset({s.ref}))
    ctx = Ctx(build.snapshot, build.node, where)
    chains = []
    for named, at, route, _, sni in _tls_matches(build, s, where):
        if not route.route:
            build.problems.append(s.problem(
                "tls.mode", f"VirtualService {at}: the route has no destination; left out"))
            continue
        free = _claimed(claims, s, build, server_names(sni), f"VirtualService {at}")
        if not free:
            continue
        chain = lc.FilterChain(name=at.replace(" ", "."),
                               filters=[tcp_proxy(route.route, named.namespace, ctx)])
        chain.filter_chain_match.server_names.extend(n for n in free if n != ANY_SNI)
        chains.append(chain)
    if not chains:
        build.problems.append(s.problem("tls.mode", (
            "PASSTHROUGH forwards connections by the SNI of VirtualService tls routes, and "
            "no route bound to this Gateway serves its hosts here: nothing is served")))
    return chains


def tcp_proxy(dests: list[RouteDestination], vs_namespace: str, ctx: Ctx,
              stat_prefix: str | None = None) -> lc.Filter:
    """tcp_proxy to a route's destination, or its weighted destinations (weight 0
    dropped, as for HTTP routes); the sidecars' TCP listeners use it too, with their
    own ``stat_prefix`` for a split."""
    kept = dests if len(dests) == 1 else [d for d in dests if (d.weight or 0) > 0]
    clusters = [cluster_for(d.destination, vs_namespace, ctx) for d in kept]
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=clusters[0] if len(clusters) == 1
                                   else stat_prefix or names.gateway_listener(ctx.where.port))
    if len(clusters) == 1:
        proxy.cluster = clusters[0]
    else:
        weighted = tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight
        proxy.weighted_clusters.clusters.extend(
            weighted(name=c, weight=d.weight or 0) for c, d in zip(clusters, kept, strict=True))
    return lc.Filter(name=names.TCP_PROXY_FILTER, typed_config=pb.pack(proxy))

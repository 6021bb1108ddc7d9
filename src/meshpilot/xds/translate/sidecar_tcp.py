"""A sidecar's outbound TCP and TLS listeners: the mesh's ``tcp`` and ``tls`` routes.

Each service port the node lists in ``tcp_outbound`` (see
:mod:`meshpilot.mesh.tcp_outbound` for why the app connects to ``POD_IP:<local port>``)
gets one listener there, forwarding connections as Istio's sidecar forwards those to the
service's address and port:

- a TCP port (``tcp``, ``mongo``, ``redis``, ...): by the first ``tcp`` route of the mesh
  VirtualService for the host (as this proxy's namespace sees it) that has no match, or a
  match that applies here (``port`` is the service port, ``sourceLabels`` and
  ``sourceNamespace`` this proxy's, ``gateways`` naming ``mesh``); several destinations
  split the connections by weight (tcp_proxy ``weighted_clusters``). No route applies:
  the service itself, ``outbound|<port>||<host>``;
- a TLS or HTTPS port: per ``tls`` route match that applies here, a filter chain for its
  ``sniHosts`` (read from the ClientHello by the TLS inspector) forwarding the still
  encrypted connection to the route's destination; the first match to claim an SNI name
  keeps it (Envoy refuses two chains for one name, Istio keeps the first too). With no
  such match the port forwards everything to the service, as an opaque TCP port; with
  some, a connection whose SNI no chain names is closed, as Istio's sidecar does.

ServiceEntry hosts get the same listeners as Services. A wildcard entry resolved NONE
(``*.wikipedia.org``) has no address to send to, only the name the app's ClientHello
gives: with no ``tls`` route for a name, a chain on the entry's pattern resolves the SNI
and passes the connection through to that name on the entry's port
(:mod:`~meshpilot.xds.translate.passthrough`); an SNI the pattern does not cover is
closed.

``destinationSubnets`` and ``sourceSubnet`` are decided per proxy
(:mod:`~meshpilot.xds.translate.subnets`): every connection at these listeners comes from
the pod's own address (its source) and was made to the listener's address, the pod's
address again (its destination, the address the app connected to). The connections go
out through the ordinary outbound clusters, so mutual TLS to sidecars and the source side
``istio_tcp_*`` series come with them, as for the gateway's TCP servers, whose tcp_proxy
this reuses.

Pure, like the rest of translation; :func:`inputs` is what the listeners are a function
of, for the config builder's memo.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshpilot.api.networking import (
    L4MatchAttributes,
    TLSMatchAttributes,
    TLSRoute,
    VirtualService,
)
from meshpilot.mesh import index
from meshpilot.mesh.model import MeshService, MeshSnapshot, Named, ProxyNode, TcpOutbound
from meshpilot.xds.translate import names, passthrough, pb, subnets, tls
from meshpilot.xds.translate.endpoints import socket
from meshpilot.xds.translate.gateway import tcp_proxy
from meshpilot.xds.translate.matches import Where, applies
from meshpilot.xds.translate.routes import Ctx

_TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})


def listener_name(target: TcpOutbound) -> str:
    """``outbound_tcp|<port>|<host>``: one per service port, on the node's address."""
    return f"outbound_tcp|{target.port}|{target.host}"


def inputs(snapshot: MeshSnapshot, node: ProxyNode) -> Hashable:
    """What :func:`listeners` reads: the node, and per listed service port the service,
    its mesh VirtualService and the services its routes name (compared by equality, and
    the snapshot keeps the objects of what did not change)."""
    services = index.visible_services(snapshot, node)
    parts = []
    for target in node.tcp_outbound:
        service = services.get(target.host)
        vs = index.mesh_virtual_service(snapshot, target.host, node.namespace) \
            if service is not None else None
        deps = tuple(index.service(snapshot, host, vs.namespace)
                     for host in _route_hosts(vs)) if vs is not None else ()
        parts.append((target, service, vs, deps))
    return node, tuple(parts), snapshot.mesh_config


def _route_hosts(vs: Named[VirtualService]) -> list[str]:
    spec = vs.obj.spec
    routes = [*(r.route for r in spec.tcp), *(r.route for r in spec.tls)]
    return sorted({d.destination.host for route in routes for d in route})


def listeners(snapshot: MeshSnapshot, node: ProxyNode) -> list[listener_pb2.Listener]:
    """One listener per service port of ``node.tcp_outbound`` that the node still sees
    (a Service removed since the pod started, or outside its Sidecar's egress hosts,
    gets none: its connections are refused)."""
    services = index.visible_services(snapshot, node)
    out = []
    for target in sorted(node.tcp_outbound, key=lambda t: t.local_port):
        service = services.get(target.host)
        port = service.port(target.port) if service is not None else None
        if service is None or port is None:
            continue
        ctx = Ctx(snapshot, node, Where(node.labels, node.namespace, target.port))
        vs = index.mesh_virtual_service(snapshot, service.host, node.namespace)
        if port.protocol in _TLS_PROTOCOLS:
            chains = _tls_chains(service, target, vs, ctx)
        elif passthrough.is_passthrough(service):
            continue  # a plain TCP connection names no host to pass through to
        else:
            chains = [lc.FilterChain(filters=[_tcp_filter(service, target, vs, ctx)])]
        out.append(_listener(node, target, chains))
    return out


def _listener(node: ProxyNode, target: TcpOutbound, chains: list[lc.FilterChain]
              ) -> listener_pb2.Listener:
    sni = any(chain.filter_chain_match.server_names for chain in chains)
    return listener_pb2.Listener(
        name=listener_name(target),
        address=socket(node.outbound_ip or node.ip, target.local_port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=chains,
        listener_filters=[tls.tls_inspector()] if sni else [],
    )


def _default(service: MeshService, target: TcpOutbound) -> lc.Filter:
    """Everything to the service itself (Istio's opaque TCP default)."""
    cluster = names.outbound_cluster(target.port, None, service.host)
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster)
    return lc.Filter(name=names.TCP_PROXY_FILTER, typed_config=pb.pack(proxy))


def _only_l4(match: L4MatchAttributes | TLSMatchAttributes, vs_namespace: str,
             where: Where, address: str) -> bool:
    """Whether a match applies at this listener of the pod at ``address``, which is both
    the source and the destination of its connections (module docstring)."""
    source = getattr(match, "source_subnet", None)
    if match.destination_subnets and not subnets.contains(match.destination_subnets,
                                                          address):
        return False
    if source and not subnets.contains([source], address):
        return False
    return applies(match, vs_namespace, where)


def _tcp_filter(service: MeshService, target: TcpOutbound,
                vs: Named[VirtualService] | None, ctx: Ctx) -> lc.Filter:
    """tcp_proxy by the first ``tcp`` route that applies, else to the service."""
    for route in vs.obj.spec.tcp if vs is not None else ():
        if not route.route:
            continue
        if not route.match or any(_only_l4(m, vs.namespace, ctx.where, _address(ctx.node))
                                  for m in route.match):
            return tcp_proxy(route.route, vs.namespace, ctx,
                             stat_prefix=listener_name(target))
    return _default(service, target)


def _address(node: ProxyNode) -> str:
    """Where the node's TCP listeners bind: the pod's address."""
    return node.outbound_ip or node.ip


def _tls_matches(vs: Named[VirtualService], where: Where, address: str
                 ) -> Iterator[tuple[str, list[str], TLSRoute]]:
    """(chain name, SNI names, route) of each ``tls`` route match that applies here."""
    for i, route in enumerate(vs.obj.spec.tls):
        for j, match in enumerate(route.match):
            if route.route and match.sni_hosts and _only_l4(match, vs.namespace, where,
                                                            address):
                yield f"{vs.namespace}/{vs.name}.tls[{i}].match[{j}]", match.sni_hosts, route


def _tls_chains(service: MeshService, target: TcpOutbound,
                vs: Named[VirtualService] | None, ctx: Ctx) -> list[lc.FilterChain]:
    """Per applying ``tls`` route match a chain on its SNI names, else one to the
    service (see the module docstring)."""
    chains: list[lc.FilterChain] = []
    taken: set[str] = set()
    matches = _tls_matches(vs, ctx.where, _address(ctx.node)) if vs is not None else ()
    for name, sni, route in matches:
        free = [host for host in dict.fromkeys(sni) if host not in taken]
        if not free:
            continue
        taken.update(free)
        assert vs is not None
        chain = lc.FilterChain(name=name, filters=[tcp_proxy(
            route.route, vs.namespace, ctx, stat_prefix=listener_name(target))])
        chain.filter_chain_match.server_names.extend(free)
        chains.append(chain)
    if passthrough.is_passthrough(service):  # covered names no route took
        return chains if service.host in taken else [
            *chains, _passthrough_chain(service, target, ctx)]
    return chains or [lc.FilterChain(filters=[_default(service, target)])]


def _passthrough_chain(service: MeshService, target: TcpOutbound, ctx: Ctx
                       ) -> lc.FilterChain:
    """A wildcard entry resolved NONE: the SNI names its pattern covers (those no route
    took: a route's exact names are more specific) passed through to that name on the
    entry's port."""
    chain = lc.FilterChain(name=f"passthrough|{target.port}|{service.host}", filters=[
        passthrough.sni_filter(target.port, ctx.snapshot.mesh_config),
        _default(service, target)])
    chain.filter_chain_match.server_names.append(service.host)
    return chain

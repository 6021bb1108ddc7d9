"""Virtual hosts: the sidecar's outbound table and the gateways' tables.

Sidecar domains for service port ``(myapp.default.svc.cluster.local, 8080)``:
the FQDN, ``myapp.default.svc``, ``myapp.default`` and — only for a service in the
proxy's own namespace, as Kubernetes DNS search paths would resolve it — ``myapp``;
each with ``:8080``. The port-less forms are added only for port 80 or when the
service has a single port (so ``http://myapp/`` reaches a one-port service whatever
its port). ServiceEntry hosts get the host as written (plus ``short_names`` from the
snapshot). A host spelling belongs to one service, so a domain is never listed twice:
full names are claimed before short aliases, and otherwise the first service in host
order keeps it.

The sidecar's vhosts are grouped per service (:func:`sidecar_route_tables`): each
service's route config holds its vhosts, and the spellings it owns are its routing
scopes' keys (scoped RDS, keyed by the request host without its port).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from envoy.config.route.v3 import route_components_pb2 as rc

from meshpilot.api.hosts import CLUSTER_DOMAIN, fqdn, host_matches
from meshpilot.api.networking import Server
from meshpilot.mesh import index
from meshpilot.mesh.model import MeshService, MeshSnapshot, ProxyNode
from meshpilot.xds.translate import headers, names
from meshpilot.xds.translate.matches import Where
from meshpilot.xds.translate.routes import Ctx, default_route, http_routes, retry_aggregates
from meshpilot.xds.translate.tunnels import tunnel_vhost

HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC")
TUNNEL_PROTOCOLS = ("TLS", "HTTPS")
"""Ports an app reaches through its sidecar's HTTP proxy with ``CONNECT host:port`` (an
``HTTPS_PROXY`` client): the sidecar ends the tunnel and forwards the app's own TLS to
the service (:mod:`.tunnels`)."""


def _aliases(service: MeshService, node: ProxyNode) -> tuple[list[str], list[str]]:
    """(full names, short aliases) a client may write for the service's host."""
    full = [service.host]
    short: list[str] = []
    suffix = "." + CLUSTER_DOMAIN
    if service.origin == "Service" and service.host.endswith(suffix):
        base = service.host[: -len(suffix)]  # myapp.default
        short += [base + ".svc", base]
        if service.namespace == node.namespace:
            short.append(base.split(".")[0])
    for name in service.short_names:
        if "." in name or service.namespace == node.namespace:
            short.append(name)
    return full, short


def _with_ports(hosts: list[str], port: int, portless: bool) -> list[str]:
    out: list[str] = []
    for h in hosts:
        if portless:
            out.append(h)
        out.append(f"{h}:{port}")
    return out


@dataclass(frozen=True)
class RouteTable:
    """One service's outbound routes: its vhosts and the host spellings that reach them."""

    host: str
    spellings: tuple[str, ...]  # without port: the routing scope keys
    vhosts: tuple[rc.VirtualHost, ...]
    suffixes: tuple[str, ...] = ()  # what follows a spelling in its vhosts' domains
    aggregates: tuple[str, ...] = ()
    """The retry-on-primary aggregate clusters its VirtualService asks for (see
    :mod:`.retry_on_primary`), whether or not a route names them now."""


def _portless(service: MeshService, port: int) -> bool:
    """Whether an HTTP port's vhost takes the bare host too (see the module)."""
    return port == 80 or len(service.ports) == 1


def port_suffixes(service: MeshService, ports: list[int]) -> tuple[str, ...]:
    """What may follow a spelling of ``service`` in an authority its route config
    routes (``""`` for the bare host, ``":8080"``...): exactly its vhosts' domains, so
    that a request for the host at any other port is known to be for none of them and
    goes by the outbound traffic policy (:mod:`.egress`), as Istio sends a known host's
    unlisted port to its passthrough or blackhole route."""
    tunnels = {sp.port for sp in service.ports if sp.protocol in TUNNEL_PROTOCOLS}
    bare = any(p not in tunnels and _portless(service, p) for p in ports)
    return ("",) * bare + tuple(f":{p}" for p in sorted(ports))


def known_authorities(plan: Iterable[Planned]) -> dict[str, tuple[str, ...]]:
    """Every routing scope key of ``plan`` with :func:`port_suffixes` of its service."""
    return {spelling: port_suffixes(service, ports)
            for service, ports, spellings in plan for spelling in spellings}


Planned = tuple[MeshService, list[int], list[str]]
"""A service with HTTP ports: (service, its HTTP ports, the host spellings it owns)."""


def sidecar_plan(snapshot: MeshSnapshot, node: ProxyNode) -> list[Planned]:
    """Services with an HTTP (or TLS, HTTPS: a tunnel's) port, in host order, with the
    spellings each one owns.

    Depends on the node only through its namespace (short names).
    """
    planned: list[tuple[MeshService, list[int], list[str], list[str]]] = []
    services = index.visible_services(snapshot, node)
    for host in sorted(services):
        service = services[host]
        ports = sorted(sp.port for sp in service.ports
                       if sp.protocol in HTTP_PROTOCOLS or sp.protocol in TUNNEL_PROTOCOLS)
        if ports:
            planned.append((service, ports, *_aliases(service, node)))
    claimed: set[str] = set()
    owned: list[list[str]] = [[] for _ in planned]
    for tier in ("full", "short"):
        for i, (_, _, full, short) in enumerate(planned):
            for h in full if tier == "full" else short:
                if h not in claimed:
                    claimed.add(h)
                    owned[i].append(h)
    return [
        (service, ports, spellings)
        for (service, ports, _, _), spellings in zip(planned, owned, strict=True)
        if spellings
    ]


def service_route_table(
    snapshot: MeshSnapshot, node: ProxyNode, service: MeshService, ports: list[int],
    spellings: list[str],
) -> RouteTable:
    """One service's vhosts (one per HTTP port) for ``node``."""
    vhosts = []
    aggregates: set[str] = set()
    vs = index.mesh_virtual_service(snapshot, service.host, node.namespace)
    tunnels = {sp.port for sp in service.ports if sp.protocol in TUNNEL_PROTOCOLS}
    for port in ports:
        ctx = Ctx(snapshot, node, Where(node.labels, node.namespace, port),
                  retry_on_primary=True)
        if port in tunnels:
            vhosts.append(tunnel_vhost(service.host, spellings, vs, ctx))
            continue
        portless = _portless(service, port)
        if vs is not None:
            routes = http_routes(vs, ctx)
            aggregates.update(retry_aggregates(vs, ctx))
        else:
            routes = [default_route(service.host, port, ctx)]
        name = names.vhost(service.host, port)
        domains = _with_ports(spellings, port, portless)
        vhosts.append(headers.attempt_count(
            rc.VirtualHost(name=name, domains=domains, routes=routes)))
    return RouteTable(service.host, tuple(spellings), tuple(vhosts),
                      port_suffixes(service, ports), tuple(sorted(aggregates)))


def sidecar_route_tables(snapshot: MeshSnapshot, node: ProxyNode) -> list[RouteTable]:
    """Per service with an HTTP port, in host order: one vhost per HTTP port."""
    return [
        service_route_table(snapshot, node, service, ports, spellings)
        for service, ports, spellings in sidecar_plan(snapshot, node)
    ]


def sidecar_vhosts(snapshot: MeshSnapshot, node: ProxyNode) -> list[rc.VirtualHost]:
    """One vhost per HTTP (service, port), named ``host:port``, all services together."""
    return [v for table in sidecar_route_tables(snapshot, node) for v in table.vhosts]


def _server_hosts(server: Server, gateway_ns: str) -> list[tuple[str, str]]:
    """Server hosts as (namespace filter, host); ``*`` means any namespace."""
    out = []
    for entry in server.hosts:
        ns, _, host = entry.rpartition("/")
        out.append(("*" if not ns else gateway_ns if ns == "." else ns, host))
    return out


def _intersect(vs_host: str, server_host: str) -> str | None:
    if host_matches(server_host, vs_host):
        return vs_host
    if host_matches(vs_host, server_host):
        return server_host
    return None


def gateway_vhosts(
    snapshot: MeshSnapshot,
    node: ProxyNode,
    port: int,
    servers: Iterable[tuple[str, Server]],
) -> list[rc.VirtualHost]:
    """Vhosts of a gateway route config for the servers (``ns/gateway``, server): one
    per host where a bound VirtualService's hosts meet a server's.

    A server with ``tls.httpsRedirect`` (Istio's behaviour) makes its vhosts answer every
    request with a 301 to the same URL over https (Envoy's ``require_tls: ALL``), and
    gets such a vhost for each of its hosts that no VirtualService routes, so a plain
    ``http://`` request to it is redirected, not refused with 404.
    """
    servers = list(servers)
    refs = {ref for ref, _ in servers}
    where = Where(node.labels, node.namespace, port, frozenset(refs))
    ctx = Ctx(snapshot, node, where)
    vhosts: dict[str, rc.VirtualHost] = {}
    for named in index.gateway_virtual_services(snapshot, refs, node.namespace):
        hosts = [fqdn(h, named.namespace) for h in named.obj.spec.hosts]
        domains = list(bound_hosts(named.namespace, hosts, servers))
        if not domains:
            continue
        routes = http_routes(named, ctx)
        for domain, server in domains:
            vhost = vhosts.get(domain)
            if vhost is None:
                vhost = vhosts[domain] = _gateway_vhost(domain, port, server)
            vhost.routes.extend(routes)
    _add_redirects(vhosts, port, servers)
    return list(vhosts.values())


def _add_redirects(vhosts: dict[str, rc.VirtualHost], port: int,
                   servers: list[tuple[str, Server]]) -> None:
    """A redirect-only vhost for each host of an ``httpsRedirect`` server that no
    VirtualService routes (Istio's gateway does the same)."""
    for _, server in servers:
        if not _redirects(server):
            continue
        for _, host in _server_hosts(server, ""):
            if host not in vhosts:
                vhosts[host] = _gateway_vhost(host, port, server)


def _redirects(server: Server) -> bool:
    return bool(server.tls and server.tls.https_redirect)


def _gateway_vhost(domain: str, port: int, server: Server) -> rc.VirtualHost:
    vhost = headers.attempt_count(rc.VirtualHost(name=names.vhost(domain, port),
                                                 domains=[domain]))
    if _redirects(server):
        vhost.require_tls = rc.VirtualHost.ALL
    return vhost


def bound_hosts(vs_ns: str, vs_hosts: Iterable[str], servers: Iterable[tuple[str, Server]]
                ) -> Iterator[tuple[str, Server]]:
    """Where a VirtualService's hosts (or a TLS route's SNI hosts) meet the hosts of the
    servers (``ns/gateway``, server) it is bound to: each host served, the narrower of
    the two, once, with the first server that serves it. A server host ``ns/host`` takes
    VirtualServices of namespace ``ns`` only (``.``: the Gateway's own)."""
    seen: set[str] = set()
    servers = list(servers)
    for host in vs_hosts:
        for ref, server in servers:
            for ns, server_host in _server_hosts(server, ref.split("/")[0]):
                if ns not in ("*", vs_ns):
                    continue
                hit = _intersect(host, server_host)
                if hit is not None and hit not in seen:
                    seen.add(hit)
                    yield hit, server

"""Pure translation of (mesh snapshot, proxy) into Envoy xDS resources.

No I/O, no clock, no randomness: the same input gives byte-identical resources
(iteration is sorted, ``Any`` payloads are packed deterministically), so the cache
can diff by hash. Names follow Istio; see :mod:`meshpilot.xds.translate.names`.

What a proxy gets:

- ``sidecar`` / ``client``: outbound clusters (+ EDS assignments) for every service
  port and DestinationRule subset; the ``outbound_http_proxy`` listener, whose routes
  are scoped by request host (SRDS): per service with an HTTP port a route config
  ``outbound|<host>`` (one vhost per HTTP port, and per TLS or HTTPS port one for an
  ``HTTPS_PROXY`` client's ``CONNECT`` tunnel: :mod:`~meshpilot.xds.translate.tunnels`)
  and one routing scope per host spelling
  that reaches it, so a change to one service's routes resends that route config only;
  per inbound port an ``inbound_<port>`` listener, an ``inbound|<port>||`` cluster and
  (HTTP) an ``inbound|<port>||`` route config; per TCP or TLS service port its node lists,
  an ``outbound_tcp|<port>|<host>`` listener applying the mesh's ``tcp`` and ``tls``
  routes (:mod:`~meshpilot.xds.translate.sidecar_tcp`); and the outbound traffic policy
  for hosts outside the registry (:mod:`~meshpilot.xds.translate.egress`): two ECDS
  filter configs, ``PassthroughCluster`` and ``BlackHoleCluster``, their route configs
  and scopes.
- ``gateway``: the outbound clusters, and per Gateway server port mapped in
  ``node.gateway_ports`` a ``gateway_<port>`` listener: HTTP servers route with
  ``http.<port>``; TCP servers forward by VirtualService ``tcp`` routes; TLS servers get
  SNI-matched chains terminating TLS (then routing HTTP with a route config per server,
  or on a TLS port forwarding by ``tcp`` routes) or passing it through by VirtualService
  ``tls`` routes, and the SDS secrets of their ``credentialName`` certificates
  (:mod:`~meshpilot.xds.translate.gateway`).
- every listener of a proxy whose node names an access log file writes Istio's default
  TEXT access log lines there (:mod:`~meshpilot.xds.translate.access_log`).
- last, the patches of the EnvoyFilters that select the proxy
  (:mod:`~meshpilot.xds.translate.envoy_filter`).

Not translated yet: multi-cluster
gateway modes (ISTIO_MUTUAL, AUTO_PASSTHROUGH, refused: MP0037), and the fields listed in
:mod:`meshpilot.validation.unapplied_fields` (tunnel/proxy protocol, PASSTHROUGH load
balancing, plain TCP ports of wildcard ServiceEntry hosts resolved NONE, ...),
warned about at apply (MP2016) or refused where ignoring them would weaken security
(MP0046). A field this package starts to read must
leave that table.

Nothing here does I/O or keeps state between calls (import-linter keeps translation away
from the store, the runtime and the server).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from google.protobuf.message import Message

from meshpilot.mesh import index, sidecar_ingress
from meshpilot.mesh.model import InboundPort, MeshSnapshot, ProxyNode
from meshpilot.mesh.protocols import is_tcp
from meshpilot.xds.references import cluster_secret_names
from meshpilot.xds.translate import (
    access_log,
    clusters,
    egress,
    envoy_filter,
    failure_reports,
    ingress_tls,
    listeners,
    names,
    networks,
    retry_on_primary,
    sidecar_tcp,
    telemetry,
    wildcards,
)
from meshpilot.xds.translate.client_credentials import client_credential_secrets
from meshpilot.xds.translate.gateway import GatewayProblem, gateway_resources
from meshpilot.xds.translate.gateway_tls import secret_index
from meshpilot.xds.translate.names import (
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_EXTENSION_CONFIG,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SCOPED_ROUTE,
    TYPE_SECRET,
)
from meshpilot.xds.translate.vhosts import RouteTable, sidecar_route_tables
from meshpilot.xds.translate.workload_security import InboundSecurity, inbound_security

Resources = dict[str, dict[str, Message]]

__all__ = [
    "TYPE_CLUSTER",
    "TYPE_ENDPOINT",
    "TYPE_LISTENER",
    "TYPE_ROUTE",
    "TYPE_SCOPED_ROUTE",
    "TYPE_SECRET",
    "Resources",
    "build_resources",
]


def _add(out: Resources, type_url: str, items: Iterable[Message]) -> None:
    for item in items:
        out[type_url][item.name] = item  # type: ignore[attr-defined]


def _outbound_clusters(out: Resources, snapshot: MeshSnapshot, node: ProxyNode) -> None:
    for cluster, assignment in clusters.outbound(snapshot, node):
        out[TYPE_CLUSTER][cluster.name] = cluster
        if assignment is not None:
            assignment = networks.seen_by(assignment, node.network,
                                          snapshot.mesh_config.networks, node.via_gateway)
            out[TYPE_ENDPOINT][assignment.cluster_name] = assignment


def route_config(table: RouteTable) -> route_pb2.RouteConfiguration:
    """A service's sidecar route config ``outbound|<host>`` (its vhosts)."""
    return route_pb2.RouteConfiguration(
        name=names.outbound_route(table.host), virtual_hosts=table.vhosts
    )


def scopes(table: RouteTable) -> list[scoped_route_pb2.ScopedRouteConfiguration]:
    """One routing scope per host spelling of the service, naming its route config."""
    name = names.outbound_route(table.host)
    return [
        scoped_route_pb2.ScopedRouteConfiguration(
            name=spelling,
            route_configuration_name=name,
            key=scoped_route_pb2.ScopedRouteConfiguration.Key(
                fragments=[
                    scoped_route_pb2.ScopedRouteConfiguration.Key.Fragment(string_key=spelling)
                ]
            ),
        )
        for spelling in table.spellings
    ]


def _outbound_routes(out: Resources, snapshot: MeshSnapshot, node: ProxyNode) -> None:
    """Per service a route config, and per host spelling a scope pointing at it; and
    the outbound traffic policy's clusters, route configs, scopes and filters (ECDS)."""
    known: dict[str, tuple[str, ...]] = {}
    for table in sidecar_route_tables(snapshot, node):
        config = route_config(table)
        out[TYPE_ROUTE][config.name] = config
        _add(out, TYPE_SCOPED_ROUTE, scopes(table))
        _add(out, TYPE_CLUSTER, map(retry_on_primary.aggregate_cluster, table.aggregates))
        known.update((spelling, table.suffixes) for spelling in table.spellings)
    _add(out, TYPE_CLUSTER, egress.clusters(snapshot.mesh_config))
    _add(out, TYPE_ROUTE, egress.route_configs())
    _add(out, TYPE_SCOPED_ROUTE, egress.scopes())
    out[TYPE_EXTENSION_CONFIG] = {e.name: e for e in egress.extension_configs(
        known, egress.outbound_mode(snapshot, node), snapshot.mesh_config)}


def _empty() -> Resources:
    return {
        t: {}
        for t in (TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_EXTENSION_CONFIG, TYPE_LISTENER,
                  TYPE_SCOPED_ROUTE, TYPE_ROUTE)
    }


def node_resources(snapshot: MeshSnapshot, node: ProxyNode, *, retrying: bool = False
                   ) -> Resources:
    """What only ``node`` has: its listeners, inbound clusters and inbound route configs
    (and, for a gateway, its route configs and, under ``TYPE_SECRET``, the SDS secrets
    of the certificates its Gateway servers name). Everything else depends on the node
    through its namespace and labels only (see :mod:`meshpilot.xds.config_builder`).
    What a gateway leaves out, and why, is in :func:`gateway_own`'s problems.
    ``retrying``: the node holds retry-on-primary clusters (its outbound listener counts
    who answered their requests, :func:`telemetry.answered_access_log`)."""
    if node.kind != "gateway":
        out = sidecar_own(node, inbound_security(snapshot, node),
                          wildcards.scope_rules(snapshot, node), retrying=retrying)
        _add(out, TYPE_ROUTE, inbound_routes(snapshot, node))
        _add(out, TYPE_LISTENER, tcp_listeners(snapshot, node))
        return out
    return gateway_own(snapshot, node)[0]


def gateway_own(snapshot: MeshSnapshot, node: ProxyNode
                ) -> tuple[Resources, list[GatewayProblem]]:
    """A gateway's own resources, and the servers it leaves out with why."""
    out = _empty()
    built = gateway_resources(snapshot, node)
    _add(out, TYPE_LISTENER, (telemetry.with_outbound_counting(
        access_log.with_access_log(listener, node.access_log)) for listener in built.listeners))
    _add(out, TYPE_ROUTE, built.routes)
    if built.secrets:
        out[TYPE_SECRET] = {secret.name: secret for secret in built.secrets}
    telemetry.mark_gateway_routes(out, node)
    return out, list(built.problems)


def sidecar_own(node: ProxyNode, security: InboundSecurity,
                wild: wildcards.WildScopes = (), *, retrying: bool = False) -> Resources:
    """A sidecar's (or the mesh proxy's) listeners and inbound clusters (and the clusters
    its JWT filter fetches keys through): a function of the node, what its inbound side
    enforces and the wildcard hosts it routes."""
    out = _empty()
    inbound = [listeners.inbound(node, p, security) for p in _ports(node)]
    if node.report_failures:
        inbound = [failure_reports.with_failure_reports(listener) for listener in inbound]
    built = [listeners.outbound(node, wild), *inbound]
    _add(out, TYPE_LISTENER, (telemetry.with_outbound_counting(
        access_log.with_access_log(listener, node.access_log), retrying=retrying)
        for listener in built))
    _add(out, TYPE_CLUSTER, clusters.inbound(node))
    _add(out, TYPE_CLUSTER, clusters.jwks(security.jwt_rules,
                                          egress.resolver_of(security.dns_resolvers)))
    served = list(ingress_tls.secrets(node, security))  # a Sidecar ingress's credentials
    if served:
        out[TYPE_SECRET] = {secret.name: secret for secret in served}
    return out


def tcp_listeners(snapshot: MeshSnapshot, node: ProxyNode) -> list[listener_pb2.Listener]:
    """The sidecar's outbound TCP and TLS listeners, with its access log."""
    return [access_log.with_access_log(listener, node.access_log)
            for listener in sidecar_tcp.listeners(snapshot, node)]


def _ports(node: ProxyNode) -> list[InboundPort]:
    return sorted(node.inbound, key=lambda p: p.container_port)


def http_inbound_ports(node: ProxyNode) -> list[int]:
    """Container ports whose inbound listener routes over RDS (every HTTP one)."""
    return [p.container_port for p in _ports(node) if not is_tcp(p.protocol)]


def inbound_route(container_port: int, sources: Iterable[str], trust_domain: str
                  ) -> route_pb2.RouteConfiguration:
    """``inbound|<port>||``, its route copied and named for every counted source (see
    :mod:`~meshpilot.xds.translate.telemetry`)."""
    config = listeners.inbound_route(container_port)
    telemetry.count_sources(config, sources, trust_domain)
    return config


def inbound_routes(snapshot: MeshSnapshot, node: ProxyNode) -> list[route_pb2.RouteConfiguration]:
    sources = index.of(snapshot).sources
    return [inbound_route(port, sources, snapshot.trust_domain)
            for port in http_inbound_ports(node)]


def build_resources(snapshot: MeshSnapshot, node: ProxyNode) -> Resources:
    """Every resource ``node`` should have: type URL → resource name → message (the SDS
    secrets of its workload certificate aside: they come from its credential, not from
    the snapshot)."""
    node = index.with_service_protocols(snapshot, node)
    node = sidecar_ingress.applied(snapshot, node)
    node = failure_reports.marked(node, failure_reports.canary_targets(snapshot))
    out = _empty()
    _outbound_clusters(out, snapshot, node)
    if node.kind != "gateway":
        _outbound_routes(out, snapshot, node)
    retrying = any(retry_on_primary.members(name) for name in out[TYPE_CLUSTER])
    for type_url, by_name in node_resources(snapshot, node, retrying=retrying).items():
        out.setdefault(type_url, {}).update(by_name)
    credentials, _ = client_credential_secrets(
        secret_index(snapshot.secrets), node.namespace,
        {n for c in out[TYPE_CLUSTER].values() for n in cluster_secret_names(c)})
    if credentials:
        out.setdefault(TYPE_SECRET, {}).update((s.name, s) for s in credentials)
    envoy_filter.apply_filters(out, node, envoy_filter.selected(snapshot, node))
    return out

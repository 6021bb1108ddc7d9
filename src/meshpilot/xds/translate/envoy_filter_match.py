"""Where an EnvoyFilter patch applies: Istio's match fields read against meshpilot's names.

meshpilot names its resources after Istio where it can (:mod:`.names`), but its sidecar
has one outbound HTTP proxy listener and a route config per service, where Istio has a
listener and a route config per port. The match fields therefore read as follows
(``docs/envoyfilter.md`` says the same for users):

==================================  ==================================================
``context``                         SIDECAR_INBOUND: ``inbound_<port>`` listeners,
                                    ``inbound|<port>||`` clusters and route configs;
                                    SIDECAR_OUTBOUND: ``outbound_http_proxy``, the
                                    ``outbound|...`` clusters and route configs of a
                                    sidecar (or the mesh proxy); GATEWAY: everything of
                                    the ingress gateway; ANY (or none): all of them
``listener.portNumber``             inbound: the container port; gateway: the Gateway
                                    server port; outbound: the HTTP proxy's port (15001)
``listener.name``                   meshpilot's listener name
``listener.filterChain.name``       a chain's name; ``sni``, ``transportProtocol``,
                                    ``applicationProtocols``, ``destinationPort``: its
                                    ``filter_chain_match``
``...filterChain.filter.name``      a chain holding a network filter of that name
``...filter.subFilter.name``        the HTTP filter an insert is relative to, or the one
                                    a MERGE / REMOVE / REPLACE acts on
``routeConfiguration.portNumber``   inbound: the container port; gateway: the server
                                    port; outbound: the virtual hosts of that port of
                                    each service's route config
``routeConfiguration.name``         meshpilot's name; Istio's outbound name (the port,
                                    ``"9080"``) reads as ``portNumber``
``routeConfiguration.vhost.name``   ``host:port`` (outbound and gateway),
                                    ``inbound|http|<port>`` (inbound): as Istio names them
``vhost.domainName``                one of the virtual host's domains
``vhost.route.name`` / ``action``   the route's name (the VirtualService http route's) /
                                    what it does (ROUTE, REDIRECT, DIRECT_RESPONSE, ANY)
``cluster.service/portNumber/       read from the cluster name
subset/name``                       ``outbound|<port>|<subset>|<service>``, as Istio's
==================================  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from meshpilot.api.envoy_filter import (
    ClusterMatch,
    FilterChainMatch,
    ListenerMatch,
    ObjectMatch,
    RouteConfigurationMatch,
    VirtualHostMatch,
)
from meshpilot.mesh.model import ProxyNode
from meshpilot.xds.translate import names

INBOUND = "SIDECAR_INBOUND"
OUTBOUND = "SIDECAR_OUTBOUND"
GATEWAY = "GATEWAY"


@dataclass(frozen=True)
class Place:
    """What a match reads of one resource: its context and port (0: none)."""

    context: str
    port: int = 0


def _context_ok(match: ObjectMatch, place: Place) -> bool:
    wanted = match.context or "ANY"
    return wanted in ("ANY", place.context)


def _number(text: str) -> int:
    return int(text) if text.isdigit() else 0


def listener_place(node: ProxyNode, listener: listener_pb2.Listener) -> Place:
    if node.kind == "gateway":
        return Place(GATEWAY, _number(listener.name.removeprefix("gateway_")))
    if listener.name.startswith("inbound_"):
        return Place(INBOUND, _number(listener.name.removeprefix("inbound_")))
    return Place(OUTBOUND, node.outbound_port)


def cluster_place(node: ProxyNode, cluster: cluster_pb2.Cluster) -> Place:
    if node.kind == "gateway":
        return Place(GATEWAY)
    return Place(INBOUND if cluster.name.startswith("inbound|") else OUTBOUND)


def route_place(node: ProxyNode, config: route_pb2.RouteConfiguration) -> Place:
    """Its context and the one port it serves (0 for a sidecar's outbound route config,
    which serves each port of its service in a virtual host of its own)."""
    return route_name_place(node, config.name)


def route_name_place(node: ProxyNode, name: str) -> Place:
    if node.kind == "gateway":
        head = name.split(".")
        return Place(GATEWAY, _number(head[1]) if len(head) > 1 else 0)
    if name.startswith("inbound|"):
        return Place(INBOUND, _number(name.split("|")[1]))
    return Place(OUTBOUND)


def listener_matches(match: ObjectMatch, node: ProxyNode,
                     listener: listener_pb2.Listener) -> bool:
    place = listener_place(node, listener)
    if not _context_ok(match, place):
        return False
    wanted = match.listener or ListenerMatch()
    if wanted.name is not None and wanted.name != listener.name:
        return False
    if wanted.port_number and wanted.port_number != place.port:
        return False
    chain = wanted.filter_chain
    return chain is None or any(chain_matches(chain, c) for c in listener.filter_chains)


def chain_matches(wanted: FilterChainMatch | None, chain: lc.FilterChain) -> bool:
    if wanted is None:
        return True
    if wanted.name is not None and wanted.name != chain.name:
        return False
    if not _chain_match_ok(wanted, chain.filter_chain_match):
        return False
    named = wanted.filter.name if wanted.filter is not None else None
    return named is None or any(f.name == named for f in chain.filters)


def _chain_match_ok(wanted: FilterChainMatch, match: lc.FilterChainMatch) -> bool:
    """The fields Istio reads of a chain's ``filter_chain_match``: ``sni`` one of its
    server names, ``transportProtocol`` its transport protocol, ``applicationProtocols``
    (comma-separated) one of its ALPN protocols, ``destinationPort`` its port."""
    if wanted.sni is not None and wanted.sni not in match.server_names:
        return False
    if wanted.transport_protocol is not None and \
            wanted.transport_protocol != match.transport_protocol:
        return False
    if wanted.application_protocols is not None and not {
            p.strip() for p in wanted.application_protocols.split(",")} & set(
            match.application_protocols):
        return False
    return wanted.destination_port is None or (
        match.HasField("destination_port")
        and match.destination_port.value == wanted.destination_port)


def cluster_matches(match: ObjectMatch, node: ProxyNode, cluster: cluster_pb2.Cluster) -> bool:
    if not _context_ok(match, cluster_place(node, cluster)):
        return False
    wanted = match.cluster or ClusterMatch()
    if wanted.name is not None and wanted.name != cluster.name:
        return False
    parts = cluster.name.split("|")
    if len(parts) != 4:
        return wanted.port_number is None and wanted.service is None and wanted.subset is None
    port, subset, host = _number(parts[1]), parts[2], parts[3]
    if wanted.port_number is not None and wanted.port_number != port:
        return False
    if wanted.subset is not None and wanted.subset != subset:
        return False
    return wanted.service is None or wanted.service in (host, "*")


def cluster_name_test(match: ObjectMatch, node: ProxyNode) -> Callable[[str], bool]:
    """:func:`cluster_matches` as a test of the cluster's name alone (all it reads),
    made once per patch: a mesh's thousands of cluster names are told apart without a
    message each."""
    wanted = match.cluster or ClusterMatch()
    context = match.context or "ANY"
    gateway = node.kind == "gateway"
    port = None if wanted.port_number is None else str(wanted.port_number)

    def test(name: str) -> bool:
        here = GATEWAY if gateway else INBOUND if name.startswith("inbound|") else OUTBOUND
        if context not in ("ANY", here) or wanted.name not in (None, name):
            return False
        parts = name.split("|")
        if len(parts) != 4:
            return port is None and wanted.service is None and wanted.subset is None
        return port in (None, parts[1]) and wanted.subset in (None, parts[2]) and \
            wanted.service in (None, "*", parts[3])

    return test


def route_name_test(match: ObjectMatch, node: ProxyNode) -> Callable[[str], bool]:
    """Whether a route config of that name may match (its context, name and port, and for
    a sidecar's outbound one the host a ``vhost.name`` names): those that may not need
    not be parsed."""
    wanted = _route_config_wanted(match)
    vhost = wanted.vhost.name if wanted.vhost is not None else None
    host = vhost.rpartition(":")[0] if vhost and ":" in vhost else None

    def test(name: str) -> bool:
        place = route_name_place(node, name)
        if not _context_ok(match, place) or wanted.name not in (None, name):
            return False
        if wanted.port_number and place.port and wanted.port_number != place.port:
            return False
        return host is None or place.context != OUTBOUND or name == names.outbound_route(host)

    return test


def _route_config_wanted(match: ObjectMatch) -> RouteConfigurationMatch:
    """The routeConfiguration match, Istio's outbound name (a port) read as portNumber."""
    wanted = match.route_configuration or RouteConfigurationMatch()
    if wanted.name is not None and wanted.name.isdigit() and wanted.port_number is None:
        wanted = wanted.model_copy(update={"name": None, "port_number": int(wanted.name)})
    return wanted


def route_config_matches(match: ObjectMatch, node: ProxyNode,
                         config: route_pb2.RouteConfiguration) -> bool:
    place = route_place(node, config)
    if not _context_ok(match, place):
        return False
    wanted = _route_config_wanted(match)
    if wanted.name is not None and wanted.name != config.name:
        return False
    if wanted.port_number and place.port and wanted.port_number != place.port:
        return False
    if wanted.port_number and not place.port:  # a sidecar's outbound route config
        return any(vhost_port(v) == wanted.port_number for v in config.virtual_hosts)
    return True


def vhost_port(vhost: rc.VirtualHost) -> int:
    return _number(vhost.name.rpartition(":")[2]) if ":" in vhost.name else 0


def vhost_matches(match: ObjectMatch, vhost: rc.VirtualHost) -> bool:
    wanted = _route_config_wanted(match)
    port = vhost_port(vhost)
    if wanted.port_number and port and port != wanted.port_number:
        return False
    want = wanted.vhost or VirtualHostMatch()
    if want.name is not None and want.name != vhost.name:
        return False
    return want.domain_name is None or want.domain_name in vhost.domains


def _action(route: rc.Route) -> str:
    return {"route": "ROUTE", "redirect": "REDIRECT",
            "direct_response": "DIRECT_RESPONSE"}.get(route.WhichOneof("action") or "", "")


def route_matches(match: ObjectMatch, route: rc.Route) -> bool:
    wanted = _route_config_wanted(match)
    want = wanted.vhost.route if wanted.vhost is not None else None
    if want is None:
        return True
    if want.name is not None and want.name != route.name:
        return False
    return want.action in (None, "ANY") or want.action == _action(route)


def hcm_name_ok(match: ObjectMatch) -> bool:
    """An HTTP_FILTER patch acts in the HTTP connection manager: a filter match, when
    given, must name it."""
    chain = match.listener.filter_chain if match.listener is not None else None
    named = chain.filter.name if chain is not None and chain.filter is not None else None
    return named in (None, names.HCM_FILTER)


def sub_filter(match: ObjectMatch) -> str | None:
    chain = match.listener.filter_chain if match.listener is not None else None
    filt = chain.filter if chain is not None else None
    return filt.sub_filter.name if filt is not None and filt.sub_filter is not None else None


def network_filter_name(match: ObjectMatch) -> str | None:
    chain = match.listener.filter_chain if match.listener is not None else None
    return chain.filter.name if chain is not None and chain.filter is not None else None


def route_name(match: ObjectMatch) -> str | None:
    vhost = match.route_configuration.vhost if match.route_configuration else None
    return vhost.route.name if vhost is not None and vhost.route is not None else None

"""A proxy's xDS resources as one static Envoy bootstrap, for ``envoy --mode validate``.

Envoy's validate mode checks a bootstrap the way a starting Envoy would (every field,
every typed extension config, every cluster a static route names) without binding a
port or opening a connection. A proxy's config is made one by putting its clusters and
listeners in ``static_resources`` with their route configs inlined (RDS as
``route_config``, scoped RDS as ``scoped_route_configurations_list``), so the routes and
their per-filter configs are checked too. Clusters keep EDS and secrets keep SDS over an
ADS stream the bootstrap declares but validate mode never opens: their endpoints and
keys are not what an EnvoyFilter patches.

It is a ``Bootstrap`` message, to be written in protobuf's binary form (a ``.pb`` file,
which Envoy reads as such): a mesh's config as JSON takes seconds to write and as long
for Envoy to read (1,000 services: 14 s of the check's 20, ``benchmarks/envoy_filter_cost.py``).

Pure: the message is returned, not written.
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import json_format
from google.protobuf.message import Message

from meshpilot.xds.translate import names
from meshpilot.xds.translate.envoy_filter import matcher_routes
from meshpilot.xds.translate.names import (
    TYPE_CLUSTER,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SCOPED_ROUTE,
)

ADS_CLUSTER = "meshpilot-validate-ads"
"""The (never contacted) cluster of the bootstrap's ADS stream."""


def _inline_routes(manager: hcm.HttpConnectionManager,
                   routes: Mapping[str, Message], scopes: Mapping[str, Message]) -> None:
    if manager.HasField("rds") and manager.rds.route_config_name in routes:
        name = manager.rds.route_config_name
        manager.ClearField("rds")
        manager.route_config.CopyFrom(routes[name])
    elif manager.HasField("scoped_routes") and scopes:
        scoped = manager.scoped_routes
        scoped.ClearField("scoped_rds")
        listed = scoped.scoped_route_configurations_list
        for scope in scopes.values():
            route = routes.get(scope.route_configuration_name)  # type: ignore[attr-defined]
            if route is None:
                continue
            item = listed.scoped_route_configurations.add()
            item.CopyFrom(scope)
            item.ClearField("route_configuration_name")
            item.route_configuration.CopyFrom(route)


def clusters_named_by(config: Message) -> set[str]:
    """The clusters a route config's routes (those of its virtual hosts' matchers too)
    send or mirror to: what a bootstrap must hold beside it."""
    out: set[str] = set()

    def read(route: rc.Route) -> None:
        if route.HasField("route"):
            action = route.route
            out.update(n for n in (action.cluster,
                                   *(w.name for w in action.weighted_clusters.clusters),
                                   *(m.cluster for m in action.request_mirror_policies)) if n)

    if isinstance(config, route_pb2.RouteConfiguration):
        for vhost in config.virtual_hosts:
            for route in vhost.routes:
                read(route)
            if vhost.HasField("matcher"):
                matcher_routes(vhost.matcher, read)
    return out


def routes_named_by(listener: Message, scopes: Mapping[str, Message]) -> set[str]:
    """The route configs a listener's connection managers name, over RDS or through
    the routing scopes (all of them, for scoped RDS)."""
    out: set[str] = set()
    for chain in listener.filter_chains:  # type: ignore[attr-defined]
        for network_filter in chain.filters:
            if network_filter.name != names.HCM_FILTER:
                continue
            manager = hcm.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            if manager.HasField("rds"):
                out.add(manager.rds.route_config_name)
            elif manager.HasField("scoped_routes"):
                out.update(s.route_configuration_name  # type: ignore[attr-defined]
                           for s in scopes.values())
    return out


def _listener(listener: Message, routes: Mapping[str, Message],
              scopes: Mapping[str, Message]) -> Message:
    copy = type(listener)()
    copy.CopyFrom(listener)
    for chain in copy.filter_chains:  # type: ignore[attr-defined]
        for network_filter in chain.filters:
            if network_filter.name != names.HCM_FILTER:
                continue
            manager = hcm.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            _inline_routes(manager, routes, scopes)
            network_filter.typed_config.Pack(manager)
    return copy


def static_bootstrap(resources: Mapping[str, Mapping[str, Message]], node_id: str
                     ) -> bootstrap_pb2.Bootstrap:
    """The bootstrap holding ``resources`` (type URL → name → message). A route config
    a listener names that is not among them stays fetched over (never opened) ADS, so a
    caller may leave out what it need not have Envoy look at."""
    routes = resources.get(TYPE_ROUTE, {})
    scopes = resources.get(TYPE_SCOPED_ROUTE, {})
    ads = json_format.ParseDict({
        "name": ADS_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3"
                         ".HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": ADS_CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": 9}}}}]}]}}, cluster_pb2.Cluster())
    out = json_format.ParseDict({
        "node": {"id": node_id, "cluster": node_id},
        "dynamic_resources": {"ads_config": {
            "api_type": "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": ADS_CLUSTER}}]}},
    }, bootstrap_pb2.Bootstrap())
    out.static_resources.clusters.append(ads)
    out.static_resources.clusters.extend(resources.get(TYPE_CLUSTER, {}).values())
    out.static_resources.listeners.extend(
        _listener(lsn, routes, scopes) for lsn in resources.get(TYPE_LISTENER, {}).values())
    return out

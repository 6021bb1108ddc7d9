"""A proxy's xDS resources as one static Envoy bootstrap, for ``envoy --mode validate``.

Envoy's validate mode checks a bootstrap the way a starting Envoy would (every field,
every typed extension config, every cluster a static route names) without binding a
port or opening a connection. A proxy's config is made one by putting its clusters and
listeners in ``static_resources`` with their route configs inlined (RDS as
``route_config``, scoped RDS as ``scoped_route_configurations_list``), so the routes and
their per-filter configs are checked too. Clusters keep EDS and secrets keep SDS over an
ADS stream the bootstrap declares but validate mode never opens: their endpoints and
keys are not what an EnvoyFilter patches.

Pure: the JSON is returned, not written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import json_format
from google.protobuf.message import Message

from meshpilot.xds.translate import names
from meshpilot.xds.translate.names import (
    TYPE_CLUSTER,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SCOPED_ROUTE,
)

ADS_CLUSTER = "meshpilot-validate-ads"
"""The (never contacted) cluster of the bootstrap's ADS stream."""


def _json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


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


def _listener(listener: Message, routes: Mapping[str, Message],
              scopes: Mapping[str, Message]) -> dict[str, Any]:
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
    return _json(copy)


def static_bootstrap(resources: Mapping[str, Mapping[str, Message]], node_id: str
                     ) -> dict[str, Any]:
    """The bootstrap (as JSON) holding ``resources`` (type URL → name → message)."""
    routes = resources.get(TYPE_ROUTE, {})
    scopes = resources.get(TYPE_SCOPED_ROUTE, {})
    ads = {"name": ADS_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
           "typed_extension_protocol_options": {
               "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                   "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3"
                            ".HttpProtocolOptions",
                   "explicit_http_config": {"http2_protocol_options": {}}}},
           "load_assignment": {"cluster_name": ADS_CLUSTER, "endpoints": [{"lb_endpoints": [
               {"endpoint": {"address": {"socket_address": {
                   "address": "127.0.0.1", "port_value": 9}}}}]}]}}
    return {
        "node": {"id": node_id, "cluster": node_id},
        "dynamic_resources": {"ads_config": {
            "api_type": "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": ADS_CLUSTER}}]}},
        "static_resources": {
            "clusters": [ads, *(_json(c) for c in resources.get(TYPE_CLUSTER, {}).values())],
            "listeners": [_listener(lsn, routes, scopes)
                          for lsn in resources.get(TYPE_LISTENER, {}).values()],
        },
    }

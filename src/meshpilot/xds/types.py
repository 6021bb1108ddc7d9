"""xDS resource type URLs and the facts of the protocol about them."""

from __future__ import annotations

from types import MappingProxyType

from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"

CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SCOPED_ROUTE = _PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
EXTENSION_CONFIG = _PREFIX + "envoy.config.core.v3.TypedExtensionConfig"
"""ECDS: an HTTP filter's config that a listener names instead of holding it."""

FULL_STATE_TYPES: frozenset[str] = frozenset({CLUSTER, LISTENER, SCOPED_ROUTE})
"""SotW responses of these types carry the complete set; absence means deletion.

They are also the only types with a wildcard subscription (empty names on the first
request; Envoy's SRDS subscription names no scopes and, over SotW, removes every scope a
response leaves out). Every other type (RDS, EDS) is grouped per resource, as in Delta: a
SotW response may carry only some of the subscribed names and the rest stay as they were.
"""

SHORT_NAMES: MappingProxyType[str, str] = MappingProxyType({
    CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", SCOPED_ROUTE: "SRDS", ROUTE: "RDS",
    SECRET: "SDS", EXTENSION_CONFIG: "ECDS",
})

Resources = dict[str, dict[str, Message]]
"""type_url -> resource name -> protobuf message: everything one proxy should have."""


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])

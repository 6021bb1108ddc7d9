"""xDS resource type URLs, the order they are pushed in, and the shape of a proxy's config."""

from __future__ import annotations

from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"

CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SCOPED_ROUTE = _PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"

ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, SCOPED_ROUTE, ROUTE)
"""Make-before-break push order (xds_protocol.rst, "Eventual consistency considerations").

Scoped routes (SRDS) come after the listener whose connection manager fetches them and
before the route configurations they name: Envoy subscribes to a scope's RouteConfiguration
over RDS only once it holds the scope, so the route configuration cannot be sent first;
both are staged in the same phase and the RDS answer goes out as soon as Envoy asks.
"""

FULL_STATE_TYPES: frozenset[str] = frozenset({CLUSTER, LISTENER, SCOPED_ROUTE})
"""SotW responses of these types carry the complete set; absence means deletion.

They are also the only types with a wildcard subscription (empty names on the first
request; Envoy's SRDS subscription names no scopes and, over SotW, removes every scope a
response leaves out). Every other type (RDS, EDS) is grouped per resource, as in Delta: a
SotW response may carry only some of the subscribed names and the rest stay as they were.
"""

SHORT_NAMES: dict[str, str] = {
    CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", SCOPED_ROUTE: "SRDS", ROUTE: "RDS",
}

Resources = dict[str, dict[str, Message]]
"""type_url -> resource name -> protobuf message: everything one proxy should have."""


_RANK = {t: i for i, t in enumerate(ORDER)}


def order_key(type_url: str) -> int:
    """Sort key putting known types in push order and any other type after them."""
    return _RANK.get(type_url, len(ORDER))


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])

"""Resource names, following Istio so its users' habits (and tooling) carry over.

=============================  =============================================
cluster (outbound)             ``outbound|8080|v2|myapp.default.svc.cluster.local``
cluster (inbound)              ``inbound|8080||``
sidecar listener               ``outbound_http_proxy`` (the app's HTTP_PROXY)
sidecar scoped routes (SRDS)   ``outbound_http_proxy``: one scope per host spelling a
                               client may write (``myapp``, ``myapp.default``, ...),
                               named and keyed by that spelling
sidecar route cfg (per svc)    ``outbound|myapp.default.svc.cluster.local``
sidecar virtual host           ``myapp.default.svc.cluster.local:8080``
inbound listener               ``inbound_8080`` (RDS route config ``inbound|8080||``)
gateway listener / route cfg   ``gateway_80`` / ``http.80`` (keyed by Gateway server port)
gateway TLS route cfg          ``https.443.https.public.istio-system`` (one per terminating
                               server: port, port name, Gateway, namespace)
gateway credential (SDS)       ``kubernetes://<credentialName>`` (+ ``-cacert``)
=============================  =============================================

EnvoyFilter match fields (Istio's) read these names: how each maps is in
:mod:`.envoy_filter_match` and docs/envoyfilter.md.
"""

from __future__ import annotations

TYPE_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TYPE_ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPE_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
TYPE_ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
TYPE_SCOPED_ROUTE = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"
TYPE_SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
TYPE_EXTENSION_CONFIG = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"

OUTBOUND_LISTENER = "outbound_http_proxy"
OUTBOUND_SCOPES = "outbound_http_proxy"
"""``scoped_routes.name`` of the sidecar's outbound connection manager."""
OUTBOUND_ROUTE = OUTBOUND_SCOPES  # the name the single outbound route config had
OUTBOUND_STAT_PREFIX = "outbound_http_proxy"

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
ROUTER_FILTER = "envoy.filters.http.router"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"


def outbound_cluster(port: int, subset: str | None, host: str) -> str:
    return f"outbound|{port}|{subset or ''}|{host}"


def outbound_sni(port: int, subset: str | None, host: str) -> str:
    """The SNI a client sends to a mesh service over ISTIO_MUTUAL (Istio's form)."""
    return f"outbound_.{port}_.{subset or ''}_.{host}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def inbound_route(port: int) -> str:
    """The route config of ``inbound_<port>`` (over RDS; shared by every such listener)."""
    return f"inbound|{port}||"


def inbound_listener(port: int) -> str:
    return f"inbound_{port}"


def outbound_route(host: str) -> str:
    """The sidecar's route config for one service (its vhosts, one per HTTP port)."""
    return f"outbound|{host}"


def vhost(host: str, port: int) -> str:
    return f"{host}:{port}"


def gateway_route(port: int) -> str:
    """Route config of a gateway's HTTP servers on Gateway port ``port``."""
    return f"http.{port}"


def gateway_tls_route(port: int, port_name: str, gateway: str, namespace: str) -> str:
    """Route config of one TLS-terminating Gateway server (Istio's ``https.`` name). Each
    such server has its own, so a request can reach only the hosts of the server whose
    certificate (and client verification) its connection went through."""
    return f"https.{port}.{port_name}.{gateway}.{namespace}"


def gateway_listener(port: int) -> str:
    return f"gateway_{port}"

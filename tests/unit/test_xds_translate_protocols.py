"""A port's protocol carried to the data path: HTTP/2 to gRPC and HTTP2 upstreams (outbound
clusters and the inbound cluster to the app), ALPN ``h2`` over auto mTLS, and HTTP/2
accepted by the inbound connection manager."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from meshpilot.mesh.index import with_service_protocols
from meshpilot.mesh.model import (
    Endpoint,
    InboundPort,
    MeshService,
    MeshSnapshot,
    ProxyNode,
    ServicePort,
)
from meshpilot.mesh.protocols import port_protocol
from meshpilot.xds.translate import (
    TYPE_CLUSTER,
    TYPE_LISTENER,
    build_resources,
    http_inbound_ports,
)
from meshpilot.xds.translate.policy import HTTP_OPTIONS_KEY

HOST = "echo.default.svc.cluster.local"
NODE = ProxyNode(id="sidecar~127.10.0.9~echo-v1.default", kind="sidecar", namespace="default",
                 ip="127.10.0.9", inbound=(InboundPort(9000, 40001, "grpc", "GRPC"),
                                           InboundPort(9001, 40002, "api", "HTTP"),
                                           InboundPort(9002, 40003, "tcp", "TCP")))


def _snapshot(protocol: str) -> MeshSnapshot:
    service = MeshService(host=HOST, name="echo", namespace="default",
                          ports=(ServicePort(9090, "p", protocol),))  # type: ignore[arg-type]
    endpoint = Endpoint(host=HOST, service_port=9090, address="127.10.0.9", port=9000,
                        has_sidecar=True, service_account="default")
    return MeshSnapshot(version=1, services={HOST: service}, endpoints={HOST: (endpoint,)})


def _options(cluster: cluster_pb2.Cluster) -> hpo.HttpProtocolOptions:
    out = hpo.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].Unpack(out)
    return out


def _alpns(cluster: cluster_pb2.Cluster) -> list[str]:
    (match,) = cluster.transport_socket_matches
    context = tls_pb2.UpstreamTlsContext()
    assert match.transport_socket.typed_config.Unpack(context)
    return list(context.common_tls_context.alpn_protocols)


def test_istio_protocol_selection_app_protocol_first_then_the_name_prefix():
    assert port_protocol("api", "grpc") == "GRPC"
    assert port_protocol("grpc-api") == "GRPC"
    assert port_protocol("http2") == "HTTP2"
    assert port_protocol("grpc-web") == "HTTP2"  # Istio's GRPCWeb: HTTP/2 upstream
    assert port_protocol("web", "kubernetes.io/h2c") == "HTTP2"
    assert [port_protocol(n) for n in ("mongo", "redis-cache", "mysql")] == ["TCP"] * 3
    assert port_protocol("tcp-db", None) == "TCP"
    assert port_protocol("web") == "HTTP"


def test_grpc_and_http2_service_ports_get_http2_upstream_and_h2_alpn_over_auto_mtls():
    for protocol in ("GRPC", "HTTP2"):
        clusters = build_resources(_snapshot(protocol), NODE)[TYPE_CLUSTER]
        cluster = clusters[f"outbound|9090||{HOST}"]
        assert _options(cluster).explicit_http_config.HasField("http2_protocol_options")
        assert _alpns(cluster) == ["istio-peer-exchange", "istio", "h2"]


def test_http_service_ports_stay_http1_and_offer_no_h2():
    cluster = build_resources(_snapshot("HTTP"), NODE)[TYPE_CLUSTER][f"outbound|9090||{HOST}"]
    assert _options(cluster).explicit_http_config.HasField("http_protocol_options")
    assert _alpns(cluster) == ["istio-peer-exchange", "istio"]


def test_inbound_cluster_to_the_app_speaks_http2_for_grpc_and_follows_the_caller_otherwise():
    clusters = build_resources(_snapshot("GRPC"), NODE)[TYPE_CLUSTER]
    grpc_port = _options(clusters["inbound|9000||"])
    assert grpc_port.explicit_http_config.HasField("http2_protocol_options")
    # a port whose name says nothing: the calling sidecar chose the protocol from the
    # Service port (appProtocol: grpc), so the request's own protocol is kept
    unnamed = _options(clusters["inbound|9001||"]).use_downstream_protocol_config
    assert unnamed.HasField("http_protocol_options")
    assert unnamed.HasField("http2_protocol_options")
    assert HTTP_OPTIONS_KEY not in clusters["inbound|9002||"].typed_extension_protocol_options


def test_inbound_connection_managers_accept_http2_and_http1():
    listeners = build_resources(_snapshot("GRPC"), NODE)[TYPE_LISTENER]
    for name in ("inbound_9000", "inbound_9001"):
        for chain in listeners[name].filter_chains:
            manager = hcm.HttpConnectionManager()
            assert chain.filters[-1].typed_config.Unpack(manager)
            assert manager.codec_type == hcm.HttpConnectionManager.AUTO


def test_tls_and_https_container_ports_are_forwarded_as_bytes():
    """Istio: an inbound port whose protocol is TLS or HTTPS carries the app's own TLS;
    the sidecar forwards the connection (tcp_proxy), it does not parse HTTP in it."""
    node = ProxyNode(id="sidecar~127.10.0.8~web.default", kind="sidecar",
                     namespace="default", ip="127.10.0.8",
                     inbound=(InboundPort(8443, 40008, "https", "HTTPS"),
                              InboundPort(9443, 40009, "tls", "TLS"),
                              InboundPort(8080, 40010, "http", "HTTP")))
    listeners = build_resources(MeshSnapshot(version=1, services={}, endpoints={}), node)[
        TYPE_LISTENER]
    for port in (8443, 9443):
        filters = [f.name for chain in listeners[f"inbound_{port}"].filter_chains
                   for f in chain.filters]
        assert "envoy.filters.network.tcp_proxy" in filters, filters
    assert http_inbound_ports(node) == [8080]


def test_the_service_port_decides_an_inbound_port_whose_name_says_nothing():
    """Istio selects a workload's inbound protocol by the Service port targeting it: an
    unnamed container port behind a ``tcp`` Service port is forwarded as TCP (Istio's
    tcp-echo sample), one behind ``appProtocol: grpc`` speaks HTTP/2 to the app; a node
    the Services say nothing new about is handed back as the same object."""
    plain = ProxyNode(id="sidecar~127.10.0.9~echo-v1.default", kind="sidecar",
                      namespace="default", ip="127.10.0.9",
                      inbound=(InboundPort(9000, 40001, "", "HTTP"),))
    for protocol, expected in (("TCP", "TCP"), ("GRPC", "GRPC"), ("HTTP", "HTTP")):
        snap = _snapshot(protocol)
        seen = with_service_protocols(snap, plain)
        assert seen.inbound[0].protocol == expected
        assert (seen is plain) == (protocol == "HTTP")
    filters = [f.name for chain in build_resources(_snapshot("TCP"), plain)[TYPE_LISTENER][
        "inbound_9000"].filter_chains for f in chain.filters]
    assert "envoy.filters.network.tcp_proxy" in filters
    inbound = build_resources(_snapshot("GRPC"), plain)[TYPE_CLUSTER]["inbound|9000||"]
    options = hpo.HttpProtocolOptions()
    inbound.typed_extension_protocol_options[HTTP_OPTIONS_KEY].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")

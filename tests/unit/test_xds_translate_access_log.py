"""Access logs in Istio's default TEXT format on every listener of a proxy whose node names
a file, asserted on the protobufs: the outbound HTTP proxy, inbound HTTP (every chain) and
TCP ports, the gateway's HTTP and TCP listeners; none when the node names no file; route
configurations untouched (a weight change does not resend listeners)."""

from __future__ import annotations

from dataclasses import replace

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from tests.unit.test_xds_translate_gateway_tcp import ALL_V1, TCP_NODE, TCP_SERVER, with_echo
from tests.unit.test_xds_translate_gateway_tls import gateway, route, snapshot

from meshpilot.mesh.model import (
    InboundPort,
    MeshSnapshot,
    ProxyNode,
    node_from_metadata,
    node_to_metadata,
)
from meshpilot.xds.translate import TYPE_LISTENER, TYPE_ROUTE, build_resources, node_resources
from meshpilot.xds.translate.access_log import (
    ASKED_AUTHORITY_FORMAT,
    FILE_LOGGER,
    ISTIO_TEXT_FORMAT,
)

PATH = "/run/meshpilot/sidecars/reviews-v1-abc.access.log"
SIDECAR = ProxyNode(
    id="sidecar~127.10.0.5~reviews-v1-abc.default", kind="sidecar", namespace="default",
    ip="127.10.0.5", workload="reviews-v1", name="reviews-v1-abc",
    inbound=(InboundPort(9080, 20001, "http"), InboundPort(9000, 20002, "tcp", "TCP")),
    access_log=PATH)
EMPTY = MeshSnapshot(version=1, services={}, endpoints={})

ISTIO_DOCUMENTED = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    '%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    '%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% '
    '%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n')


def file_logs(listener: listener_pb2.Listener) -> list[list[file_pb2.FileAccessLog]]:
    """Per network filter of every chain, its file access loggers (unpacked)."""
    out = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            for message in (hcm.HttpConnectionManager(), tcp_proxy_pb2.TcpProxy()):
                if network_filter.typed_config.Unpack(message):
                    found = []
                    for log in message.access_log:
                        if log.name == FILE_LOGGER:
                            config = file_pb2.FileAccessLog()
                            assert log.typed_config.Unpack(config)
                            found.append(config)
                    out.append(found)
    return out


def test_the_format_is_istios_default_text_format() -> None:
    assert ISTIO_TEXT_FORMAT == ISTIO_DOCUMENTED


def test_the_format_reads_no_credential_header() -> None:
    for secret in ("AUTHORIZATION", "COOKIE", "TOKEN", "PROXY-AUTHORIZATION"):
        assert secret not in ISTIO_TEXT_FORMAT.upper()


def test_every_sidecar_listener_logs_to_the_nodes_file() -> None:
    listeners = node_resources(EMPTY, SIDECAR)[TYPE_LISTENER]
    assert sorted(listeners) == ["inbound_9000", "inbound_9080", "outbound_http_proxy"]
    for name, listener in listeners.items():
        per_filter = file_logs(listener)
        assert per_filter, name
        # PERMISSIVE inbound ports: both the mTLS and the plaintext chain log
        assert len(per_filter) == (1 if name == "outbound_http_proxy" else 2), name
        for found in per_filter:
            (config,) = found
            assert config.path == PATH
            # the outbound proxy's line shows the host the app asked for (test_egress.py)
            expected = ASKED_AUTHORITY_FORMAT if name == "outbound_http_proxy" \
                else ISTIO_TEXT_FORMAT
            assert config.log_format.text_format_source.inline_string == expected


def test_inbound_http_keeps_its_stats_logger_first() -> None:
    listener = node_resources(EMPTY, SIDECAR)[TYPE_LISTENER]["inbound_9080"]
    manager = hcm.HttpConnectionManager()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(manager)
    assert [log.name for log in manager.access_log] == [
        "envoy.access_loggers.stats", FILE_LOGGER]


def test_no_file_no_access_log() -> None:
    listeners = node_resources(EMPTY, replace(SIDECAR, access_log=""))[TYPE_LISTENER]
    for listener in listeners.values():
        assert all(found == [] for found in file_logs(listener))


def test_the_mesh_proxy_logs_too() -> None:
    client = replace(SIDECAR, kind="client", inbound=(), access_log="/run/mesh-proxy.access.log")
    (listener,) = node_resources(EMPTY, client)[TYPE_LISTENER].values()
    assert [[c.path for c in found] for found in file_logs(listener)] == [
        ["/run/mesh-proxy.access.log"]]


def test_gateway_http_and_tcp_listeners_log() -> None:
    path = "/run/ingressgateway.access.log"
    node = replace(TCP_NODE, access_log=path)
    snap = with_echo(snapshot(
        gateway(TCP_SERVER + "  - port: {number: 80, name: http, protocol: HTTP}\n"
                "    hosts: ['*']\n"),
        route('["*"]', ALL_V1, name="tcp-echo"), route('["*"]')))
    listeners = node_resources(snap, node)[TYPE_LISTENER]
    assert sorted(listeners) == ["gateway_31400", "gateway_80"]
    for listener in listeners.values():
        assert [[c.path for c in found] for found in file_logs(listener)] == [[path]]


def test_the_path_travels_in_the_node_metadata() -> None:
    meta = node_to_metadata(SIDECAR)
    assert meta["ACCESS_LOG_FILE"] == PATH
    assert node_from_metadata(SIDECAR.id, meta) == SIDECAR
    del meta["ACCESS_LOG_FILE"]  # a proxy started before access logs: none
    assert node_from_metadata(SIDECAR.id, meta).access_log == ""


def test_route_configs_do_not_change_with_access_logs() -> None:
    """Access logs live in listeners: what a weight change resends (route configs) is
    byte for byte the same with and without them."""
    on = build_resources(EMPTY, SIDECAR)[TYPE_ROUTE]
    off = build_resources(EMPTY, replace(SIDECAR, access_log=""))[TYPE_ROUTE]
    assert {k: v.SerializeToString(deterministic=True) for k, v in on.items()} == {
        k: v.SerializeToString(deterministic=True) for k, v in off.items()}


def test_translation_is_deterministic() -> None:
    a = node_resources(EMPTY, SIDECAR)[TYPE_LISTENER]
    b = node_resources(EMPTY, SIDECAR)[TYPE_LISTENER]
    assert {k: v.SerializeToString() for k, v in a.items()} == {
        k: v.SerializeToString() for k, v in b.items()}

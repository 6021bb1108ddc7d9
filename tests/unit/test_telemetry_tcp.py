"""Inbound TCP telemetry that tells mutual TLS from plaintext: each chain of an inbound
TCP port counts under its own stat prefix, and those counters become the destination's
``istio_tcp_*`` series with the chain's ``connection_security_policy``; the mutual TLS
chain counts per caller, named by its certificate (Istio's "Standard Metrics" page: the
TCP series carry the ``source_*`` labels at the destination)."""

from __future__ import annotations

import re

from envoy.data.accesslog.v3 import accesslog_pb2 as data
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import json_format
from tests.builders import sidecar_node
from xds.type.v3 import typed_struct_pb2

from meshpilot.mesh.model import Endpoint, InboundPort, MeshService, MeshSnapshot
from meshpilot.proxy.stats import KEPT_STATS
from meshpilot.security import WorkloadAuthorization
from meshpilot.telemetry.envoy_stats import (
    STATS_PARAMS,
    InboundTcpStat,
    parse_json,
    split_inbound_tcp_stat,
)
from meshpilot.telemetry.istio import ProxyIdentity, relabel
from meshpilot.xds.translate import listeners
from meshpilot.xds.translate.access_log import file_logger, with_access_log
from meshpilot.xds.translate.workload_security import InboundSecurity

HOST = "echo.default.svc.cluster.local"
NODE = sidecar_node("echo-v1-0123456789-bcdfg", "127.10.0.2", workload="echo-v1",
                    labels={"app": "echo", "version": "v1"},
                    inbound=(InboundPort(9000, 40000, "tcp", "TCP"),))
PEER = "spiffe://cluster.local/ns/default/sa/client"
SHARED = "spiffe://cluster.local/ns/default/sa/default"
MTLS = "meshpilot.inbound_9000.mutual_tls"
OPENED = f"{MTLS}.connections_opened.peer.{PEER}"
CLOSED = f"{MTLS}.connections_closed.peer.{PEER}"
DOC = {"stats": [
    {"name": OPENED, "value": 3},
    {"name": f"{MTLS}.received_bytes.peer.{PEER}", "value": 30},
    {"name": f"{MTLS}.sent_bytes.peer.{PEER}", "value": 40},
    {"name": CLOSED, "value": 2},
    {"name": f"{MTLS}.connections_opened.peer.{SHARED}", "value": 4},
    {"name": "tcp.inbound_9000.none.downstream_cx_total", "value": 1},
    # the mTLS chain's own counters, not split by caller (proxies configured before)
    {"name": "tcp.inbound_9000.mutual_tls.downstream_cx_total", "value": 9},
    {"name": f"{MTLS}.connections_closed", "value": 9},
    # the cluster cannot tell the chains apart: not reported at the destination
    {"name": "cluster.inbound|9000||.upstream_cx_total", "value": 4},
]}


def _proxies(mode: str) -> list[tcp_proxy_pb2.TcpProxy]:
    security = InboundSecurity("cluster.local", ((9000, mode),), WorkloadAuthorization())
    listener = listeners.inbound(NODE, NODE.inbound[0], security)
    out = []
    for chain in listener.filter_chains:
        proxy = tcp_proxy_pb2.TcpProxy()
        assert chain.filters[-1].typed_config.Unpack(proxy)
        out.append(proxy)
    return out


def _counters(proxy: tcp_proxy_pb2.TcpProxy) -> list[tuple[str, list[str], str]]:
    """(log type filter, counter names, scope) of each stats logger of ``proxy``."""
    out = []
    for log in proxy.access_log:
        typed = typed_struct_pb2.TypedStruct()
        assert log.typed_config.Unpack(typed)
        config = json_format.MessageToDict(typed.value)
        types = ",".join(str(t) for t in log.filter.log_type_filter.types)
        out.append((types, [c["stat"]["name"] for c in config["counters"]],
                    config["stats_scope"]["prefix"]))
    return out


def test_each_chain_of_an_inbound_tcp_port_counts_apart():
    mtls, plaintext = _proxies("PERMISSIVE")
    assert (mtls.stat_prefix, plaintext.stat_prefix) == ("inbound_9000.mutual_tls",
                                                         "inbound_9000.none")
    assert all(p.cluster == "inbound|9000||" for p in (mtls, plaintext))
    # plaintext: the tcp_proxy's own counters, and one logger for the closes
    assert _counters(plaintext) == [("", ["connections_closed"],
                                     "meshpilot.inbound_9000.none")]
    assert not plaintext.access_log_options.flush_access_log_on_connected
    # mutual TLS: per caller, counted when connected (1) and when ended (3)
    assert _counters(mtls) == [
        ("1", ["connections_opened"], MTLS),
        ("3", ["connections_closed", "received_bytes", "sent_bytes"], MTLS)]
    assert mtls.access_log_options.flush_access_log_on_connected
    # connected once the handshake named the caller, so the connect count knows it
    assert mtls.upstream_connect_mode == tcp_proxy_pb2.ON_DOWNSTREAM_TLS_HANDSHAKE
    assert mtls.max_early_data_bytes.value > 0
    assert plaintext.upstream_connect_mode == tcp_proxy_pb2.IMMEDIATE
    assert [p.stat_prefix for p in _proxies("STRICT")] == ["inbound_9000.mutual_tls"]
    assert [p.stat_prefix for p in _proxies("DISABLE")] == ["inbound_9000.none"]


def test_the_chains_counters_are_kept_and_scraped():
    wanted = re.compile(STATS_PARAMS["filter"])
    kept = [re.compile(r) for r in KEPT_STATS]
    for name in (OPENED, CLOSED, "tcp.inbound_9000.none.downstream_cx_tx_bytes_total",
                 "meshpilot.inbound_9000.none.connections_closed"):
        assert wanted.search(name), name
        assert any(r.fullmatch(name) for r in kept), name
    assert not any(r.fullmatch("tcp.inbound_9000.mutual_tls.downstream_cx_total")
                   for r in kept)
    assert split_inbound_tcp_stat(CLOSED) == InboundTcpStat(9000, "mutual_tls",
                                                            "connections_closed", PEER)
    assert split_inbound_tcp_stat("tcp.inbound_9000.mutual_tls.idle_timeout") is None


def test_destination_tcp_series_name_the_caller_over_mutual_tls():
    """The caller's certificate names its service account: one workload runs as
    ``client`` (its labels are known), several as ``default`` (only the namespace and
    principal are); plaintext callers are unknown, as Istio reports them."""
    svc = MeshService(host=HOST, name="echo", namespace="default", ports=())
    snapshot = MeshSnapshot(version=1, services={HOST: svc}, endpoints={HOST: (
        Endpoint(HOST, 9000, "127.10.0.2", 9000, {"app": "echo"}, workload="echo-v1",
                 has_sidecar=True, service_account="default"),
        Endpoint(HOST, 9000, "127.10.0.4", 9000, {"app": "client", "version": "v3"},
                 workload="client-v3", has_sidecar=True, service_account="client"))})
    points = list(relabel(ProxyIdentity.from_node(NODE), NODE, parse_json(DOC), snapshot))
    got = {(p.metric, dict(p.labels)["connection_security_policy"],
            dict(p.labels)["source_principal"]): p for p in points}
    assert {k: p.value for k, p in got.items()} == {
        ("istio_tcp_connections_opened_total", "mutual_tls", PEER): 3,
        ("istio_tcp_received_bytes_total", "mutual_tls", PEER): 30,
        ("istio_tcp_sent_bytes_total", "mutual_tls", PEER): 40,
        ("istio_tcp_connections_closed_total", "mutual_tls", PEER): 2,
        ("istio_tcp_connections_opened_total", "mutual_tls", SHARED): 4,
        ("istio_tcp_connections_opened_total", "none", "unknown"): 1,
    }
    mtls = dict(got[("istio_tcp_connections_opened_total", "mutual_tls", PEER)].labels)
    assert mtls["reporter"] == "destination"
    assert mtls["destination_principal"] == "spiffe://cluster.local/ns/default/sa/default"
    assert mtls["destination_service"] == HOST
    assert (mtls["source_workload"], mtls["source_app"], mtls["source_version"]) == (
        "client-v3", "client", "v3")
    assert mtls["source_workload_namespace"] == "default"
    shared = dict(got[("istio_tcp_connections_opened_total", "mutual_tls", SHARED)].labels)
    assert shared["source_workload"] == "unknown"  # echo-v1 and the mesh proxy share it
    assert shared["source_workload_namespace"] == "default"
    plain = dict(got[("istio_tcp_connections_opened_total", "none", "unknown")].labels)
    assert plain["destination_principal"] == "unknown"
    assert plain["source_workload"] == "unknown"


def test_the_istio_format_file_log_still_writes_one_line_per_connection():
    """The mTLS chain's tcp_proxy also logs when its upstream connects (for the per-caller
    count); Istio's TEXT access log keeps one line per connection, written when it ends
    (Istio's "Envoy Access Logs" page shows one line per TCP connection)."""
    only = file_logger("/tmp/x.log", at_end_only=True).filter.log_type_filter
    assert only.exclude
    assert set(only.types) == {data.TcpUpstreamConnected, data.TcpPeriodic}
    security = InboundSecurity("cluster.local", ((9000, "PERMISSIVE"),),
                               WorkloadAuthorization())
    listener = with_access_log(listeners.inbound(NODE, NODE.inbound[0], security),
                               "/tmp/x.log")
    mtls = tcp_proxy_pb2.TcpProxy()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(mtls)
    (file_log,) = [log for log in mtls.access_log if log.name == "envoy.access_loggers.file"]
    assert file_log.filter.log_type_filter == only
    # a tcp_proxy elsewhere that asks to log at connect (the east-west gateway) does so
    assert not file_logger("/tmp/x.log").HasField("filter")

"""Inbound TCP telemetry that tells mutual TLS from plaintext: each chain of an inbound
TCP port counts under its own stat prefix, and those counters become the destination's
``istio_tcp_*`` series with the chain's ``connection_security_policy``."""

from __future__ import annotations

import re

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from tests.builders import sidecar_node

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
from meshpilot.xds.translate.workload_security import InboundSecurity

HOST = "echo.default.svc.cluster.local"
NODE = sidecar_node("echo-v1-0123456789-bcdfg", "127.10.0.2", workload="echo-v1",
                    labels={"app": "echo", "version": "v1"},
                    inbound=(InboundPort(9000, 40000, "tcp", "TCP"),))
OPENED = "tcp.inbound_9000.mutual_tls.downstream_cx_total"
CLOSED = "meshpilot.inbound_9000.mutual_tls.connections_closed"
DOC = {"stats": [
    {"name": OPENED, "value": 3},
    {"name": "tcp.inbound_9000.mutual_tls.downstream_cx_rx_bytes_total", "value": 30},
    {"name": "tcp.inbound_9000.mutual_tls.downstream_cx_tx_bytes_total", "value": 40},
    {"name": CLOSED, "value": 2},
    {"name": "tcp.inbound_9000.none.downstream_cx_total", "value": 1},
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


def test_each_chain_of_an_inbound_tcp_port_counts_apart():
    mtls, plaintext = _proxies("PERMISSIVE")
    assert (mtls.stat_prefix, plaintext.stat_prefix) == ("inbound_9000.mutual_tls",
                                                         "inbound_9000.none")
    assert all(p.cluster == "inbound|9000||" and len(p.access_log) == 1
               for p in (mtls, plaintext))
    assert [p.stat_prefix for p in _proxies("STRICT")] == ["inbound_9000.mutual_tls"]
    assert [p.stat_prefix for p in _proxies("DISABLE")] == ["inbound_9000.none"]


def test_the_chains_counters_are_kept_and_scraped():
    wanted = re.compile(STATS_PARAMS["filter"])
    kept = [re.compile(r) for r in KEPT_STATS]
    for name in (OPENED, CLOSED, "tcp.inbound_9000.none.downstream_cx_tx_bytes_total"):
        assert wanted.search(name), name
        assert any(r.fullmatch(name) for r in kept), name
    assert split_inbound_tcp_stat(CLOSED) == InboundTcpStat(9000, "mutual_tls",
                                                            "connections_closed")
    assert split_inbound_tcp_stat("tcp.inbound_9000.mutual_tls.idle_timeout") is None


def test_destination_tcp_series_say_how_the_connections_came():
    svc = MeshService(host=HOST, name="echo", namespace="default", ports=())
    snapshot = MeshSnapshot(version=1, services={HOST: svc}, endpoints={HOST: (
        Endpoint(HOST, 9000, "127.10.0.2", 9000, {"app": "echo"}, workload="echo-v1"),)})
    points = list(relabel(ProxyIdentity.from_node(NODE), NODE, parse_json(DOC), snapshot))
    got = {(p.metric, dict(p.labels)["connection_security_policy"]): p for p in points}
    assert {k: p.value for k, p in got.items()} == {
        ("istio_tcp_connections_opened_total", "mutual_tls"): 3,
        ("istio_tcp_received_bytes_total", "mutual_tls"): 30,
        ("istio_tcp_sent_bytes_total", "mutual_tls"): 40,
        ("istio_tcp_connections_closed_total", "mutual_tls"): 2,
        ("istio_tcp_connections_opened_total", "none"): 1,
    }
    mtls = dict(got[("istio_tcp_connections_opened_total", "mutual_tls")].labels)
    assert mtls["reporter"] == "destination"
    assert mtls["destination_principal"] == "spiffe://cluster.local/ns/default/sa/default"
    assert mtls["destination_service"] == HOST
    assert mtls["source_workload"] == "unknown"
    plain = dict(got[("istio_tcp_connections_opened_total", "none")].labels)
    assert plain["destination_principal"] == "unknown"

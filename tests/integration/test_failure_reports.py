"""A real Envoy streams every answer of a canary's sidecar to the control plane.

The sidecars of a Canary's target workload carry Envoy's gRPC access logger
(``envoy.access_loggers.http_grpc``, Envoy's access log service protocol), unbatched;
the control plane serves the service beside xDS, counts the answers and failures per
workload and tells the delivery loop which workload failed a request, so fail-fast
judges on arrival, on those counts. Here a real Envoy, with the very logger translation
gives a canary sidecar, answers 200s and 503s: all are counted, as they happen, under the
workload its node metadata names, and only the 503s step the rollout.

The reports are authenticated: the node Envoy sends at the start of its access log
stream (the one its bootstrap gives it, ``proxy.bootstrap``) carries a credential derived
from the proxy's xDS token. A forged gRPC client that names the same node without it, or
with another node's, is refused (UNAUTHENTICATED) and its reports are dropped and counted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import json_format
from tests.builders import sidecar_node, static_cluster, static_envoy_config

from meshpilot.mesh.model import ProxyNode, node_to_metadata
from meshpilot.proxy.bootstrap import REPORT_TOKEN_KEY, XDS_CLUSTER, bootstrap, report_token
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.telemetry.failure_reports import (
    SERVICE,
    FailureReports,
    ReportedCounts,
    report_verifier,
)
from meshpilot.xds import XdsServer
from meshpilot.xds.translate.failure_reports import failure_reporter

pytestmark = pytest.mark.timeout(60)

NODE = sidecar_node("myapp-7d9f-abcde", "127.0.0.1", labels={"app": "myapp"},
                    workload="myapp")


def canary_sidecar_config(listen: int, xds_port: int, tokens: ProxyTokens) -> dict:
    """One listener: ``/ok`` answered 200 by Envoy itself, anything else routed to a
    port nobody listens on (503); the failure reporter on its connection manager; the
    node as the bootstrap writes it for a proxy with its xDS token."""
    config = static_envoy_config(listen, upstream_port=free_port())
    config["node"] = bootstrap(NODE, xds_host="127.0.0.1", xds_port=xds_port,
                               xds_token=tokens.for_proxy(NODE))["node"]
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    manager["route_config"]["virtual_hosts"][0]["routes"].insert(0, {
        "match": {"prefix": "/ok"}, "direct_response": {"status": 200}})
    manager["access_log"] = [json_format.MessageToDict(failure_reporter())]
    xds = static_cluster(XDS_CLUSTER, xds_port)
    xds["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                     "HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
    config["static_resources"]["clusters"].append(xds)
    return config


def test_every_answer_is_counted_and_failures_reported_as_they_happen(tmp_path: Path) -> None:
    tokens = ProxyTokens(b"k" * 32)
    reports = FailureReports(report_verifier(tokens.for_proxy))
    seen: list[tuple[str, str, int, float]] = []
    lock = threading.Lock()

    def subscriber(namespace: str, workload: str, failed: int) -> None:
        with lock:
            seen.append((namespace, workload, failed, time.monotonic()))

    reports.subscribe(subscriber)
    server = XdsServer(authenticate=lambda node, meta: None, services=(reports.handler(),))
    xds_port = server.start()
    listen = free_port()
    try:
        with EnvoyProcess(canary_sidecar_config(listen, xds_port, tokens), name="canary",
                          work_dir=tmp_path):
            wait_port("127.0.0.1", listen, timeout=10)
            with httpx.Client(base_url=f"http://127.0.0.1:{listen}", trust_env=False,
                              timeout=5) as client:
                assert [client.get("/ok").status_code for _ in range(3)] == [200] * 3
                answered = []
                for _ in range(2):
                    assert client.get("/").status_code == 503
                    answered.append(time.monotonic())
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    with lock:
                        if sum(n for _, _, n, _ in seen) >= 2:
                            break
                    time.sleep(0.01)
                for _ in range(3):
                    assert client.get("/ok").status_code == 200
                time.sleep(0.5)  # time enough for a wrongly reported 200 to arrive
    finally:
        server.stop()
    with lock:
        got = list(seen)
    assert {(ns, w) for ns, w, _, _ in got} == {("default", "myapp")}
    assert sum(n for _, _, n, _ in got) == 2, got
    # unbatched: the first report does not wait for Envoy's 1 s default flush
    assert got[0][3] - answered[0] < 0.5, (got, answered)
    counts = reports.counts()
    assert (counts.accepted, counts.rejected, counts.rejected_streams) == (2, 0, 0), counts
    assert counts.answers == 8, counts
    assert reports.reported("default", "myapp") == (8, 2)
    assert reports.reported("default", "myapp-primary") is None


def forged(node: ProxyNode, token: str | None,
           entries: int | list[int]) -> als_pb2.StreamAccessLogsMessage:
    """What a local process could send: ``node``'s own metadata, with ``token``."""
    meta = node_to_metadata(node)
    if token is not None:
        meta[REPORT_TOKEN_KEY] = token
    message = als_pb2.StreamAccessLogsMessage()
    message.identifier.node.id = node.id
    message.identifier.node.metadata.update(meta)
    message.identifier.log_name = "meshpilot-failures"
    for code in ([500] * entries if isinstance(entries, int) else entries):
        message.http_logs.log_entry.add().response.response_code.value = code
    return message


def send(port: int, *messages: als_pb2.StreamAccessLogsMessage) -> None:
    """One access log stream carrying ``messages``, as Envoy opens one."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = channel.stream_unary(
            f"/{SERVICE}/StreamAccessLogs",
            request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
            response_deserializer=als_pb2.StreamAccessLogsResponse.FromString)
        stream(iter(messages), timeout=10)


class AdminCounters:
    """The live read of the sidecars' counters, as the fallback sees it."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def live_counts(self, namespace: str, workload: str) -> tuple[int, int] | None:
        self.asked.append((namespace, workload))
        return (40, 3)


def test_fail_fast_judges_on_the_reported_counts_once_a_workload_has_reported() -> None:
    """Successes and failures (500 and above, as the ``5xx`` of the admin counters)
    are counted per workload across its streams; a subscriber hears only of failures.
    The judgement's counts come from the reports once the workload has reported (no
    read of its sidecars), from the live read before that and for other workloads."""
    tokens = ProxyTokens(b"k" * 32)
    reports = FailureReports(report_verifier(tokens.for_proxy))
    seen: list[tuple[str, str, int]] = []
    reports.subscribe(lambda ns, workload, n: seen.append((ns, workload, n)))
    admin = AdminCounters()
    counts = ReportedCounts(reports, admin)
    server = XdsServer(authenticate=lambda node, meta: None, services=(reports.handler(),))
    port = server.start()
    genuine = report_token(tokens.for_proxy(NODE))
    try:
        assert counts.live_counts("default", "myapp") == (40, 3)  # nothing reported yet
        send(port, forged(NODE, genuine, [200, 200, 404]))
        assert seen == []  # no failure: nothing to step
        assert counts.live_counts("default", "myapp") == (3, 0)
        send(port, forged(NODE, genuine, [503, 200]), forged(NODE, genuine, [500, 0, 499]))
        second = sidecar_node("myapp-7d9f-fghij", "127.0.0.3", labels={"app": "myapp"},
                              workload="myapp")
        send(port, forged(second, report_token(tokens.for_proxy(second)), [502]))
    finally:
        server.stop()
    assert counts.live_counts("default", "myapp") == (9, 3)
    assert seen == [("default", "myapp", 1), ("default", "myapp", 1), ("default", "myapp", 1)]
    assert counts.live_counts("default", "other") == (40, 3)
    assert admin.asked == [("default", "myapp"), ("default", "other")]
    assert reports.counts().answers == 9 and reports.counts().accepted == 3


@pytest.mark.parametrize("token", [
    None, "", "0" * 64, "another node's", "the xDS token itself"])
def test_a_forged_report_is_refused_dropped_and_counted(token: str | None) -> None:
    tokens = ProxyTokens(b"k" * 32)
    other = sidecar_node("other-1", "127.0.0.2", labels={"app": "other"}, workload="other")
    presented = {"another node's": report_token(tokens.for_proxy(other)),
                 "the xDS token itself": tokens.for_proxy(NODE)}.get(token, token)
    reports = FailureReports(report_verifier(tokens.for_proxy))
    seen: list[tuple[str, str, int]] = []
    reports.subscribe(lambda ns, workload, n: seen.append((ns, workload, n)))
    server = XdsServer(authenticate=lambda node, meta: None, services=(reports.handler(),))
    port = server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = channel.stream_unary(
                f"/{SERVICE}/StreamAccessLogs",
                request_serializer=als_pb2.StreamAccessLogsMessage.SerializeToString,
                response_deserializer=als_pb2.StreamAccessLogsResponse.FromString)
            with pytest.raises(grpc.RpcError) as refused:
                stream(iter([forged(NODE, presented, 3), forged(NODE, presented, 2)]),
                       timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # the genuine credential on the same port is admitted: the refusal is its own
            genuine = report_token(tokens.for_proxy(NODE))
            stream(iter([forged(NODE, genuine, 1)]), timeout=10)
    finally:
        server.stop()
    assert seen == [("default", "myapp", 1)]
    counts = reports.counts()
    assert (counts.accepted, counts.rejected, counts.rejected_streams) == (1, 3, 1), counts
    assert reports.reported("default", "myapp") == (1, 1)  # the refused stream counts nothing

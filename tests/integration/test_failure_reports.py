"""A real Envoy streams the failed requests of a canary's sidecar to the control plane.

The sidecars of a Canary's target workload carry Envoy's gRPC access logger
(``envoy.access_loggers.http_grpc``, Envoy's access log service protocol) filtered to
answers of 500 and above and unbatched; the control plane serves the service beside
xDS and tells the delivery loop which workload failed a request, so fail-fast judges on
arrival. Here a real Envoy, with the very logger translation gives a canary sidecar,
answers 200s and 503s: only the 503s are reported, as they happen, under the workload its
node metadata names.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from tests.builders import sidecar_node, static_cluster, static_envoy_config

from meshpilot.mesh.model import node_to_metadata
from meshpilot.proxy.bootstrap import XDS_CLUSTER
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.telemetry.failure_reports import FailureReports
from meshpilot.xds import XdsServer
from meshpilot.xds.translate.failure_reports import failure_reporter

pytestmark = pytest.mark.timeout(60)


def canary_sidecar_config(listen: int, xds_port: int) -> dict:
    """One listener: ``/ok`` answered 200 by Envoy itself, anything else routed to a
    port nobody listens on (503); the failure reporter on its connection manager."""
    config = static_envoy_config(listen, upstream_port=free_port())
    node = sidecar_node("myapp-7d9f-abcde", "127.0.0.1", labels={"app": "myapp"},
                        workload="myapp")
    config["node"] = {"id": node.id, "cluster": "myapp.default",
                      "metadata": node_to_metadata(node)}
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


def test_only_failed_requests_are_reported_as_they_happen(tmp_path: Path) -> None:
    reports = FailureReports()
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
        with EnvoyProcess(canary_sidecar_config(listen, xds_port), name="canary",
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

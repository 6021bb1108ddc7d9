"""A real mesh for end-to-end tests: control plane, Envoy proxies, pods, real requests.

``mesh`` is a running control plane (with its mesh proxy, ingress gateway and local
runtime). ``mesh.apply(yaml)`` goes through the API like ``meshpilot apply``;
``mesh.converge()`` waits until every Deployment is ready and every proxy has ACKed the
latest mesh version; ``mesh.http`` is an HTTP client whose proxy is the mesh proxy, so
``mesh.http.get("http://myapp:8080/")`` is a request from inside the mesh.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ControlPlane

PYTHON = sys.executable


def demo_deployment(name: str, version: str, *, app: str = "myapp", namespace: str = "default",
                    replicas: int = 1, args: str = "", port: int = 8080) -> str:
    """A Deployment running the demo app (`python -m meshpilot.demoapp`)."""
    extra = "".join(f", {json.dumps(a)}" for a in args.split())  # args are strings
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {app}, version: {version}}}}}
          template:
            metadata: {{labels: {{app: {app}, version: {version}}}}}
            spec:
              containers:
              - name: app
                command: [{PYTHON}, -m, meshpilot.demoapp]
                args: [--version, {version}{extra}]
                ports: [{{name: http, containerPort: {port}}}]
                readinessProbe:
                  httpGet: {{path: /healthz, port: http}}
                  periodSeconds: 1
        """)


def service(name: str = "myapp", *, app: str | None = None, namespace: str = "default",
            port: int = 8080) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          selector: {{app: {app or name}}}
          ports: [{{name: http, port: {port}, targetPort: http}}]
        """)


def subsets_rule(host: str = "myapp", versions: tuple[str, ...] = ("v1", "v2"),
                 namespace: str = "default", traffic_policy: str = "") -> str:
    subsets = "\n".join(f"  - {{name: {v}, labels: {{version: {v}}}}}" for v in versions)
    policy = textwrap.indent(textwrap.dedent(traffic_policy), "    ") if traffic_policy else ""
    return (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
            f"metadata: {{name: {host}, namespace: {namespace}}}\nspec:\n  host: {host}\n"
            + (f"  trafficPolicy:\n{policy}" if policy else "")
            + f"  subsets:\n{subsets}\n")


class Mesh:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        endpoints = cp_endpoints(cp)
        self.endpoints = endpoints
        self.mesh_proxy: str = endpoints["mesh_proxy"]
        self.ingress: str = endpoints["ingress"]
        self.http = httpx.Client(proxy=self.mesh_proxy, trust_env=False, timeout=15.0)

    @property
    def api(self) -> httpx.Client:
        assert self.cp.client is not None
        return self.cp.client

    def apply(self, *docs: str, expect: int = 200) -> dict[str, Any]:
        text = "\n---\n".join(textwrap.dedent(d) for d in docs)
        r = self.api.post("/apis/meshpilot.io/v1/apply",
                          json={"sources": [{"file": "test.yaml", "text": text}]})
        assert r.status_code == expect, r.text
        return r.json()

    def delete(self, kind: str, name: str, namespace: str = "default", group: str = "") -> None:
        r = self.api.post("/apis/meshpilot.io/v1/delete", json={"keys": [
            {"group": group, "kind": kind, "namespace": namespace, "name": name}]})
        assert r.status_code == 200, r.text

    def readiness(self) -> dict[str, Any]:
        r = self.api.get("/apis/meshpilot.io/v1/readiness")
        assert r.status_code == 200, r.text
        return r.json()

    def converge(self, timeout: float = 60.0) -> dict[str, Any]:
        """Every Deployment ready, every proxy ACKed the latest mesh version."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.readiness()
            if state["ready"]:
                # settle: a second look after the last ACK, so pods that became ready
                # in between are included
                time.sleep(0.1)
                state = self.readiness()
                if state["ready"]:
                    return state
            time.sleep(0.1)
        raise AssertionError(f"mesh did not converge in {timeout}s: {state}\n{self.cp.log()}")

    def pods(self, namespace: str = "default") -> list[dict[str, Any]]:
        return self.api.get(f"/api/v1/namespaces/{namespace}/pods").json()["items"]

    def proxies(self) -> list[dict[str, Any]]:
        return self.api.get("/apis/meshpilot.io/v1/proxies").json()["proxies"]

    def proxy_config(self, name: str, kind: str) -> list[dict[str, Any]]:
        r = self.api.get(f"/apis/meshpilot.io/v1/proxies/{name}/config/{kind}")
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def versions(self, url: str, n: int, **kwargs: Any) -> dict[str, int]:
        """Send ``n`` requests; count responses by X-Version (or status if none)."""
        counts: dict[str, int] = {}
        for _ in range(n):
            r = self.http.get(url, **kwargs)
            key = r.headers.get("x-version", str(r.status_code))
            counts[key] = counts.get(key, 0) + 1
        return counts


def cp_endpoints(cp: ControlPlane) -> dict[str, Any]:
    return json.loads((cp.state_dir / "endpoints.json").read_text())


@pytest.fixture
def mesh(control_plane_factory: Callable[..., ControlPlane]) -> Iterator[Mesh]:
    m = Mesh(control_plane_factory("mesh"))
    try:
        yield m
    finally:
        m.http.close()


@pytest.fixture
def backend_app(tmp_path: Path) -> Callable[..., str]:
    """Start a demo app outside the mesh (for WorkloadEntry / ServiceEntry tests)."""
    import subprocess

    from meshpilot.proxy.ports import free_port, wait_port

    procs: list[subprocess.Popen[bytes]] = []

    def start(version: str = "ext", *args: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [PYTHON, "-m", "meshpilot.demoapp", "--version", version, "--host", "127.0.0.1",
             "--port", str(port), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        assert wait_port("127.0.0.1", port, timeout=10)
        return f"127.0.0.1:{port}"

    yield start  # type: ignore[misc]
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)

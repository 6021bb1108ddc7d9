"""Fixtures of the end-to-end tests: a real mesh per test, and the Given / When / Then
that drive it (``tests/e2e/scenario.py``); a demo app outside the mesh for the tests of
hosts the mesh reaches without running them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from meshpilot.proxy.ports import free_port, wait_port
from tests.conftest import ControlPlane
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When


@pytest.fixture
def mesh(control_plane_factory: Callable[..., ControlPlane]) -> Iterator[Mesh]:
    """A running control plane with its mesh proxy, ingress gateway and local runtime."""
    m = Mesh(control_plane_factory("mesh"))
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def given(mesh: Mesh) -> Given:
    return Given(mesh)


@pytest.fixture
def when(mesh: Mesh) -> When:
    return When(mesh)


@pytest.fixture
def then(mesh: Mesh) -> Then:
    return Then(mesh)


@pytest.fixture
def backend_app() -> Iterator[Callable[..., str]]:
    """Start a demo app outside the mesh (for WorkloadEntry / ServiceEntry tests)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(version: str = "ext", *args: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshpilot.demoapp", "--version", version,
             "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        assert wait_port("127.0.0.1", port, timeout=10)
        return f"127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


# --- the builders of the tests not yet on tests/e2e/myapp.py ----------------------------

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


def cp_endpoints(cp: ControlPlane) -> dict[str, Any]:
    return json.loads((cp.state_dir / "endpoints.json").read_text())

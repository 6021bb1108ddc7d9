"""Fixtures of the end-to-end tests: a real mesh per test, and the Given / When / Then
that drive it (``tests/e2e/scenario.py``); a demo app outside the mesh for the tests of
hosts the mesh reaches without running them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

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

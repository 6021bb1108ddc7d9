"""The WorkloadGroup probe as the host agent runs it, against real sockets and
processes, with Kubernetes' success and failure thresholds (Istio's VM readiness probe
follows the kubelet's rules)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from meshpilot.hosts.probe import Readiness, run_check


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_tcp_and_exec_checks(listening: int) -> None:
    assert run_check({"tcpSocket": {"port": listening}}, "127.0.0.1")
    assert not run_check({"tcpSocket": {"port": 1}}, "127.0.0.1")
    assert run_check({"exec": {"command": ["true"]}}, "127.0.0.1")
    assert not run_check({"exec": {"command": ["false"]}}, "127.0.0.1")
    assert not run_check({"exec": {"command": ["/no/such/binary"]}}, "127.0.0.1")


def test_http_check_against_nothing_is_not_ready() -> None:
    assert not run_check({"httpGet": {"port": 1, "path": "/"}}, "127.0.0.1")


def test_thresholds_flip_the_state() -> None:
    readiness = Readiness({"exec": {"command": ["true"]}, "successThreshold": 2,
                           "failureThreshold": 2}, "127.0.0.1")
    assert readiness.step() is False  # one success of two
    assert readiness.step() is True
    assert readiness.probe is not None
    readiness.probe = {**readiness.probe, "exec": {"command": ["false"]}}
    assert readiness.step() is True  # one failure of two
    assert readiness.step() is False


def test_no_probe_is_ready() -> None:
    assert Readiness(None, "127.0.0.1").step() is True

"""gRPC through the mesh: a gRPC echo server (``grpc_echo.py``, v1 and v2) behind a
Service port whose protocol is gRPC, by its name (``grpc``) or by ``appProtocol: grpc``
on a port named otherwise, called by a real gRPC client (grpcio).

How a client outside the pods reaches it: the mesh proxy is the sidecar of an in-mesh
client, and its listener takes HTTP/2 as well as HTTP/1.1. A gRPC client connects to it
and names the service in ``:authority`` (``grpc-echo:9090``), as a client whose traffic a
sidecar captures would; the sidecar routes by the VirtualService, speaks HTTP/2 over
mutual TLS to the server's sidecar, which speaks HTTP/2 to the app. The ingress gateway
serves gRPC the same way, on a Gateway HTTP server with an ``http`` route (how Istio users
expose gRPC). Each call learns the version it reached from the word the server answers
with (``one`` / ``two``)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.builders import by_version, deployment, destination_rule, gateway, virtual_service
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, When
from tests.e2e.telemetry_helpers import fetch_metrics

ECHO_APP = Path(__file__).with_name("grpc_echo.py")
METHOD = "/meshpilot.test.Echo/Say"
HOST = "grpc-echo"
PORT = 9090


def echo(version: str, word: str, port_name: str) -> dict[str, Any]:
    labels = {"app": HOST, "version": version}
    container = {"name": HOST, "command": [sys.executable, str(ECHO_APP), word],
                 "ports": [{"name": port_name, "containerPort": 9000}],
                 "readinessProbe": {"tcpSocket": {"port": port_name}, "periodSeconds": 1}}
    return deployment(f"{HOST}-{version}", containers=[container], labels=labels)


def service(port: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": HOST},
            "spec": {"selector": {"app": HOST},
                     "ports": [{"port": PORT, "targetPort": 9000, **port}]}}


def split(v1: int, v2: int, **fields: Any) -> dict[str, Any]:
    return virtual_service(HOST, http=[{"route": [
        {"destination": {"host": HOST, "subset": "v1"}, "weight": v1},
        {"destination": {"host": HOST, "subset": "v2"}, "weight": v2}]}], **fields)


@contextmanager
def channel(address: str, authority: str) -> Iterator[grpc.Channel]:
    """A plaintext HTTP/2 channel to ``address`` (``http://host:port`` or ``host:port``)
    whose calls name ``authority``; no proxy from the environment."""
    target = address.removeprefix("http://")
    options = [("grpc.default_authority", authority), ("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(target, options=options) as chan:
        yield chan


def call(chan: grpc.Channel, text: str) -> str:
    say = chan.unary_unary(METHOD)  # bytes in, bytes out: no (de)serializers
    return say(text.encode(), timeout=10).decode()


def words(address: str, authority: str, calls: int) -> Counter[str]:
    """The word each of ``calls`` calls over one channel (one HTTP/2 connection) got."""
    seen: Counter[str] = Counter()
    with channel(address, authority) as chan:
        for i in range(calls):
            word, _, rest = call(chan, f"hello {i}").partition(" ")
            assert rest == f"hello {i}", (word, rest)
            seen[word] += 1
    return seen


GRPC_BY_NAME = {"name": "grpc"}
GRPC_BY_APP_PROTOCOL = {"name": "api", "appProtocol": "grpc"}


@pytest.mark.parametrize(("port", "container_port_name"), [
    pytest.param(GRPC_BY_NAME, "grpc", id="port-name"),
    pytest.param(GRPC_BY_APP_PROTOCOL, "api", id="app-protocol"),
])
def test_grpc_calls_reach_the_server_and_a_weighted_split_splits_them(
        mesh: Mesh, given: Given, when: When, port: dict[str, Any],
        container_port_name: str) -> None:
    given.applied(echo("v1", "one", container_port_name), echo("v2", "two", container_port_name),
                  service(port), destination_rule(HOST, subsets=by_version("v1", "v2")),
                  split(100, 0))
    authority = f"{HOST}:{PORT}"

    # Then every call succeeds and reaches v1.
    assert words(mesh.mesh_proxy, authority, 10) == Counter({"one": 10})

    # When the calls are split 50/50
    when.apply(split(50, 50))

    # Then both versions serve about half of 100 calls made over one connection: the
    # split is per call (per HTTP/2 stream), not per connection. (50 expected; 25-75
    # holds with a probability far above 0.999 for a fair draw.)
    seen = words(mesh.mesh_proxy, authority, 100)
    assert set(seen) <= {"one", "two"}
    assert 25 <= seen["two"] <= 75, seen


def test_grpc_through_the_ingress_gateway(mesh: Mesh, given: Given) -> None:
    given.applied(echo("v1", "one", "grpc"), echo("v2", "two", "grpc"), service(GRPC_BY_NAME),
                  destination_rule(HOST, subsets=by_version("v1", "v2")),
                  gateway("grpc-gateway", ["grpc.example.com"]),
                  split(0, 100, hosts=["grpc.example.com"], gateways=["grpc-gateway"])
                  | {"metadata": {"name": "grpc-ingress", "namespace": "default"}})

    # Then a gRPC client calling the gateway's HTTP server reaches v2 over HTTP/2.
    assert words(mesh.ingress, "grpc.example.com", 5) == Counter({"two": 5})


def destination_calls(mesh: Mesh, **labels: str) -> float:
    return sum(value for name, got, value in fetch_metrics(mesh.endpoints["metrics"])
               if name == "istio_requests_total" and got.get("reporter") == "destination"
               and all(got.get(k) == v for k, v in labels.items()))


def test_a_failing_grpc_call_is_counted_with_its_grpc_status(
        mesh: Mesh, given: Given, when: When) -> None:
    given.applied(echo("v1", "one", "grpc"), service(GRPC_BY_NAME))
    authority = f"{HOST}:{PORT}"
    with channel(mesh.mesh_proxy, authority) as chan:
        assert call(chan, "hello") == "one hello"
        # When a call fails with NOT_FOUND (an HTTP 200 whose trailers say grpc-status 5)
        with pytest.raises(grpc.RpcError) as failed:
            call(chan, "missing")
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND

    # Then the server's sidecar counts it with grpc_response_status="5", and the call that
    # succeeded with "0", both answered with HTTP 200 over gRPC.
    at_server = {"destination_workload": f"{HOST}-v1", "request_protocol": "grpc",
                 "response_code": "200", "connection_security_policy": "mutual_tls"}
    when.until(lambda: destination_calls(mesh, grpc_response_status="5", **at_server) == 1,
               15, "the failed call counted with grpc_response_status 5")
    assert destination_calls(mesh, grpc_response_status="0", **at_server) == 1

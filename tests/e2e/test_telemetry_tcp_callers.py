"""Istio's TCP metrics at the destination name their caller, end to end: real
connections from outside the mesh through the ingress gateway's Envoy, and from a client
pod through its sidecar, over mutual TLS to a tcp-echo pod's sidecar (Istio's "TCP
Traffic Shifting" task's set-up).

Follows Istio's "Standard Metrics" page: ``istio_tcp_connections_opened_total``,
``..._closed_total``, ``istio_tcp_received_bytes_total`` and ``..._sent_bytes_total``
carry the ``source_*`` labels at ``reporter="destination"``, which Istio learns over
mutual TLS (here from the caller's certificate)."""

from __future__ import annotations

import socket

from tests.builders import by_version, destination_rule
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, When
from tests.e2e.telemetry_helpers import fetch_metrics, metric_sum
from tests.e2e.test_gateway_tcp import GATEWAY, SERVICE, echo, routes
from tests.e2e.test_mesh_tcp import client, connect
from tests.e2e.test_mesh_tcp import routes as mesh_routes

GATEWAY_PRINCIPAL = ("spiffe://cluster.local/ns/istio-system/sa/"
                     "istio-ingressgateway-service-account")


def _echo_once(mesh: Mesh, line: str) -> str:
    port = int(mesh.cp_endpoints()["ingress_ports"]["31400"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(line.encode())
        return conn.makefile("rb").readline().decode()


def test_tcp_series_at_the_destination_name_the_gateway_as_caller(
        mesh: Mesh, given: Given, when: When) -> None:
    """Given tcp-echo v1 behind a Gateway TCP server, when 5 connections each echo one
    line and close, then v1's sidecar counts 5 opened and 5 closed connections and their
    bytes each way, all with the ingress gateway as the caller (workload, namespace,
    principal), over mutual TLS, and none under an unknown caller."""
    given.applied(GATEWAY, echo("v1", "one"), SERVICE,
                  destination_rule("tcp-echo", subsets=by_version("v1", "v2")),
                  routes(100, 0))
    lines = [f"hello {i}\n" for i in range(5)]
    for line in lines:
        assert _echo_once(mesh, line) == f"one {line}"
    caller = {"reporter": "destination", "destination_workload": "tcp-echo-v1",
              "source_workload": "istio-ingressgateway",
              "source_workload_namespace": "istio-system",
              "source_principal": GATEWAY_PRINCIPAL,
              "connection_security_policy": "mutual_tls"}

    def closed() -> list | None:
        got = fetch_metrics(mesh.endpoints["metrics"])
        n = metric_sum(got, "istio_tcp_connections_closed_total", **caller)
        return got if n == 5 else None

    samples = when.until(closed, 15, "5 closed connections counted with their caller")
    assert metric_sum(samples, "istio_tcp_connections_opened_total", **caller) == 5
    assert metric_sum(samples, "istio_tcp_received_bytes_total", **caller) == sum(
        len(line) for line in lines)
    assert metric_sum(samples, "istio_tcp_sent_bytes_total", **caller) == sum(
        len("one " + line) for line in lines)
    assert metric_sum(samples, "istio_tcp_connections_opened_total", reporter="destination",
                      destination_workload="tcp-echo-v1", source_workload="unknown") == 0


def test_tcp_series_at_the_destination_name_a_client_pod_as_caller(
        mesh: Mesh, given: Given, when: When) -> None:
    """Given tcp-echo v1 and a client pod running as its own service account (Istio's
    ``sleep`` in the "TCP Traffic Shifting" task), when the pod opens 10 connections
    through its sidecar, then the echo pod's sidecar counts 10 opened and 10 closed with
    the client as caller: its workload, app, namespace and principal."""
    pod, service = client()
    pod["spec"]["template"]["spec"]["serviceAccountName"] = "tcp-client"
    given.applied(echo("v1", "one"), SERVICE,
                  destination_rule("tcp-echo", subsets=by_version("v1", "v2")),
                  mesh_routes(100, 0))
    given.applied(pod, service)  # started after the Service: it gets its variables
    assert connect(mesh, 10) == {"one": 10}
    caller = {"reporter": "destination", "destination_workload": "tcp-echo-v1",
              "source_workload": "tcp-client", "source_app": "tcp-client",
              "source_workload_namespace": "default",
              "source_principal": "spiffe://cluster.local/ns/default/sa/tcp-client",
              "connection_security_policy": "mutual_tls"}

    def closed() -> list | None:
        got = fetch_metrics(mesh.endpoints["metrics"])
        n = metric_sum(got, "istio_tcp_connections_closed_total", **caller)
        return got if n == 10 else None

    samples = when.until(closed, 15, "10 closed connections counted with their caller")
    assert metric_sum(samples, "istio_tcp_connections_opened_total", **caller) == 10
    assert metric_sum(samples, "istio_tcp_received_bytes_total", **caller) >= len(
        "hello 0\n") * 10

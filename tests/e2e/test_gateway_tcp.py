"""TCP through the ingress gateway, after Istio's "TCP Traffic Shifting" task: tcp-echo
v1 and v2 behind a Gateway TCP server on port 31400, every connection to v1, then 80/20.

Real connections from outside the mesh to the gateway's Envoy, through mutual TLS to the
echo pods' sidecars, to the echo servers; each connection learns the version it reached
from the word the server answers with (``one`` / ``two``, as in Istio's sample)."""

from __future__ import annotations

import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.builders import by_version, deployment, destination_rule
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, When
from tests.e2e.telemetry_helpers import fetch_metrics

ECHO_APP = Path(__file__).with_name("tcp_echo.py")
GATEWAY = """\
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: tcp-echo-gateway}
    spec:
      selector: {istio: ingressgateway}
      servers:
      - port: {number: 31400, name: tcp, protocol: TCP}
        hosts: ["*"]
    """


def echo(version: str, word: str) -> dict[str, Any]:
    labels = {"app": "tcp-echo", "version": version}
    # as Istio's sample: the container port has no name; the Service port's name (tcp)
    # is what makes the pod's sidecar forward it as TCP
    container = {"name": "tcp-echo", "command": [sys.executable, str(ECHO_APP), word],
                 "ports": [{"containerPort": 9000}],
                 "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1}}
    return deployment(f"tcp-echo-{version}", containers=[container], labels=labels)


SERVICE = """\
    apiVersion: v1
    kind: Service
    metadata: {name: tcp-echo}
    spec:
      selector: {app: tcp-echo}
      ports: [{name: tcp, port: 9000}]
    """


def routes(v1: int, v2: int) -> str:
    return f"""\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: tcp-echo}}
    spec:
      hosts: ["*"]
      gateways: [tcp-echo-gateway]
      tcp:
      - match: [{{port: 31400}}]
        route:
        - {{destination: {{host: tcp-echo, subset: v1}}, weight: {v1}}}
        - {{destination: {{host: tcp-echo, subset: v2}}, weight: {v2}}}
    """


def words(mesh: Mesh, connections: int) -> Counter[str]:
    """The word each of ``connections`` new connections to the gateway's 31400 answered."""
    host, port = "127.0.0.1", int(mesh.cp_endpoints()["ingress_ports"]["31400"])
    seen: Counter[str] = Counter()
    for i in range(connections):
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(f"hello {i}\n".encode())
            answer = conn.makefile("rb").readline().decode()
        word, _, rest = answer.partition(" ")
        assert rest == f"hello {i}\n", answer
        seen[word] += 1
    return seen


def connections_counted(mesh: Mesh, metric: str = "istio_tcp_connections_opened_total",
                        **labels: str) -> float:
    return sum(value for name, got, value in fetch_metrics(mesh.endpoints["metrics"])
               if name == metric and all(got.get(k) == v for k, v in labels.items()))


def codes(applied: dict[str, Any]) -> list[str]:
    return [d["code"] for d in applied.get("diagnostics", [])]


def test_tcp_traffic_shifts_from_v1_to_an_80_20_split(
        mesh: Mesh, given: Given, when: When) -> None:
    # A TCP server with no route yet serves nothing, and apply says so.
    assert "MP2013" in codes(mesh.apply(GATEWAY))
    given.applied(echo("v1", "one"), echo("v2", "two"), SERVICE,
                  destination_rule("tcp-echo", subsets=by_version("v1", "v2")),
                  routes(100, 0))

    # Then every connection reaches v1.
    assert words(mesh, 10) == Counter({"one": 10})

    # When 20% of the connections are shifted to v2 (the task's second step)
    when.apply(routes(80, 20))

    # Then about a fifth of 100 new connections reach v2 (20 expected; 8-35 holds with a
    # probability above 0.999 for a fair 80/20 draw).
    seen = words(mesh, 100)
    assert set(seen) <= {"one", "two"}
    assert 8 <= seen["two"] <= 35, seen

    # And v2's sidecar counted them.
    counted = {"reporter": "destination", "destination_workload": "tcp-echo-v2"}
    when.until(lambda: connections_counted(mesh, **counted) >= seen["two"], 15,
               f"{seen['two']} connections counted at tcp-echo-v2")

    # And over mutual TLS (gateway to sidecar is auto mTLS): the destination says so, with
    # its own SPIFFE ID, and counts none of them as plaintext; their closes and their
    # bytes (each way: the line sent, the word and the line back) are counted alike.
    mtls = {**counted, "connection_security_policy": "mutual_tls",
            "destination_principal": "spiffe://cluster.local/ns/default/sa/default"}
    when.until(lambda: connections_counted(mesh, **mtls) >= seen["two"], 15,
               "connections counted as mutual_tls at tcp-echo-v2")
    when.until(lambda: connections_counted(mesh, "istio_tcp_connections_closed_total",
                                           **mtls) >= seen["two"], 15,
               "closed connections counted as mutual_tls at tcp-echo-v2")
    assert connections_counted(mesh, "istio_tcp_received_bytes_total", **mtls) \
        >= len("hello 0\n") * seen["two"]
    assert connections_counted(mesh, "istio_tcp_sent_bytes_total", **mtls) \
        >= len("two hello 0\n") * seen["two"]
    assert connections_counted(mesh, **counted, connection_security_policy="none") == 0

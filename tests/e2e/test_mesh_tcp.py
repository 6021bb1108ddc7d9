"""TCP and TLS routes at sidecars, inside the mesh.

The first case is Istio's "TCP Traffic Shifting" task done from a pod (the task's
``sleep`` client): a client pod opens 100 connections to tcp-echo, all reach v1, then an
80/20 VirtualService ``tcp`` route splits new connections 80/20. The second follows
Istio's TLS routing semantics for sidecars (VirtualService ``tls`` routes matched on the
ClientHello's SNI, the connection passed on still encrypted, no catch-all once routes
name SNIs): the client speaks TLS to one Service with different SNI names and the route
picks the server that answers, whose own certificate the client checks.

Real processes throughout: the client pod finds the Service as a Kubernetes pod does,
through ``TCP_ECHO_SERVICE_HOST`` / ``_PORT`` (its sidecar's listener for that port), and
its connections cross two Envoys and mutual TLS to the echo servers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from tests.builders import by_version, deployment, destination_rule
from tests.conftest import wait_for
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, When
from tests.e2e.test_gateway_tcp import SERVICE, codes, connections_counted, echo
from tests.tls_pairs import certificate, key_pem, pem

CLIENT_APP = Path(__file__).with_name("tcp_client.py")
ECHO_APP = Path(__file__).with_name("tcp_echo.py")
CLIENT = "http://tcp-client:8080"


def client() -> list[dict[str, Any]]:
    """The client pod (Istio's sleep) and a Service the test reaches it through."""
    container = {"name": "client", "command": [sys.executable, str(CLIENT_APP)],
                 "ports": [{"containerPort": 8080, "name": "http"}],
                 "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "tcp-client"},
               "spec": {"selector": {"app": "tcp-client"},
                        "ports": [{"name": "http", "port": 8080}]}}
    return [deployment("tcp-client", containers=[container], labels={"app": "tcp-client"}),
            service]


def routes(v1: int, v2: int) -> str:
    return f"""\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: tcp-echo}}
    spec:
      hosts: [tcp-echo]
      tcp:
      - match: [{{port: 9000}}]
        route:
        - {{destination: {{host: tcp-echo, subset: v1}}, weight: {v1}}}
        - {{destination: {{host: tcp-echo, subset: v2}}, weight: {v2}}}
    """


def connect(mesh: Mesh, n: int) -> dict[str, int]:
    """The client pod's words from ``n`` connections, once the mesh proxy reaches the
    client (a pod just started may not be its endpoint yet: 503 from the proxy)."""
    def ask() -> Any:
        r = mesh.client().get(f"{CLIENT}/connect", params={"n": n}, timeout=60.0)
        return r.json() if r.status_code == 200 else None
    answer = wait_for(ask, timeout=30, message="the client pod answers through the mesh")
    assert answer["failed"] == 0, answer
    return answer["words"]  # type: ignore[no-any-return]


def test_tcp_traffic_shifts_from_v1_to_an_80_20_split_inside_the_mesh(
        mesh: Mesh, given: Given, when: When) -> None:
    given.applied(echo("v1", "one"), echo("v2", "two"), SERVICE,
                  destination_rule("tcp-echo", subsets=by_version("v1", "v2")),
                  routes(100, 0))
    # the route for the mesh is applied now: no MP2014 warning
    assert "MP2014" not in codes(mesh.apply(routes(100, 0)))
    given.applied(*client())  # started after the Service: it gets its variables

    # Then every one of 100 connections from the client pod reaches v1.
    assert connect(mesh, 100) == {"one": 100}

    # When 20% of the connections are shifted to v2 (the task's second step)
    when.apply(routes(80, 20))

    # Then about a fifth of 100 new connections reach v2 (20 expected; 8-35 holds with a
    # probability above 0.999 for a fair 80/20 draw).
    seen = connect(mesh, 100)
    assert set(seen) <= {"one", "two"} and sum(seen.values()) == 100, seen
    assert 8 <= seen.get("two", 0) <= 35, seen

    # And both ends count them, over mutual TLS at v2's sidecar, from the client's at
    # the source (Istio's istio_tcp_* series, labelled by workload).
    counted = {"reporter": "destination", "destination_workload": "tcp-echo-v2",
               "connection_security_policy": "mutual_tls"}
    when.until(lambda: connections_counted(mesh, **counted) >= seen["two"], 15,
               f"{seen['two']} connections counted over mTLS at tcp-echo-v2")
    source = {"reporter": "source", "source_workload": "tcp-client",
              "destination_workload": "tcp-echo-v2", "destination_service":
              "tcp-echo.default.svc.cluster.local"}
    when.until(lambda: connections_counted(mesh, **source) >= seen["two"], 15,
               "connections counted at the client's sidecar")
    when.until(lambda: connections_counted(mesh, "istio_tcp_sent_bytes_total", **source)
               >= len("hello 0\n") * seen["two"], 15, "bytes counted at the source")


def tls_backend(name: str, ca: tuple[str, Any], tmp: Path) -> list[dict[str, Any]]:
    """A TLS echo server answering with its own name, its certificate for
    ``<name>.example.com`` issued by ``ca``, and its Service on a ``tls`` port."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert, key_file = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert.write_bytes(pem(certificate(f"{name}.example.com", key, ca)))
    key_file.write_bytes(key_pem(key))
    key_file.chmod(0o600)
    container = {"name": "echo", "command": [sys.executable, str(ECHO_APP), name, str(cert),
                                             str(key_file)],
                 "ports": [{"containerPort": 8443}],
                 "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"tls-{name}"},
               "spec": {"selector": {"app": f"tls-{name}"},
                        "ports": [{"name": "tls", "port": 8443}]}}
    return [deployment(f"tls-{name}", containers=[container], labels={"app": f"tls-{name}"}),
            service]


FRONT = """\
    apiVersion: v1
    kind: Service
    metadata: {name: tls-front}
    spec:
      selector: {app: tls-a}
      ports: [{name: tls, port: 8443}]
    """
SNI_ROUTES = """\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: tls-front}
    spec:
      hosts: [tls-front, a.example.com, b.example.com]
      tls:
      - match: [{port: 8443, sniHosts: [a.example.com]}]
        route: [{destination: {host: tls-a}}]
      - match: [{port: 8443, sniHosts: [b.example.com]}]
        route: [{destination: {host: tls-b}}]
    """


def test_a_tls_route_picks_the_destination_by_sni_inside_the_mesh(
        mesh: Mesh, given: Given, when: When, tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("test root", ca_key, ca=True)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pem(ca_cert))
    ca = ("test root", ca_key)
    given.applied(*tls_backend("a", ca, tmp_path), *tls_backend("b", ca, tmp_path), FRONT)
    given.applied(*client())

    def hello(sni: str) -> dict[str, Any]:
        return mesh.client().get(f"{CLIENT}/tls", params={  # type: ignore[no-any-return]
            "service": "TLS_FRONT", "sni": sni, "ca": str(ca_file)}).json()

    # Without a route, the TLS port is opaque: every SNI reaches the Service's own pods.
    assert hello("b.example.com") == {"word": "a", "subject": "a.example.com"}

    # When tls routes name the SNIs, each SNI reaches its server, end to end encrypted
    # (the client checks the server's own certificate), and an SNI no route names is
    # not served.
    when.apply(SNI_ROUTES)
    assert hello("b.example.com") == {"word": "b", "subject": "b.example.com"}
    assert hello("a.example.com") == {"word": "a", "subject": "a.example.com"}
    assert "error" in hello("c.example.com")

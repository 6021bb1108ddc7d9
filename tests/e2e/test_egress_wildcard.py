"""Egress to wildcard hosts end to end, after Istio's task "Egress using Wildcard Hosts"
(its first part, "Configure direct traffic to a wildcard host": a ServiceEntry for
``*.wikipedia.org``, resolution NONE, with the mesh blocking unknown hosts), and to an
external TCP service after Istio's "Consuming External TCP Services" (a MongoDB entry
``my-mongo.tcp.svc`` with its one address; here resolution NONE passes connections
through to that address).

The mesh's ``outboundTrafficPolicy`` is REGISTRY_ONLY. The "external" servers are on
loopback, named ``en.wiki.test`` and ``de.wiki.test`` by a DNS responder on loopback, so
nothing leaves the machine: a TLS server (the task's ``curl https://en.wikipedia.org``)
and an HTTP demo app. A client pod started after the entry finds the entry's TLS port in
``WILDCARD_WIKI_TEST_SERVICE_HOST`` / ``_PORT`` (its sidecar's listener); it speaks TLS
with the covered name as SNI and checks the real server's certificate. A name the
pattern does not cover is refused, on both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ControlPlane
from tests.dns_responder import DnsResponder
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.e2e.test_mesh_tcp import CLIENT, client
from tests.line_server import LineServer
from tests.tls_pairs import certificate, key_pem, pem

COVERED = ("en.wiki.test", "de.wiki.test")
ELSEWHERE = "en.elsewhere.test"


def mongo_entry(port: int) -> str:
    return f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: mongo}}
        spec:
          hosts: [my-mongo.tcp.svc]
          addresses: [127.0.0.1/32]
          location: MESH_EXTERNAL
          resolution: NONE
          ports: [{{number: {port}, name: tcp, protocol: TCP}}]
        """


def entry(tls_port: int, http_port: int) -> str:
    return f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: wikipedia}}
        spec:
          hosts: ["*.wiki.test"]
          ports:
          - {{number: {tls_port}, name: https, protocol: HTTPS}}
          - {{number: {http_port}, name: http, protocol: HTTP}}
        """


@pytest.fixture
def dns() -> Iterator[DnsResponder]:
    with DnsResponder({**dict.fromkeys(COVERED, "127.0.0.1"),
                       ELSEWHERE: "127.0.0.1"}) as responder:
        yield responder


def tls_server(tmp: Path) -> tuple[LineServer, Path]:
    """A TLS server whose certificate names en.wiki.test, and its root's file."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "ca.pem").write_bytes(pem(certificate("test root", ca_key, ca=True)))
    key = ec.generate_private_key(ec.SECP256R1())
    cert, key_file = tmp / "wiki.pem", tmp / "wiki.key"
    cert.write_bytes(pem(certificate(COVERED[0], key, ("test root", ca_key))))
    key_file.write_bytes(key_pem(key))
    key_file.chmod(0o600)
    return LineServer("wiki", (cert, key_file)), tmp / "ca.pem"


def test_entries_let_a_tcp_service_and_covered_names_out_under_registry_only(
    control_plane_factory: Callable[..., ControlPlane], dns: DnsResponder,
    backend_app: Callable[..., str], tmp_path: Path,
) -> None:
    cp = control_plane_factory("egress-wildcard", start=False)
    cp.state_dir.mkdir(parents=True)
    (cp.state_dir / "mesh.yaml").write_text(
        f"outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\ndnsResolvers: [\"{dns.address}\"]\n")
    mesh = Mesh(cp.start())
    server, ca = tls_server(tmp_path)
    mongo = LineServer("mongo")
    try:
        http_port = int(backend_app("ext").rsplit(":", 1)[1])
        # Before the entry: blocked, never looked up
        assert mesh.http.get(f"http://{COVERED[0]}:{http_port}/").status_code == 502

        # Given the task's ServiceEntry for the wildcard host, then a client pod
        given = Given(mesh)
        given.applied(entry(server.port, http_port), mongo_entry(mongo.port))
        given.applied(*client())

        # The TCP entry: the pod finds its sidecar's listener in MY_MONGO_TCP_SVC_SERVICE_*
        answer = mesh.client().get(f"{CLIENT}/connect",
                                   params={"service": "MY_MONGO_TCP_SVC", "n": 3}).json()
        assert answer == {"words": {"mongo": 3}, "failed": 0}

        def hello(sni: str) -> dict[str, Any]:
            return mesh.client().get(f"{CLIENT}/tls", params={  # type: ignore[no-any-return]
                "service": "WILDCARD_WIKI_TEST", "sni": sni, "ca": str(ca)}).json()

        # Then TLS to a covered name reaches the real server, still encrypted end to end
        assert hello(COVERED[0]) == {"word": "wiki", "subject": COVERED[0]}
        assert COVERED[0] in dns.asked
        # and a name the pattern does not cover is closed, never looked up
        assert "error" in hello(ELSEWHERE)
        assert ELSEWHERE not in dns.asked

        # And HTTP to any covered name passes through to the host the request names (on
        # a new connection: the first wildcard host changes the proxy's listener, and a
        # kept-alive connection stays on the listener it was accepted by until drained)
        with mesh.client() as http:
            for name in COVERED:
                r = http.get(f"http://{name}:{http_port}/")
                assert r.status_code == 200, r.text
                assert r.headers["x-version"] == "ext"
                assert r.json()["host"] == f"{name}:{http_port}"
            assert http.get(f"http://{ELSEWHERE}:{http_port}/").status_code == 502
    finally:
        server.close()
        mongo.close()
        mesh.close()

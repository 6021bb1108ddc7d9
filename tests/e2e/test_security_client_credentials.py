"""A DestinationRule's ``tls.credentialName``: the client proxy originates TLS with the
certificate and CA of a Secret in its own namespace, delivered over SDS (after Istio's
"Egress TLS origination" with mutual TLS, and its rule that a client reads only its own
namespace's Secrets). The server is a real TLS server on loopback that requires a client
certificate from its own CA; the client is the mesh proxy (namespace ``default``).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.e2e.security import becomes
from tests.integration.gateway_envoy import Issued, issue
from tests.tls_pairs import b64

HOST = "api.external.example"
CREDENTIAL = "api-client"


class _MutualTlsServer:
    """An HTTPS server requiring a client certificate signed by ``clients``; it answers
    with the common name of the client certificate it saw."""

    def __init__(self, tmp: Path, server: Issued, clients: Issued) -> None:
        (tmp / "server.pem").write_bytes(server.cert_pem)
        (tmp / "server.key").write_bytes(server.key_pem)
        (tmp / "clients.pem").write_bytes(clients.cert_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
        context.load_verify_locations(tmp / "clients.pem")
        context.verify_mode = ssl.CERT_REQUIRED

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer = self.connection.getpeercert()  # type: ignore[attr-defined]
                subject = dict(pair for rdn in peer["subject"] for pair in rdn)
                body = subject["commonName"].encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def pki() -> dict[str, Issued]:
    server_root, client_root = issue("server root", ca=True), issue("client root", ca=True)
    return {"server_root": server_root, "client_root": client_root,
            "server": issue(HOST, server_root, dns=[HOST]),
            "client": issue("mesh-client", client_root, client=True)}


@pytest.fixture
def tls_server(tmp_path: Path, pki: dict[str, Issued]) -> Iterator[_MutualTlsServer]:
    server = _MutualTlsServer(tmp_path, pki["server"], pki["client_root"])
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _entry_and_rule(port: int) -> tuple[str, str]:
    entry = f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: external-api}}
        spec:
          hosts: [{HOST}]
          location: MESH_EXTERNAL
          resolution: STATIC
          ports: [{{number: 80, name: http, protocol: HTTP}}]
          endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
        """
    rule = f"""\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {{name: external-api}}
        spec:
          host: {HOST}
          trafficPolicy:
            tls: {{mode: MUTUAL, credentialName: {CREDENTIAL}, sni: {HOST}}}
        """
    return entry, rule


def _secret(pki: dict[str, Issued], *, generic: bool) -> dict[str, object]:
    """The client credential: a kubernetes.io/tls Secret, or a generic one with Istio's
    ``cert`` / ``key`` / ``cacert`` keys."""
    keys = ("cert", "key", "cacert") if generic else ("tls.crt", "tls.key", "ca.crt")
    values = (pki["client"].cert_pem, pki["client"].key_pem, pki["server_root"].cert_pem)
    return {"apiVersion": "v1", "kind": "Secret",
            "type": "Opaque" if generic else "kubernetes.io/tls",
            "metadata": {"name": CREDENTIAL, "namespace": "default"},
            "data": {k: b64(v) for k, v in zip(keys, values, strict=True)}}


def _call(mesh: Mesh) -> tuple[int, str]:
    try:
        r = mesh.http.get(f"http://{HOST}/")
    except httpx.HTTPError as exc:
        return 0, type(exc).__name__
    return r.status_code, r.text if r.status_code == 200 else ""


@pytest.mark.parametrize("generic", [False, True], ids=["tls-secret", "opaque-secret"])
def test_the_client_proxy_presents_the_credential_of_a_secret_in_its_namespace(
        mesh: Mesh, given: Given, pki: dict[str, Issued], tls_server: _MutualTlsServer,
        generic: bool) -> None:
    entry, rule = _entry_and_rule(tls_server.port)
    given.applied(entry, rule)
    # No Secret yet: the cluster fails its connections closed (no plaintext, no other cert)
    status, _ = _call(mesh)
    assert status == 503, status

    given.applied(_secret(pki, generic=generic))
    becomes(lambda: _call(mesh), (200, "mesh-client"))  # the server saw our certificate


def test_a_credential_in_another_namespace_is_not_read(
        mesh: Mesh, given: Given, pki: dict[str, Issued], tls_server: _MutualTlsServer) -> None:
    entry, rule = _entry_and_rule(tls_server.port)
    elsewhere = _secret(pki, generic=False)
    elsewhere["metadata"] = {"name": CREDENTIAL, "namespace": "other"}
    given.applied(entry, rule, elsewhere)
    status, _ = _call(mesh)
    assert status == 503, status

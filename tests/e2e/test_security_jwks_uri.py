"""RequestAuthentication with ``jwksUri``: the server's sidecar fetches the key set
itself, over real HTTP, from a server on loopback this test runs (Istio's remote JWKS, as
with ``PILOT_JWT_ENABLE_REMOTE_JWKS``). Tokens signed by the published key pass, others
get 401; a key set that cannot be fetched admits no token, while a request without one
is still served (authentication alone requires none).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.builders import metadata
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.e2e.security import SECURITY, TokenIssuer, becomes, url, workload

FOO = "foo"
HTTPBIN = url("httpbin", FOO)
ISSUER = "remote@secure.example"


class _KeySetServer:
    """Serves one JWKS document at ``/jwks.json`` and counts the fetches."""

    def __init__(self, document: str) -> None:
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = document.encode() if self.path == "/jwks.json" else b"not here"
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer.new(ISSUER)


@pytest.fixture
def key_server(issuer: TokenIssuer) -> Iterator[_KeySetServer]:
    server = _KeySetServer(issuer.jwks())
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _remote(name: str, uri: str) -> dict[str, object]:
    return {"apiVersion": SECURITY, "kind": "RequestAuthentication",
            "metadata": metadata(name, FOO),
            "spec": {"selector": {"matchLabels": {"app": "httpbin"}},
                     "jwtRules": [{"issuer": ISSUER, "jwksUri": uri}]}}


def _statuses(mesh: Mesh, tokens: dict[str, str | None]) -> dict[str, int]:
    return {name: mesh.http.get(HTTPBIN, headers={"Authorization": f"Bearer {token}"}
                                if token else {}).status_code
            for name, token in tokens.items()}


def test_keys_fetched_from_a_jwks_uri_check_tokens(
        mesh: Mesh, given: Given, issuer: TokenIssuer, key_server: _KeySetServer) -> None:
    given.applied(*workload("httpbin", FOO, service_account="httpbin"),
                  _remote("remote-jwks", key_server.uri))
    tokens: dict[str, str | None] = {
        "valid": issuer.token(), "wrong signature": TokenIssuer.new(ISSUER).token(),
        "none": None}
    becomes(lambda: _statuses(mesh, tokens), {"valid": 200, "wrong signature": 401, "none": 200})
    assert key_server.fetches >= 1  # the sidecar asked our server, over HTTP


def test_an_unreachable_jwks_uri_admits_no_token(
        mesh: Mesh, given: Given, issuer: TokenIssuer, key_server: _KeySetServer) -> None:
    missing = key_server.uri.replace("/jwks.json", "/gone.json")
    given.applied(*workload("httpbin", FOO, service_account="httpbin"),
                  _remote("remote-jwks", missing))
    becomes(lambda: _statuses(mesh, {"valid": issuer.token(), "none": None}),
            {"valid": 401, "none": 200})

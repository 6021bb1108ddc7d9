"""Real traffic through two real Envoys configured by the security translation, with
certificates from meshpilot's own CA: no mocks.

Given a server sidecar (workload ``foo/httpbin``) with a STRICT HTTP port, a PERMISSIVE
HTTP port and a STRICT TCP port in front of a small echo app, where a DENY policy refuses
``/admin*`` and an ALLOW policy admits only ``foo/sleep``; and a client sidecar (workload
``foo/sleep``) whose clusters to those ports use auto mTLS (or deliberately wrong TLS);
when requests are sent, then:

- plaintext, or TLS without a client certificate, never reaches the STRICT port's app;
- mTLS through the client sidecar does, and the app learns the caller's SPIFFE ID from
  the peer-principal header, whatever the client claimed;
- the DENY policy answers 403 ``RBAC: access denied``, and so does the ALLOW policy for
  another identity (``foo/evil``); on the TCP port that identity's connection is closed;
- the client refuses a server whose identity is not the expected one;
- the PERMISSIVE port takes both mTLS (matched on Istio's ALPN) and plaintext, stripping a
  forged peer-principal header from the latter;
- on a port with a JWT rule and an ALLOW policy on request principals and a claim, a bad
  token gets 401, no token or the wrong subject 403, the right subject or claim 200.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from tests.integration.echo_app import echo_server, serve
from tests.integration.security_envoy import (
    Workload,
    bootstrap,
    inbound_http_filters,
    inbound_listener,
    inbound_tcp_filters,
    issue,
    outbound_listener,
    static_cluster,
    with_tls,
    workload_secrets,
)

from meshpilot.api.security import AuthorizationPolicy
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.security import authorization_for, load_or_create_self_signed_ca
from meshpilot.xds.translate import jwt, tls

pytestmark = pytest.mark.timeout(120)

PEER = tls.PEER_PRINCIPAL_HEADER
SNI = "outbound|8000||httpbin.foo.svc.cluster.local"
POLICIES = """
metadata: {name: no-admin, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
metadata: {name: only-sleep, namespace: foo}
spec:
  rules: [{from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]}]
"""
ISSUER = "https://issuer.example"
JWT_POLICIES = """
metadata: {name: users, namespace: foo}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]
  - when: [{key: "request.auth.claims[groups]", values: [admins]}]
"""



@dataclass(frozen=True)
class Mesh:
    strict: int
    permissive: int
    tcp: int
    client: int
    root: Path
    sleep: Workload
    evil: Workload
    httpbin: Workload
    client_envoy: EnvoyProcess
    jwt: int
    jwt_key: ec.EllipticCurvePrivateKey


def _policies(text: str) -> list[AuthorizationPolicy]:
    return [AuthorizationPolicy.model_validate(
        {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", **doc})
        for doc in yaml.safe_load_all(text)]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    work = tmp_path_factory.mktemp("security-traffic")
    ca = load_or_create_self_signed_ca(work / "ca")
    bundle = ca.trust_bundle.pem
    root = work / "root.pem"
    root.write_bytes(bundle)
    certs = work / "certs"
    httpbin, sleep, evil = (issue(ca, "foo", sa, certs) for sa in ("httpbin", "sleep", "evil"))

    app = echo_server()
    app_port = serve(app)

    strict, permissive, tcp, client, jwt_port = (free_port() for _ in range(5))
    jwt_key = ec.generate_private_key(ec.SECP256R1())
    jwt_filter = jwt.jwt_authn_filter([jwt.JwtRule(issuer=ISSUER, jwks=_jwks(jwt_key))])
    assert jwt_filter is not None
    labels = {"app": "httpbin"}
    http_authz = authorization_for(_policies(POLICIES), "foo", labels)
    tcp_authz = authorization_for(_policies(POLICIES.split("---")[1]), "foo", labels)
    no_authz = authorization_for([], "foo", labels)
    backend = "inbound|8000||"
    server_config = bootstrap(
        "server",
        [inbound_listener("inbound_strict", strict, "STRICT",
                          inbound_http_filters(backend, http_authz, "cluster.local")),
         inbound_listener("inbound_permissive", permissive, "PERMISSIVE",
                          inbound_http_filters(backend, no_authz, "cluster.local")),
         inbound_listener("inbound_tcp", tcp, "STRICT",
                          inbound_tcp_filters(backend, tcp_authz, "cluster.local")),
         inbound_listener("inbound_jwt", jwt_port, "PERMISSIVE", inbound_http_filters(
             backend, authorization_for(_policies(JWT_POLICIES), "foo", labels),
             "cluster.local", [jwt_filter]))],
        [static_cluster(backend, "127.0.0.1", app_port)],
        workload_secrets(httpbin, bundle),
    )

    server_san = [httpbin.identity.uri]

    def auto(name: str, port: int, has_sidecar: bool):  # type: ignore[no-untyped-def]
        return with_tls(static_cluster(name, "127.0.0.1", port, has_sidecar=has_sidecar),
                        tls.upstream_tls(None, sni=SNI, subject_alt_names=server_san))

    wrong = static_cluster("wrong-identity", "127.0.0.1", strict)
    wrong.transport_socket.CopyFrom(tls.istio_mutual_upstream(
        SNI, ["spiffe://cluster.local/ns/foo/sa/not-httpbin"]))
    client_config = bootstrap(
        "client",
        [outbound_listener("outbound", client, {
            "strict": "strict-auto", "permissive": "permissive-auto",
            "plaintext": "strict-no-sidecar", "wrong": "wrong-identity"})],
        [auto("strict-auto", strict, True), auto("permissive-auto", permissive, True),
         auto("strict-no-sidecar", strict, False), wrong],
        workload_secrets(sleep, bundle),
    )
    envoys = [EnvoyProcess(server_config, name="server", work_dir=work),
              EnvoyProcess(client_config, name="client", work_dir=work)]
    try:
        for envoy in envoys:
            envoy.start()
            assert envoy.wait_live(15), envoy.log_tail()
        for port in (strict, permissive, tcp, client, jwt_port):
            assert wait_port("127.0.0.1", port, timeout=15), port
        yield Mesh(strict, permissive, tcp, client, root, sleep, evil, httpbin, envoys[1],
                   jwt_port, jwt_key)
    finally:
        for envoy in envoys:
            envoy.stop()
        app.shutdown()
        app.server_close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwks(key: ec.EllipticCurvePrivateKey) -> str:
    numbers = key.public_key().public_numbers()
    return json.dumps({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k1", "use": "sig",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }]})


def token(key: ec.EllipticCurvePrivateKey, **claims: Any) -> str:
    """An ES256 JWT signed by ``key``, valid for an hour."""
    claims = {"iss": ISSUER, "exp": int(time.time()) + 3600, **claims}
    head = _b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "k1"}).encode())
    body = _b64url(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{head}.{body}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


# --- clients ---------------------------------------------------------------------------------


Answer = tuple[int, bytes]


def plain_get(port: int, path: str = "/get", headers: dict[str, str] | None = None,
              ) -> Answer | None:
    """A plaintext HTTP GET; None when the connection fails before any answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _tls_context(mesh: Mesh, workload: Workload | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # workload certificates carry a SPIFFE URI SAN only
    context.load_verify_locations(cafile=str(mesh.root))
    if workload is not None:
        context.load_cert_chain(str(workload.chain_path), str(workload.key_path))
    return context


def mtls_get(mesh: Mesh, port: int, workload: Workload | None, path: str = "/get",
             ) -> Answer | None:
    """A GET over TLS as ``workload`` (None: no client certificate), verifying the
    server against the mesh's root; None when the connection fails before any answer."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                       context=_tls_context(mesh, workload))
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def tcp_exchange(mesh: Mesh, workload: Workload, payload: bytes) -> bytes:
    """Send ``payload`` over mTLS to the TCP port; what came back before it closed."""
    raw = socket.create_connection(("127.0.0.1", mesh.tcp), timeout=10)
    received = b""
    try:
        with _tls_context(mesh, workload).wrap_socket(raw) as conn:
            conn.sendall(payload)
            while chunk := conn.recv(65536):
                received += chunk
    except (OSError, ssl.SSLError):
        pass
    finally:
        raw.close()
    return received


def via_client(mesh: Mesh, host: str, path: str = "/get",
               headers: dict[str, str] | None = None) -> Answer:
    answer = plain_get(mesh.client, path, {"Host": host, **(headers or {})})
    assert answer is not None, "the client sidecar always answers"
    return answer


def seen_by_app(answer: Answer | None) -> dict[str, Any]:
    assert answer is not None and answer[0] == 200, answer
    return json.loads(answer[1])


# --- STRICT ----------------------------------------------------------------------------------


def test_strict_refuses_plaintext_and_tls_without_a_client_certificate(mesh: Mesh):
    assert plain_get(mesh.strict) is None
    assert mtls_get(mesh, mesh.strict, None) is None
    # the client sidecar sending plaintext (an endpoint it thinks has no sidecar) fails too
    status, _ = via_client(mesh, "plaintext")
    assert status == 503


def test_strict_accepts_mtls_and_tells_the_app_who_called(mesh: Mesh):
    seen = seen_by_app(via_client(mesh, "strict", headers={
        PEER: "spiffe://cluster.local/ns/foo/sa/forged"}))
    assert seen["path"] == "/get"
    assert seen["headers"][PEER] == mesh.sleep.identity.uri == \
        "spiffe://cluster.local/ns/foo/sa/sleep"


def test_deny_policy_answers_403_rbac_access_denied(mesh: Mesh):
    assert via_client(mesh, "strict", "/admin/users") == (403, b"RBAC: access denied")
    assert via_client(mesh, "strict", "/adminx")[0] == 403  # a prefix: /admin*
    assert seen_by_app(via_client(mesh, "strict", "/public/admin"))["path"] == "/public/admin"


def test_allow_policy_admits_its_principal_only(mesh: Mesh):
    assert seen_by_app(mtls_get(mesh, mesh.strict, mesh.sleep))["headers"][PEER] == \
        mesh.sleep.identity.uri
    assert mtls_get(mesh, mesh.strict, mesh.evil) == (403, b"RBAC: access denied")


def test_the_client_refuses_a_server_with_another_identity(mesh: Mesh):
    stat = "cluster.wrong-identity.ssl.fail_verify_san"

    def refused() -> int:
        return int(mesh.client_envoy.admin.stats_dict(stat.replace(".", r"\.")).get(stat, 0))

    before = refused()
    status, _ = via_client(mesh, "wrong")
    assert status == 503
    assert refused() > before  # the handshake failed on the SAN check, nothing else
    assert via_client(mesh, "strict")[0] == 200  # the same server, the right identity


def test_tcp_port_closes_a_connection_its_policy_does_not_allow(mesh: Mesh):
    request = b"GET /tcp HTTP/1.0\r\nHost: app\r\n\r\n"
    allowed = tcp_exchange(mesh, mesh.sleep, request)
    assert allowed.startswith(b"HTTP/1.1 200 OK"), allowed[:200]
    assert b'"/tcp"' in allowed
    assert tcp_exchange(mesh, mesh.evil, request) == b""


# --- PERMISSIVE ------------------------------------------------------------------------------


def test_permissive_takes_mtls_on_istio_alpn_and_plaintext_without_a_forged_identity(
        mesh: Mesh):
    over_mtls = seen_by_app(via_client(mesh, "permissive"))
    assert over_mtls["headers"][PEER] == mesh.sleep.identity.uri
    plain = seen_by_app(plain_get(mesh.permissive, headers={
        PEER: "spiffe://cluster.local/ns/foo/sa/forged"}))
    assert PEER not in plain["headers"]


# --- JWT -------------------------------------------------------------------------------------


def test_request_authentication_and_authorization_on_the_token(mesh: Mesh):
    def get(bearer: str | None) -> Answer | None:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return plain_get(mesh.jwt, headers=headers)

    alice = token(mesh.jwt_key, sub="alice")
    assert get(alice)[0] == 200  # type: ignore[index]
    assert get(token(mesh.jwt_key, sub="bob", groups=["staff", "admins"]))[0] == 200  # type: ignore[index]
    # a valid token, but neither the subject nor a claim the policy names
    assert get(token(mesh.jwt_key, sub="carol", groups=["staff"])) == \
        (403, b"RBAC: access denied")
    # no token: RequestAuthentication lets it through, the ALLOW policy refuses it
    assert get(None) == (403, b"RBAC: access denied")
    # an invalid token is refused before authorization, whatever it claims
    forged = token(ec.generate_private_key(ec.SECP256R1()), sub="alice")
    status, body = get(forged)  # type: ignore[misc]
    assert status == 401, body
    expired = token(mesh.jwt_key, sub="alice", exp=int(time.time()) - 3600)
    assert get(expired)[0] == 401  # type: ignore[index]


def _negotiated_alpn(mesh: Mesh, port: int, offered: list[str]) -> str | None:
    context = _tls_context(mesh, mesh.sleep)
    context.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw) as conn:
        return conn.selected_alpn_protocol()


@pytest.mark.parametrize("port", ["strict", "permissive"])
def test_mtls_negotiates_h2_when_an_http2_client_sidecar_offers_it(mesh: Mesh, port: str):
    """What a sidecar's HTTP/2 cluster (gRPC, HTTP2 ports) offers over auto mTLS, from the
    translation itself, gets ``h2`` from the server sidecar, so both ends speak HTTP/2
    through the tunnel; an HTTP/1.1 cluster's offer (Istio's ALPN only) gets none, and
    the server's codec detects HTTP/1.1. On PERMISSIVE the offer also picks the mTLS
    chain (it matches on Istio's ALPN)."""
    def offered(http2: bool) -> list[str]:
        context = tls_pb2.UpstreamTlsContext()
        assert tls.istio_mutual_upstream("sni", [], http2=http2).typed_config.Unpack(context)
        return list(context.common_tls_context.alpn_protocols)

    assert _negotiated_alpn(mesh, getattr(mesh, port), offered(True)) == "h2"
    assert _negotiated_alpn(mesh, getattr(mesh, port), offered(False)) is None

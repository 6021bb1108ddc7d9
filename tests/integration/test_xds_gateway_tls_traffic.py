"""Real TLS through a real Envoy built from the gateway's translated listeners, following
Istio's "Secure Gateways" task: no mocks.

Given a Gateway with, on port 443, a SIMPLE server for ``shop.example.com``, a MUTUAL
server for ``bookinfo.example.com`` (each with its own ``kubernetes.io/tls`` Secret) and
a PASSTHROUGH server for ``nginx.example.com`` routed by a VirtualService ``tls`` route to
a TLS backend, and on port 80 an ``httpsRedirect`` server; when clients connect, then:

- HTTPS with SNI ``shop.example.com`` presents the shop certificate and reaches the
  backend over the VirtualService's route (as https: ``x-forwarded-proto``);
- the MUTUAL host refuses a client without a certificate, or with one from another CA,
  and serves one with a certificate from the Secret's ``ca.crt``;
- a connection made for one host cannot reach another host's routes (SNI
  ``shop.example.com`` with ``Host: bookinfo.example.com`` is a 404), so no one gets
  around the MUTUAL server's client check;
- an SNI no server has is refused;
- ``nginx.example.com`` is not terminated: the client gets the backend's own certificate
  and talks TLS with the backend, which sees the client's SNI;
- plain HTTP on port 80 answers 301 to the https URL.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.integration.echo_app import echo_server, serve
from tests.integration.gateway_envoy import (
    Issued,
    gateway_bootstrap,
    gateway_snapshot,
    issue,
    tls_secret,
)
from tests.integration.security_envoy import static_cluster

from meshpilot.mesh.model import MeshService, MeshSnapshot, ProxyNode, ServicePort
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.xds.translate.gateway import gateway_resources

pytestmark = pytest.mark.timeout(120)

WEB = "web.default.svc.cluster.local"
NGINX = "nginx.example.com"
CONFIG = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-credential}
  - port: {number: 443, name: https-mtls, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: MUTUAL, credentialName: bookinfo-credential}
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [nginx.example.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [shop.example.com, bookinfo.example.com]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: web, port: {number: 80}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nginx, namespace: default}
spec:
  hosts: [nginx.example.com]
  gateways: [istio-system/public]
  tls:
  - match: [{port: 443, sniHosts: [nginx.example.com]}]
    route: [{destination: {host: nginx.example.com, port: {number: 443}}}]
"""



@dataclass(frozen=True)
class Edge:
    http: int
    https: int
    files: Path
    root: Issued  # signs the gateway's certificates
    backend_root: Issued  # signs the passthrough backend's
    client: Issued
    rogue: Issued
    backend_sni: list[str | None]


def _write(directory: Path, name: str, issued: Issued) -> None:
    (directory / f"{name}.pem").write_bytes(issued.cert_pem)
    (directory / f"{name}.key").write_bytes(issued.key_pem)


def _tls_backend(cert: Issued, files: Path, seen: list[str | None]
                 ) -> http.server.ThreadingHTTPServer:
    """``nginx.example.com``: an HTTPS server with its own certificate, recording the SNI
    each client sent."""
    _write(files, "nginx", cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files / "nginx.pem"), str(files / "nginx.key"))

    def record(_conn: ssl.SSLSocket, name: str | None, _context: ssl.SSLContext) -> None:
        seen.append(name)

    context.sni_callback = record
    server = echo_server()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def _snapshot(root: Issued, clients: Issued) -> MeshSnapshot:
    shop = issue("shop.example.com", root, dns=["shop.example.com"])
    bookinfo = issue("bookinfo.example.com", root, dns=["bookinfo.example.com"])
    return gateway_snapshot(
        CONFIG,
        {WEB: MeshService(WEB, "web", "default", (ServicePort(80, "http"),)),
         NGINX: MeshService(NGINX, NGINX, "default", (ServicePort(443, "tls", "TLS"),),
                            origin="ServiceEntry", resolution="STATIC")},
        secrets=(tls_secret("shop-credential", shop, root),
                 tls_secret("bookinfo-credential", bookinfo, root, ca=clients)))


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    work = tmp_path_factory.mktemp("gateway-tls")
    files = work / "certs"
    files.mkdir()
    root, clients, backend_root = (issue(cn, ca=True) for cn in (
        "example.com root", "client root", "nginx root"))
    client = issue("client.example.com", clients, client=True)
    rogue = issue("rogue.example.com", issue("rogue root", ca=True), client=True)
    for name, issued in (("root", root), ("backend-root", backend_root), ("client", client),
                         ("rogue", rogue)):
        _write(files, name, issued)
    seen: list[str | None] = []
    servers = [echo_server(),
               _tls_backend(issue(NGINX, backend_root, dns=[NGINX]), files, seen)]
    echo_port, tls_port = (serve(s) for s in servers)

    http_port, https_port = free_port(), free_port()
    node = ProxyNode(id="router~127.0.0.1~istio-ingressgateway.istio-system", kind="gateway",
                     namespace="istio-system", ip="127.0.0.1",
                     labels={"istio": "ingressgateway"},
                     gateway_ports={80: http_port, 443: https_port})
    built = gateway_resources(_snapshot(root, clients), node)
    assert built.problems == ()
    clusters = [static_cluster(f"outbound|80||{WEB}", "127.0.0.1", echo_port),
                static_cluster(f"outbound|443||{NGINX}", "127.0.0.1", tls_port)]
    config = gateway_bootstrap(node.id, built.listeners, built.routes, clusters, built.secrets)
    envoy = EnvoyProcess(config, name="gateway", work_dir=work)
    try:
        envoy.start()
        assert envoy.wait_live(15), envoy.log_tail()
        for port in (http_port, https_port):
            assert wait_port("127.0.0.1", port, timeout=15), port
        yield Edge(http_port, https_port, files, root, backend_root, client, rogue, seen)
    finally:
        envoy.stop()
        for s in servers:
            s.shutdown()
            s.server_close()


# --- the client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    peer_subject: str  # the CN of the certificate the server presented


def https_get(edge: Edge, sni: str, *, host: str | None = None, roots: str = "root",
              client: str | None = None, path: str = "/get") -> Answer | None:
    """GET over TLS to the gateway's 443 with ``sni``, verifying the server certificate
    for ``sni`` against ``roots``, presenting ``client``'s certificate if given; None when
    the connection fails before an answer."""
    context = ssl.create_default_context(cafile=str(edge.files / f"{roots}.pem"))
    if client is not None:
        context.load_cert_chain(str(edge.files / f"{client}.pem"),
                                str(edge.files / f"{client}.key"))
    try:
        with socket.create_connection(("127.0.0.1", edge.https), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=sni) as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or sni}\r\n"
                         "Connection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(conn)
            response.begin()
            body = response.read()
            cert = conn.getpeercert() or {}
    except (OSError, http.client.HTTPException):
        return None
    subject = dict(item for rdn in cert.get("subject", ()) for item in rdn)
    return Answer(response.status, dict(response.getheaders()), body,
                  str(subject.get("commonName", "")))


def _echoed(answer: Answer) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(answer.body)
    return data


# --- SIMPLE ---------------------------------------------------------------------------------


def test_simple_host_is_served_over_https_with_its_certificate(edge: Edge) -> None:
    answer = https_get(edge, "shop.example.com", path="/status/418")
    assert answer is not None
    assert (answer.status, answer.peer_subject) == (200, "shop.example.com")
    echoed = _echoed(answer)
    assert echoed["path"] == "/status/418"
    assert echoed["headers"]["host"] == "shop.example.com"
    assert echoed["headers"]["x-forwarded-proto"] == "https"  # TLS ended at the gateway


def test_an_sni_no_server_has_is_refused(edge: Edge) -> None:
    assert https_get(edge, "unknown.example.com") is None


def test_a_connection_for_one_host_cannot_reach_another_hosts_routes(edge: Edge) -> None:
    """Each server routes with its own route config: the Host header cannot take a
    connection made for the SIMPLE host to the MUTUAL host's routes."""
    answer = https_get(edge, "shop.example.com", host="bookinfo.example.com")
    assert answer is not None
    assert answer.status == 404


# --- MUTUAL ---------------------------------------------------------------------------------


def test_mutual_host_refuses_a_client_without_a_certificate(edge: Edge) -> None:
    assert https_get(edge, "bookinfo.example.com") is None


def test_mutual_host_refuses_a_certificate_from_another_ca(edge: Edge) -> None:
    assert https_get(edge, "bookinfo.example.com", client="rogue") is None


def test_mutual_host_serves_a_client_certificate_from_its_ca(edge: Edge) -> None:
    answer = https_get(edge, "bookinfo.example.com", client="client")
    assert answer is not None
    assert (answer.status, answer.peer_subject) == (200, "bookinfo.example.com")
    assert _echoed(answer)["headers"]["host"] == "bookinfo.example.com"


# --- PASSTHROUGH ----------------------------------------------------------------------------


def test_passthrough_host_reaches_the_backend_tls_untouched(edge: Edge) -> None:
    """The client verifies the backend's own certificate (another CA than the gateway's):
    the gateway only read the SNI and forwarded the bytes."""
    before = len(edge.backend_sni)
    answer = https_get(edge, NGINX, roots="backend-root", path="/passthrough")
    assert answer is not None
    assert (answer.status, answer.peer_subject) == (200, NGINX)
    assert _echoed(answer)["path"] == "/passthrough"
    assert "x-forwarded-proto" not in _echoed(answer)["headers"]  # no HTTP proxy between
    assert edge.backend_sni[before:] == [NGINX]
    # the gateway's own roots do not vouch for what it forwards
    assert https_get(edge, NGINX) is None


# --- httpsRedirect --------------------------------------------------------------------------


def test_plain_http_is_redirected_to_https(edge: Edge) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", edge.http, timeout=10)
    try:
        conn.request("GET", "/headers?x=1", headers={"Host": "shop.example.com"})
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 301
    assert response.getheader("location") == "https://shop.example.com/headers?x=1"

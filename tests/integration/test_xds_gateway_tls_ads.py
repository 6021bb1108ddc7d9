"""A gateway Envoy gets its TLS server over ADS from meshpilot's xDS server: the listener
names its certificate by SDS (``kubernetes://<credentialName>``), the secret comes on the
same stream before the listener that names it, and a rotated Secret reaches new
connections without a restart. Real Envoy, real TLS, in SotW and Delta.

The proxy's config is what ``build_resources`` gives the gateway, with its workload
secrets (``default``, ``ROOTCA``, which its auto-mTLS clusters name) beside the
credentials, as a config builder passing the gateway's SECRET set through gives it.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from tests.conftest import wait_for
from tests.integration.gateway_envoy import (
    Issued,
    WorkloadMaterial,
    gateway_snapshot,
    issue,
    tls_secret,
)
from tests.proxy_tokens import TOKENS, authenticator

from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot, ProxyNode, ServicePort
from meshpilot.proxy.bootstrap import bootstrap
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.xds import XdsServer, XdsSnapshot
from meshpilot.xds.translate import TYPE_SECRET, build_resources

pytestmark = pytest.mark.timeout(120)

WEB = "web.default.svc.cluster.local"
CONFIG = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-credential}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: web}}]}]
"""


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _snapshot(version: int, backend: int, shop: Issued, root: Issued) -> MeshSnapshot:
    return gateway_snapshot(
        CONFIG, {WEB: MeshService(WEB, "web", "default", (ServicePort(80, "http"),))},
        endpoints={WEB: (Endpoint(WEB, 80, "127.0.0.1", backend),)},
        secrets=(tls_secret("shop-credential", shop, root),), version=version)


def _presented(port: int, root: Issued, tmp: Path) -> tuple[int, int]:
    """(HTTP status, serial of the certificate the gateway presented) for SNI
    ``shop.example.com``."""
    (tmp / "root.pem").write_bytes(root.cert_pem)
    context = ssl.create_default_context(cafile=str(tmp / "root.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="shop.example.com") as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n")
        response = http.client.HTTPResponse(conn)
        response.begin()
        assert response.read() == b"hello"
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return response.status, x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def backend() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
def test_gateway_gets_its_certificate_over_ads_and_a_rotation(
        tmp_path: Path, backend: int, api_type: str) -> None:
    root = issue("example root", ca=True)
    first = issue("shop.example.com", root, dns=["shop.example.com"])
    https_port = free_port()
    node = ProxyNode(id="router~127.0.0.1~istio-ingressgateway.istio-system",
                     kind="gateway", namespace="istio-system", ip="127.0.0.1",
                     workload="istio-ingressgateway", labels={"istio": "ingressgateway"},
                     gateway_ports={443: https_port})
    gateway = issue("gateway", root)
    workload = WorkloadMaterial(gateway.cert_pem, gateway.key_pem, root.cert_pem)

    def config(snapshot: MeshSnapshot) -> Any:
        resources = build_resources(snapshot, node)
        resources.setdefault(TYPE_SECRET, {}).update(workload.secrets())
        return lambda _node: resources

    server = XdsServer(authenticate=authenticator())
    port = server.start()
    envoy = EnvoyProcess(bootstrap(node, xds_host="127.0.0.1", xds_port=port,
                                   api_type=api_type,  # type: ignore[arg-type]
                                   xds_token=TOKENS.for_proxy(node)),
                         name=f"gateway-{api_type}", work_dir=tmp_path)
    try:
        server.publish(XdsSnapshot(1, config(_snapshot(1, backend, first, root))))
        envoy.start()
        assert server.wait_acked(1, [node.id], timeout=30), server.status()
        assert wait_port("127.0.0.1", https_port, timeout=15)
        assert _presented(https_port, root, tmp_path) == (200, first.cert.serial_number)
        # the Secret is renewed: a new certificate for new connections, no restart
        second = issue("shop.example.com", root, dns=["shop.example.com"])
        server.publish(XdsSnapshot(2, config(_snapshot(2, backend, second, root))))
        assert server.wait_acked(2, [node.id], timeout=30), server.status()
        wait_for(lambda: _presented(https_port, root, tmp_path)[1] == second.cert.serial_number,
                 timeout=15)
    finally:
        envoy.stop()
        server.stop(0.2)

"""Envoy itself accepts a gateway's TLS servers as translated (``envoy --mode validate``):
SIMPLE, MUTUAL and OPTIONAL_MUTUAL with credentials and with certificate files, several
hosts on one port, PASSTHROUGH routes (one and weighted destinations), httpsRedirect, and
the SDS secrets the chains name, given as static secrets (see ``gateway_envoy``).

The bootstrap holds everything ``build_resources`` gives the gateway: its clusters (EDS
made STATIC) name the workload secrets ``default`` and ``ROOTCA`` for auto mTLS, so those
are static secrets too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.gateway_envoy import gateway_snapshot, issue, tls_secret, validate_gateway

from meshpilot.mesh.model import Endpoint, MeshService, ProxyNode, ServicePort
from meshpilot.xds.translate import TYPE_LISTENER, TYPE_SECRET, build_resources
from meshpilot.xds.translate.gateway import gateway_resources

pytestmark = pytest.mark.timeout(120)

WEB = "web.default.svc.cluster.local"
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [shop.example.com, redirect-only.example.com]
    tls: {{httpsRedirect: true}}
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [shop.example.com, "default/*.shop.example.com"]
    tls: {{mode: SIMPLE, credentialName: shop-cert, minProtocolVersion: TLSV1_3}}
  - port: {{number: 443, name: https-mtls, protocol: HTTPS}}
    hosts: [bookinfo.example.com]
    tls: {{mode: MUTUAL, credentialName: bookinfo-cert, subjectAltNames: [client.example]}}
  - port: {{number: 443, name: https-optional, protocol: HTTPS}}
    hosts: ["*"]
    tls: {{mode: OPTIONAL_MUTUAL, credentialName: bookinfo-cert}}
  - port: {{number: 443, name: tls, protocol: TLS}}
    hosts: [nginx.example.com, weighted.example.com]
    tls: {{mode: PASSTHROUGH}}
  - port: {{number: 8443, name: https-files, protocol: HTTPS}}
    hosts: ["*"]
    tls:
      mode: MUTUAL
      serverCertificate: {files}/server.pem
      privateKey: {files}/server.key
      caCertificates: {files}/ca.pem
      cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256]
"""
ROUTES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [shop.example.com, "*.shop.example.com", bookinfo.example.com, "*"]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: web}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nginx, namespace: default}
spec:
  hosts: [nginx.example.com, weighted.example.com]
  gateways: [istio-system/public]
  tls:
  - match: [{sniHosts: [nginx.example.com]}]
    route: [{destination: {host: nginx.example.com}}]
  - match: [{sniHosts: [weighted.example.com]}]
    route:
    - {destination: {host: nginx.example.com, port: {number: 443}}, weight: 90}
    - {destination: {host: web, port: {number: 80}}, weight: 10}
"""
NODE = ProxyNode(id="router~127.0.0.1~istio-ingressgateway.istio-system", kind="gateway",
                 namespace="istio-system", ip="127.0.0.1", labels={"istio": "ingressgateway"},
                 gateway_ports={80: 18080, 443: 18443, 8443: 18444})


def test_envoy_accepts_the_gateway_tls_listeners_and_secrets(tmp_path: Path) -> None:
    root = issue("example root", ca=True)
    shop = issue("shop.example.com", root, dns=["shop.example.com", "*.shop.example.com"])
    clients = issue("client root", ca=True)
    files = tmp_path / "certs"
    files.mkdir()
    (files / "server.pem").write_bytes(shop.cert_pem + root.cert_pem)
    (files / "server.key").write_bytes(shop.key_pem)
    (files / "ca.pem").write_bytes(clients.cert_pem)
    snapshot = gateway_snapshot(
        GATEWAY.format(files=files) + "---" + ROUTES,
        {WEB: MeshService(WEB, "web", "default", (ServicePort(80, "http"),)),
         "nginx.example.com": MeshService(
             "nginx.example.com", "nginx.example.com", "default",
             (ServicePort(443, "tls", "TLS"),), origin="ServiceEntry", resolution="STATIC")},
        endpoints={
            WEB: (Endpoint(WEB, 80, "127.10.0.1", 8080, has_sidecar=True),),
            "nginx.example.com": (Endpoint("nginx.example.com", 443, "127.0.0.1", 9443),),
        },
        secrets=(tls_secret("shop-cert", shop, root),
                 tls_secret("bookinfo-cert", shop, root, ca=clients)))
    assert gateway_resources(snapshot, NODE).problems == ()
    resources = build_resources(snapshot, NODE)
    assert set(resources[TYPE_SECRET]) == {
        "kubernetes://shop-cert", "kubernetes://bookinfo-cert",
        "kubernetes://bookinfo-cert-cacert"}
    chains = resources[TYPE_LISTENER]["gateway_443"].filter_chains
    assert [list(c.filter_chain_match.server_names) for c in chains] == [
        ["shop.example.com", "*.shop.example.com"], ["bookinfo.example.com"], [],
        ["nginx.example.com"], ["weighted.example.com"]]
    error = validate_gateway(NODE, resources, shop, root, tmp_path)
    assert error is None, error

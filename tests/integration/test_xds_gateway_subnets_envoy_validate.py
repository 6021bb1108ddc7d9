"""Envoy itself accepts what subnet matches and wildcard passthrough entries make of a
gateway's config (``envoy --mode validate``): a TCP server whose ``tcp`` routes match on
``sourceSubnet`` (one chain per source range, Istio's L4MatchAttributes), a TLS server
terminated on a TLS port whose decrypted connections split the same way (several chains
for one SNI name, told apart by source), and the dynamic forward proxy cluster of a
wildcard ServiceEntry resolved NONE (Istio's "Egress using Wildcard Hosts") among the
gateway's clusters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.gateway_envoy import gateway_snapshot, issue, tls_secret, validate_gateway

from meshpilot.mesh.model import Endpoint, MeshService, ProxyNode, ServicePort
from meshpilot.xds.translate import TYPE_CLUSTER, TYPE_LISTENER, build_resources
from meshpilot.xds.translate.gateway import gateway_resources

pytestmark = pytest.mark.timeout(120)

ECHO = "tcp-echo.default.svc.cluster.local"
WILD = "*.wiki.test"
DOCS = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 31401, name: tls, protocol: TLS}
    hosts: [echo.example.com]
    tls: {mode: SIMPLE, credentialName: echo-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/public]
  tcp:
  - match: [{sourceSubnet: 127.0.0.0/30}, {sourceSubnet: "::1"}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{sourceSubnet: 127.0.0.0/29, destinationSubnets: [127.0.0.0/8]}]
    route:
    - {destination: {host: tcp-echo, subset: v1}, weight: 50}
    - {destination: {host: tcp-echo, subset: v2}, weight: 50}
  - route: [{destination: {host: tcp-echo, subset: v1}}]
"""
NODE = ProxyNode(id="router~127.0.0.1~istio-ingressgateway.istio-system", kind="gateway",
                 namespace="istio-system", ip="127.0.0.1", labels={"istio": "ingressgateway"},
                 gateway_ports={31400: 18400, 31401: 18401})


def test_envoy_accepts_source_chains_and_passthrough_clusters(tmp_path: Path) -> None:
    root = issue("example root", ca=True)
    echo = issue("echo.example.com", root, dns=["echo.example.com"])
    snapshot = gateway_snapshot(
        DOCS,
        {ECHO: MeshService(ECHO, "tcp-echo", "default", (ServicePort(9000, "tcp", "TCP"),)),
         WILD: MeshService(WILD, WILD, "default", (ServicePort(443, "https", "HTTPS"),),
                           origin="ServiceEntry", location="MESH_EXTERNAL",
                           resolution="NONE")},
        endpoints={ECHO: (Endpoint(ECHO, 9000, "127.10.0.1", 9000, {"version": "v1"},
                                   has_sidecar=True),)},
        secrets=(tls_secret("echo-cert", echo, root),))
    assert gateway_resources(snapshot, NODE).problems == ()
    resources = build_resources(snapshot, NODE)
    tcp = resources[TYPE_LISTENER]["gateway_31400"].filter_chains
    assert len(tcp) == 3 and not tcp[2].filter_chain_match.source_prefix_ranges
    terminated = resources[TYPE_LISTENER]["gateway_31401"].filter_chains
    assert [list(c.filter_chain_match.server_names) for c in terminated] == [
        ["echo.example.com"]] * 3
    wild = resources[TYPE_CLUSTER][f"outbound|443||{WILD}"]
    assert wild.cluster_type.name == "envoy.clusters.dynamic_forward_proxy"
    error = validate_gateway(NODE, resources, echo, root, tmp_path)
    assert error is None, error

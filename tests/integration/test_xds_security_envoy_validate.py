"""Envoy itself accepts what the security translation generates (``envoy --mode validate``):
inbound listeners for every PeerAuthentication mode over HTTP and TCP, carrying the JWT
filter and RBAC filters built from policies that use every field and condition key; and
clusters for auto mTLS and every DestinationRule TLS mode.

Listeners keep their SDS-over-ADS secret references (an ADS stream is configured); bootstrap
clusters get static secrets instead (see ``security_envoy``: Envoy crashes on SDS over ADS
in *static* clusters, envoyproxy/envoy#15517, which CDS-delivered clusters avoid)."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.integration.security_envoy import (
    bootstrap,
    ca_secret,
    certificate_secret,
    inbound_http_filters,
    inbound_listener,
    inbound_tcp_filters,
    issue,
    static_cluster,
    with_tls,
    workload_secrets,
)

from meshpilot.api.networking import ClientTLSSettings
from meshpilot.api.security import AuthorizationPolicy
from meshpilot.proxy.envoy import envoy_binary, validate_bootstrap
from meshpilot.security import authorization_for, load_or_create_self_signed_ca
from meshpilot.security.keys import signature_hash
from meshpilot.xds.translate import jwt, tls

pytestmark = pytest.mark.timeout(120)

POLICIES = """
metadata: {name: everything, namespace: foo}
spec:
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/sleep, "cluster.local/ns/x/*", "*-bot", "*"]
        notPrincipals: [cluster.local/ns/default/sa/evil]
        requestPrincipals: ["https://issuer.example/alice", "https://issuer.example/*", "*"]
        notRequestPrincipals: ["*/mallory"]
        namespaces: [default, "team-*", "*"]
        notNamespaces: [kube-system]
        serviceAccounts: [default/sleep, curl]
        ipBlocks: [127.0.0.1, 10.0.0.0/8]
        notIpBlocks: [10.1.0.0/16]
        remoteIpBlocks: ["2001:db8::/32"]
        notRemoteIpBlocks: [192.168.0.1]
    to:
    - operation:
        hosts: [httpbin.foo.svc.cluster.local, "*.example.com", "api.*", "*"]
        notHosts: [admin.example.com]
        methods: [GET, "P*", "*"]
        notMethods: [DELETE]
        paths: [/exact, "/prefix/*", "*.png", "*", "/users/{*}/info", "/files/{**}"]
        notPaths: [/admin]
        ports: ["8080"]
        notPorts: ["9090"]
    when:
    - {key: "request.headers[x-version]", values: [v1, "v2*", "*-beta", "*"], notValues: [v0]}
    - {key: source.ip, values: [127.0.0.1], notValues: [10.0.0.0/8]}
    - {key: remote.ip, values: [127.0.0.0/8]}
    - {key: source.namespace, values: [default]}
    - {key: source.principal, values: [cluster.local/ns/default/sa/sleep]}
    - {key: request.auth.principal, values: [iss/sub]}
    - {key: request.auth.audiences, values: [api, "api-*"]}
    - {key: request.auth.presenter, values: [client]}
    - {key: "request.auth.claims[groups]", values: [admins]}
    - {key: "request.auth.claims[realm][role]", notValues: [guest]}
    - {key: destination.ip, values: [127.0.0.1]}
    - {key: destination.port, values: ["8080"]}
    - {key: connection.sni, values: ["*.example.com"]}
  - {}
---
metadata: {name: deny-admin, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"], methods: [POST]}}]}]
---
metadata: {name: audit, namespace: foo}
spec: {action: AUDIT, rules: [{from: [{source: {namespaces: [default]}}]}]}
---
metadata: {name: trial, namespace: foo, annotations: {istio.io/dry-run: "true"}}
spec: {action: ALLOW, rules: [{to: [{operation: {methods: [GET]}}]}]}
---
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
"""


def _jwks() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    return json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k1",
                                 "x": b64(key.x), "y": b64(key.y)}]})


def _crl(ca, path: Path) -> Path:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.signing_cert.subject)
           .last_update(now - timedelta(minutes=1)).next_update(now + timedelta(days=1))
           .sign(ca.signing_key, signature_hash(ca.signing_key)))
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_envoy_accepts_listeners_and_clusters_for_every_mode(tmp_path: Path):
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    bundle = ca.trust_bundle.pem
    root = tmp_path / "root.pem"
    root.write_bytes(bundle)
    httpbin = issue(ca, "foo", "httpbin", tmp_path / "certs")
    client = issue(ca, "foo", "client", tmp_path / "certs")
    objs = [AuthorizationPolicy.model_validate({"apiVersion": "security.istio.io/v1",
                                                "kind": "AuthorizationPolicy", **doc})
            for doc in yaml.safe_load_all(POLICIES)]
    authz = authorization_for(objs, "foo", {"app": "httpbin"})
    assert authz.allow and authz.deny and authz.audit
    jwt_filter = jwt.jwt_authn_filter([
        jwt.JwtRule(issuer="https://issuer.example", jwks=_jwks(), audiences=("api",),
                    output_claim_to_headers=(jwt.ClaimToHeader("x-sub", "sub"),)),
        jwt.JwtRule(issuer="https://remote.example", jwks_uri="https://remote.example/jwks",
                    jwks_cluster="jwks", from_headers=(jwt.JwtHeader("x-jwt"),)),
    ])
    assert jwt_filter is not None

    backend = "inbound|8080||"
    listeners = []
    for i, (mode, protocol) in enumerate(product(("STRICT", "PERMISSIVE", "DISABLE"),
                                                 ("HTTP", "TCP"))):
        make = (inbound_http_filters(backend, authz, "cluster.local", [jwt_filter])
                if protocol == "HTTP" else inbound_tcp_filters(backend, authz, "cluster.local"))
        listeners.append(inbound_listener(f"inbound_{mode}_{protocol}", 15100 + i, mode, make))

    sans = [client.identity.uri]
    sni = "outbound|8080||httpbin.foo.svc.cluster.local"

    def tls_cluster(name: str, settings: ClientTLSSettings | None, *, http2: bool = False,
                    has_sidecar: bool | None = None):  # type: ignore[no-untyped-def]
        cluster = static_cluster(name, "127.0.0.1", 18080, http2=http2, has_sidecar=has_sidecar)
        return with_tls(cluster, tls.upstream_tls(settings, sni=sni, subject_alt_names=sans,
                                                  http2=http2))

    crl = _crl(ca, tmp_path / "crl.pem")
    clusters = [
        static_cluster(backend, "127.0.0.1", 18081),
        static_cluster("jwks", "127.0.0.1", 18082),
        tls_cluster("auto-sidecar", None, has_sidecar=True),
        tls_cluster("auto-plain", None, has_sidecar=False),
        tls_cluster("istio-mutual-h2", ClientTLSSettings(mode="ISTIO_MUTUAL"), http2=True),
        tls_cluster("simple-system", ClientTLSSettings(mode="SIMPLE")),
        tls_cluster("simple-file", ClientTLSSettings(
            mode="SIMPLE", ca_certificates=str(root), ca_crl=str(crl), sni="api.example.com",
            subject_alt_names=["api.example.com", "spiffe://x/y", "10.0.0.1"])),
        tls_cluster("simple-insecure", ClientTLSSettings(mode="SIMPLE",
                                                         insecure_skip_verify=True)),
        tls_cluster("simple-credential", ClientTLSSettings(mode="SIMPLE",
                                                           credential_name="api-cred")),
        tls_cluster("mutual-files", ClientTLSSettings(
            mode="MUTUAL", client_certificate=str(client.chain_path),
            private_key=str(client.key_path), ca_certificates=str(root)), http2=True),
        tls_cluster("mutual-credential", ClientTLSSettings(mode="MUTUAL", credential_name="db")),
    ]
    secrets = [*workload_secrets(httpbin, bundle),
               ca_secret("kubernetes://api-cred-cacert", bundle),
               certificate_secret("kubernetes://db", client),
               ca_secret("kubernetes://db-cacert", bundle)]
    config = bootstrap("security-validate", listeners, clusters, secrets, ads_port=18083)

    # the listeners really do name their secrets over ADS
    assert '"ads": {}' in json.dumps(config["static_resources"]["listeners"])
    path = tmp_path / "security.json"
    path.write_text(json.dumps(config, indent=1))
    proc = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path),
                           "--disable-hot-restart", "-l", "warning"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
    # nothing relies on a field Envoy has deprecated (it would go away in a later Envoy)
    assert "Deprecated" not in proc.stderr, proc.stderr


def test_envoy_refuses_a_broken_rbac_config(tmp_path: Path):
    """The check can fail: the same RBAC filter with an invalid regex is refused."""
    objs = [AuthorizationPolicy.model_validate({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "p", "namespace": "foo"},
        "spec": {"rules": [{"from": [{"source": {"namespaces": ["default"]}}]}]}})]
    make = inbound_http_filters("backend", authorization_for(objs, "foo", {}), "cluster.local")
    listener = inbound_listener("inbound", 15200, "DISABLE", make)
    config = bootstrap("broken", [listener], [static_cluster("backend", "127.0.0.1", 1)], [])
    assert validate_bootstrap(config, tmp_path, "ok") is None
    text = json.dumps(config).replace(".*/ns/default/.*", "(unclosed")
    problem = validate_bootstrap(json.loads(text), tmp_path, "broken")
    assert problem is not None and "(unclosed" in problem

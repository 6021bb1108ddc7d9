"""Istio's Sidecar ``ingress`` end to end, after the Sidecar reference page's example of
an ingress listener on port 9080 forwarding to ``127.0.0.1:8080``: the app listens on a
port no container declares, the Service targets 9080, and once the Sidecar selects the
pod its sidecar listens on 9080, the Service's endpoints follow, and requests reach the
app. The inbound side keeps its security: a namespace-wide STRICT PeerAuthentication
refuses plaintext on the ingress port while in-mesh callers get through, and a DENY
AuthorizationPolicy answers 403 there. And Istio's sidecar ingress TLS: with the port's
mutual TLS mode DISABLE, the sidecar terminates TLS with the certificate of the Secret
``credentialName`` names (served to it over SDS by the control plane)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from tests import tls_pairs
from tests.builders import DEMO_APP, deployment, from_yaml, metadata, service
from tests.e2e.mesh import Mesh, version_of
from tests.e2e.scenario import Given, When
from tests.e2e.security import (
    applied,
    authorization_policy,
    becomes,
    peer_authentication,
    pod,
    status,
)

NS = "prod"
URL = f"http://ratings.{NS}:9080"
RATINGS_SIDECAR = f"""\
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {{name: ratings, namespace: {NS}}}
    spec:
      workloadSelector: {{labels: {{app: ratings}}}}
      ingress:
      - port: {{number: 9080, protocol: HTTP, name: somename}}
        defaultEndpoint: 127.0.0.1:8080
    """


def ratings() -> list[dict[str, object]]:
    """The app listens on its pod's address at 8080, which no container declares; the
    Service targets 9080."""
    app = {"name": "app", "command": list(DEMO_APP), "args": ["--version", "v1", "--port",
                                                              "8080"]}
    return [deployment("ratings", containers=[app], labels={"app": "ratings", "version": "v1"},
                       namespace=NS),
            service("ratings", port=9080, target_port=9080, namespace=NS)]


def test_an_ingress_listener_serves_the_app_and_keeps_the_inbound_security(
        mesh: Mesh, given: Given, when: When) -> None:
    given.applied(*ratings())
    # No container declares 9080: nothing listens there, the Service has no endpoint
    assert status(mesh.http, f"{URL}/") == "503"

    # When the Sidecar gives the pod an ingress listener on 9080 -> 127.0.0.1:8080
    when.apply(RATINGS_SIDECAR)

    # Then requests reach the app through it
    becomes(lambda: status(mesh.http, f"{URL}/"), "200", timeout=15)
    assert version_of(mesh.http.get(f"{URL}/")) == "v1"
    address = pod(mesh, NS, "ratings")["status"]["podIP"]
    plaintext = httpx.Client(base_url=f"http://{address}:9080", trust_env=False, timeout=5)
    assert status(plaintext, "/") == "200"  # PERMISSIVE by default: plaintext too

    # And with STRICT mutual TLS and a DENY policy in the namespace
    applied(mesh, peer_authentication(NS, "STRICT"), authorization_policy(
        "no-admin", NS, from_yaml("""
            action: DENY
            rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
            """)))
    becomes(lambda: status(plaintext, "/"), "RemoteProtocolError")  # refused in TLS
    assert status(mesh.http, f"{URL}/") == "200"  # the mesh proxy speaks mutual TLS
    denied = mesh.http.get(f"{URL}/admin")
    assert denied.status_code == 403 and denied.text == "RBAC: access denied"


TLS_SIDECAR = f"""\
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {{name: ratings, namespace: {NS}}}
    spec:
      workloadSelector: {{labels: {{app: ratings}}}}
      ingress:
      - port: {{number: 9443, protocol: HTTPS, name: https}}
        defaultEndpoint: 127.0.0.1:8080
        tls: {{mode: SIMPLE, credentialName: ratings-cert}}
    """


def test_ingress_tls_with_a_credential_where_mtls_is_disabled(
        mesh: Mesh, given: Given, when: When, tmp_path: Path) -> None:
    credential = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": metadata("ratings-cert", NS),
                  "data": {"tls.crt": tls_pairs.b64(tls_pairs.CHAIN),
                           "tls.key": tls_pairs.b64(tls_pairs.KEY)}}
    disabled = {**peer_authentication(NS, "PERMISSIVE", name="ratings",
                                      selector={"app": "ratings"})}
    disabled["spec"]["portLevelMtls"] = {"9443": {"mode": "DISABLE"}}
    given.applied(*ratings(), credential)
    applied(mesh, disabled)
    when.apply(TLS_SIDECAR)

    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls_pairs.pem(tls_pairs.CA))
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # the address is the pod's, not the certificate's name
    address = pod(mesh, NS, "ratings")["status"]["podIP"]
    client = httpx.Client(base_url=f"https://{address}:9443", verify=context, trust_env=False,
                          timeout=5)
    becomes(lambda: status(client, "/"), "200", timeout=15)
    assert version_of(client.get("/")) == "v1"

"""What a user sees of the mesh's security: the certificate each Envoy holds and the
roots it trusts (``proxy-config secret``), read from the real proxies and checked against
the CA's own files and against Envoy's ``/certs``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography import x509

from meshpilot.proxy.admin import AdminClient
from tests.builders import demo_app_container, deployment
from tests.conftest import run_cli
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given

TRUST_DOMAIN = "cluster.local"


def reviews(service_account: str = "reviews") -> dict[str, Any]:
    """Deployment ``reviews`` (demo app, one pod) running as ``service_account``."""
    return deployment("reviews", containers=[demo_app_container("v1")],
                      labels={"app": "reviews", "version": "v1"},
                      pod_spec={"serviceAccountName": service_account})


def cli_json(mesh: Mesh, *args: str) -> Any:
    result = run_cli(*args, "-o", "json", state_dir=mesh.cp.state_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def no_key_material(text: str) -> None:
    assert "PRIVATE KEY" not in text and "private_key" not in text, text[:2000]


def test_proxy_config_secret_shows_the_certificate_envoy_holds(mesh: Mesh, given: Given) -> None:
    given.applied(reviews(), myapp.version("v1"), myapp.service())
    pod = next(p for p in mesh.pods() if p["metadata"]["name"].startswith("reviews-"))
    name = pod["metadata"]["name"]
    root = x509.load_pem_x509_certificate(
        (mesh.cp.state_dir / "ca" / "root-cert.pem").read_bytes())
    root_subject = root.subject.rfc4514_string()

    body = cli_json(mesh, "proxy-config", "secret", name)
    items = {i["name"]: i for i in body["items"]}
    assert set(items) == {"default", "ROOTCA"}, items
    chain, roots = items["default"], items["ROOTCA"]
    assert (chain["type"], chain["status"], roots["type"]) == ("Cert Chain", "ACTIVE", "CA")
    assert chain["identity"] == f"spiffe://{TRUST_DOMAIN}/ns/default/sa/reviews"
    leaf = chain["certificates"][0]
    assert leaf["uriSans"] == [chain["identity"]] and not leaf["isCA"]
    assert leaf["issuer"] == root_subject
    now = datetime.now(UTC)
    not_before = datetime.fromisoformat(leaf["notBefore"])
    not_after = datetime.fromisoformat(leaf["notAfter"])
    assert not_before <= now < not_after and leaf["validNow"] and chain["validNow"]
    assert chain["trustedRoot"] == root_subject
    [trusted] = roots["certificates"]
    assert trusted["subject"] == root_subject and trusted["isCA"]
    assert int(trusted["serialNumber"], 16) == root.serial_number
    assert datetime.fromisoformat(trusted["notAfter"]) == root.not_valid_after_utc

    # Envoy's own account of what it serves names the same certificates.
    with AdminClient(pod["status"]["sidecarAdminSocket"], timeout=10) as admin:
        certs = admin.certs()["certificates"]
    envoy_serials = {c["serial_number"] for entry in certs for c in entry["cert_chain"]}
    assert envoy_serials == {leaf["serialNumber"]}, certs

    table = run_cli("proxy-config", "secret", name, state_dir=mesh.cp.state_dir)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0][:4] == ["RESOURCE", "NAME", "TYPE", "STATUS"]
    default_row = next(r for r in rows if r[0] == "default")
    assert default_row[1:6] == ["Cert", "Chain", "ACTIVE", "true", leaf["serialNumber"]]
    assert chain["identity"] in default_row
    assert f"default: identity {chain['identity']}, valid now, signed by trusted root " \
           f"{root_subject}" in table.stdout
    no_key_material(table.stdout + json.dumps(body))
    everything = run_cli("proxy-config", "all", name, state_dir=mesh.cp.state_dir)
    assert everything.returncode == 0 and "tls_certificate" in everything.stdout
    no_key_material(everything.stdout)


def test_proxy_config_secret_of_the_builtin_proxies_and_bad_names(
    mesh: Mesh, given: Given
) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    identities = {
        "mesh-proxy": f"spiffe://{TRUST_DOMAIN}/ns/default/sa/default",
        "istio-ingressgateway":
            f"spiffe://{TRUST_DOMAIN}/ns/istio-system/sa/istio-ingressgateway-service-account",
    }
    for proxy, identity in identities.items():
        body = cli_json(mesh, "proxy-config", "secret", proxy)
        chain = next(i for i in body["items"] if i["name"] == "default")
        assert chain["identity"] == identity, body
        assert chain["validNow"] and chain["trustedRoot"], body

    unknown = run_cli("proxy-config", "secret", "no-such-pod", state_dir=mesh.cp.state_dir)
    assert unknown.returncode == 1
    assert "no proxy named 'no-such-pod'" in unknown.stderr
    pod = mesh.pods_of("myapp-v1")[0]["metadata"]["name"]
    assert "mesh-proxy" in unknown.stderr and pod in unknown.stderr  # what is valid
    wrong = run_cli("proxy-config", "secrets", pod, state_dir=mesh.cp.state_dir)
    assert wrong.returncode == 1 and "secret, all" in wrong.stderr


STRICT_AND_ALLOW_NOTHING = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: myapp-closed, namespace: default}
spec:
  selector: {matchLabels: {app: myapp}}
"""


def section(text: str, title: str) -> str:
    """The lines of ``describe`` output from the heading ``title`` to the next heading."""
    lines = text[text.index(title):].splitlines()
    end = next((i for i, line in enumerate(lines[1:], 1) if not line.startswith(" ")),
               len(lines))
    return "\n".join(lines[:end])


def test_describe_pod_explains_what_its_sidecar_enforces(mesh: Mesh, given: Given) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    [pod] = mesh.pods_of("myapp-v1")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    state = mesh.cp.state_dir

    before = run_cli("describe", "pod", name, state_dir=state)
    assert before.returncode == 0, before.stderr
    assert f"Identity:         spiffe://{TRUST_DOMAIN}/ns/default/sa/default" in before.stdout
    assert "Deployment:       myapp-v1" in before.stdout and f"IP:               {ip}" in \
        before.stdout
    mtls = section(before.stdout, "Mutual TLS")
    assert "8080  HTTP      PERMISSIVE" in mtls
    assert "no PeerAuthentication applies; PERMISSIVE is the default" in mtls
    assert "Default: ALLOW (no ALLOW policy applies)" in before.stdout
    with httpx.Client(trust_env=False, timeout=10) as plain:  # PERMISSIVE: plaintext in
        assert plain.get(f"http://{ip}:8080/").status_code == 200

    mesh.apply(STRICT_AND_ALLOW_NOTHING)
    mesh.converge()
    after = run_cli("describe", "pod", name, state_dir=state)
    assert after.returncode == 0, after.stderr
    mtls = section(after.stdout, "Mutual TLS")
    assert "8080  HTTP      STRICT" in mtls
    assert "STRICT from namespace-wide policy default/strict" in mtls
    authz = section(after.stdout, "Authorization")
    assert "  DENY: <none>" in authz and "  CUSTOM: <none>" in authz
    assert "default/myapp-closed (0 rules): its selector {app=myapp} matches the workload" \
        in authz
    assert "allow-nothing: it has no rules, so it matches no request" in authz
    assert "Default: DENY (deny by default: an ALLOW policy applies)" in authz
    assert "Request authentication (RequestAuthentication): <none>" in after.stdout

    # ...and that is what the sidecar does: plaintext is refused, mTLS callers get 403.
    with httpx.Client(trust_env=False, timeout=10) as plain, \
            pytest.raises(httpx.TransportError):
        plain.get(f"http://{ip}:8080/")
    denied = mesh.http.get(URL)
    assert denied.status_code == 403 and denied.text == "RBAC: access denied"

    body = mesh.api.get(f"/api/v1/namespaces/default/pods/{name}/security").json()
    assert body["kind"] == "PodSecurity" and body["pod"]["metadata"]["name"] == name
    assert body["pod"]["spec"]["serviceAccountName"] == "default"
    [port] = body["peerAuthentication"]["ports"]
    assert (port["port"], port["mode"], port["level"]) == (8080, "STRICT", "namespace")
    assert body["authorization"]["allowRequired"] is True
    with mesh.cp.new_client(token="") as anonymous:
        assert anonymous.get(f"/api/v1/namespaces/default/pods/{name}/security"
                             ).status_code == 401

    unknown = run_cli("describe", "pod", "nope", state_dir=state)
    assert unknown.returncode == 1
    assert "no pod 'nope' in namespace default; pods there: " + name in unknown.stderr
    elsewhere = run_cli("describe", "pod", name, "-n", "prod", state_dir=state)
    assert elsewhere.returncode == 1 and "use -n default" in elsewhere.stderr
    # describe of a stored kind is as before
    stored = run_cli("describe", "peerauthentication", "strict", state_dir=state)
    assert stored.returncode == 0 and "mode: STRICT" in stored.stdout

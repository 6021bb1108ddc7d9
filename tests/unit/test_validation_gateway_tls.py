"""Gateway TLS servers at apply (and in analyze / describe): what the ingress gateway
could not serve is refused or warned about, with Istio's IST0161 checks for credentials."""

from __future__ import annotations

import textwrap

import pytest
from tests.tls_pairs import CA, CHAIN, KEY, b64, pem

from meshpilot.api.identity import ObjectKey
from meshpilot.validation import Diagnostic, Plan, StateObject, check_state, plan_apply


def plan(*texts: str, existing: list[StateObject] | None = None) -> Plan:
    text = "---\n".join(textwrap.dedent(t).lstrip("\n") for t in texts)
    return plan_apply([("gw.yaml", text)], existing or [])


def found(p: Plan, code: str) -> list[Diagnostic]:
    return [d for d in p.diagnostics if d.code == code]


def gateway(tls: str, *, protocol: str = "HTTPS", hosts: str = "[shop.example.com]") -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {{name: public, namespace: shop}}
    spec:
      selector: {{istio: ingressgateway}}
      servers:
      - port: {{number: 443, name: https, protocol: {protocol}}}
        hosts: {hosts}
        {tls}
    """


def secret(name: str = "shop-cert", *, type_: str = "kubernetes.io/tls", ca: bool = True,
           namespace: str = "istio-system") -> str:
    data = {"tls.crt": b64(CHAIN), "tls.key": b64(KEY)}
    if ca:
        data["ca.crt"] = b64(pem(CA))
    if type_ != "kubernetes.io/tls":
        data = {"password": b64(b"hunter2")}
    lines = "\n".join(f"      {k}: {v}" for k, v in data.items())
    return f"""
    apiVersion: v1
    kind: Secret
    metadata: {{name: {name}, namespace: {namespace}}}
    type: {type_}
    data:
{lines}
    """


SIMPLE = "tls: {mode: SIMPLE, credentialName: shop-cert}"
MUTUAL = "tls: {mode: MUTUAL, credentialName: shop-cert}"


# --- one document -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ISTIO_MUTUAL", "AUTO_PASSTHROUGH"])
def test_multi_cluster_modes_are_refused(mode: str) -> None:
    p = plan(gateway(f"tls: {{mode: {mode}}}", protocol="TLS"))
    assert not p.ok
    (d,) = found(p, "MP0037")
    assert d.path == "spec.servers[0].tls.mode"
    assert (d.file, d.line) == ("gw.yaml", 9)
    assert "multi-cluster" in d.message


@pytest.mark.parametrize(("tls", "protocol", "code", "path"), [
    ("", "HTTPS", "MP0011", "spec.servers[0].tls"),
    ("tls: {mode: SIMPLE, serverCertificate: /c.pem}", "HTTPS", "MP0011",
     "spec.servers[0].tls.privateKey"),
    ("tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}", "HTTPS",
     "MP0011", "spec.servers[0].tls.caCertificates"),
    ("", "UDP", "MP0045", "spec.servers[0].port.protocol"),
    ("tls: {mode: SIMPLE, credentialNames: [a, b]}", "HTTPS", "MP0038",
     "spec.servers[0].tls.credentialNames"),
    ("tls: {mode: SIMPLE, credentialName: shop-cert, privateKey: /k.pem}", "HTTPS", "MP0038",
     "spec.servers[0].tls.privateKey"),
])
def test_servers_the_gateway_could_not_serve_are_refused(tls: str, protocol: str, code: str,
                                                         path: str) -> None:
    p = plan(gateway(tls, protocol=protocol), secret())
    assert not p.ok
    assert [(d.code, d.path) for d in p.errors] == [(code, path)]


def test_servers_it_serves_are_accepted() -> None:
    files = "tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, " \
            "caCertificates: /ca.pem}"
    for tls in (SIMPLE, MUTUAL, files, "tls: {httpsRedirect: true}"):
        protocol = "HTTP" if "Redirect" in tls else "HTTPS"
        p = plan(gateway(tls, protocol=protocol), secret())
        assert p.ok and p.diagnostics == [], [d.format() for d in p.diagnostics]


# --- the credential ---------------------------------------------------------------------------


def test_a_credential_not_stored_yet_is_a_warning_naming_the_gateway_namespace() -> None:
    """The Gateway is in namespace shop, the Secret must be where the gateway runs."""
    p = plan(gateway(SIMPLE), secret(namespace="shop"))
    assert p.ok
    (d,) = found(p, "MP2010")
    assert d.path == "spec.servers[0].tls.credentialName"
    assert "no Secret istio-system/shop-cert" in d.message
    assert d.severity == "warning"


def test_a_secret_that_is_not_tls_is_an_error_without_its_values() -> None:
    p = plan(gateway(SIMPLE), secret(type_="Opaque"))
    assert not p.ok
    (d,) = found(p, "MP1003")
    assert d.path == "spec.servers[0].tls.credentialName"
    assert "is of type Opaque" in d.message
    assert "hunter2" not in d.format() and b64(b"hunter2") not in d.format()


def test_mutual_needs_ca_crt_in_the_secret() -> None:
    assert plan(gateway(MUTUAL), secret()).ok
    p = plan(gateway(MUTUAL), secret(ca=False))
    (d,) = found(p, "MP1003")
    assert "has no ca.crt" in d.message
    assert plan(gateway(SIMPLE), secret(ca=False)).ok


def test_a_secret_change_that_breaks_a_stored_gateway_is_refused_on_the_secret() -> None:
    stored = plan(gateway(MUTUAL), secret())
    existing = [StateObject(o.key, o.body) for o in stored.objects]
    p = plan(secret(ca=False), existing=existing)
    assert not p.ok
    (d,) = found(p, "MP1003")
    assert (d.object, d.path, d.file) == ("Secret istio-system/shop-cert", "data", "gw.yaml")
    assert "Gateway shop/public serves spec.servers[0]" in d.message


# --- passthrough ------------------------------------------------------------------------------

PASSTHROUGH = "tls: {mode: PASSTHROUGH}"
TLS_ROUTE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nginx, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [public]
  tls:
  - match: [{sniHosts: [shop.example.com]}]
    route: [{destination: {host: nginx.example.com}}]
"""


def test_passthrough_without_a_tls_route_is_a_warning() -> None:
    p = plan(gateway(PASSTHROUGH, protocol="TLS"))
    assert p.ok
    (d,) = found(p, "MP2011")
    assert d.path == "spec.servers[0].tls"
    assert not found(plan(gateway(PASSTHROUGH, protocol="TLS"), TLS_ROUTE), "MP2011")
    elsewhere = TLS_ROUTE.replace("sniHosts: [shop.example.com]", "sniHosts: [other.org]")
    assert found(plan(gateway(PASSTHROUGH, protocol="TLS"), elsewhere), "MP2011")


def test_analyze_and_describe_show_the_findings_of_stored_objects() -> None:
    body = plan(gateway(MUTUAL)).objects[0].body
    state = [StateObject(ObjectKey("networking.istio.io", "Gateway", "shop", "public"), body)]
    assert [d.code for d in check_state(state)] == []  # nothing changed, nothing said
    assert [d.code for d in check_state(state, all_objects=True)] == ["MP2010"]

"""The ingress gateway's TLS servers → Envoy listeners, route configs and SDS secrets,
asserted on the protobufs (Istio's "Secure Gateways": SIMPLE and MUTUAL with
credentialName, several hosts with their own certificates on one port, PASSTHROUGH by
SNI, httpsRedirect; multi-cluster modes refused)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from tests.tls_pairs import CA, CHAIN, KEY, b64, pem

from meshpilot.api.credentials import Secret
from meshpilot.api.networking import Gateway, VirtualService
from meshpilot.mesh.model import MeshService, MeshSnapshot, Named, ProxyNode, ServicePort
from meshpilot.xds import types
from meshpilot.xds.translate import (
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SECRET,
    build_resources,
    node_resources,
)
from meshpilot.xds.translate.gateway import gateway_resources, gateway_secrets
from meshpilot.xds.translate.gateway_tls import UnsupportedGatewayTls, server_mode

WEB = "web.default.svc.cluster.local"
NGINX = "nginx.example.com"
NODE = ProxyNode(id="gw", kind="gateway", namespace="istio-system", ip="127.0.0.1",
                 labels={"istio": "ingressgateway"}, gateway_ports={80: 18080, 443: 18443})
SERVICES = {
    WEB: MeshService(WEB, "web", "default", (ServicePort(80, "http"),)),
    NGINX: MeshService(NGINX, NGINX, "default", (ServicePort(443, "tls", "TLS"),),
                       origin="ServiceEntry", resolution="STATIC"),
    "other.example.com": MeshService("other.example.com", "other.example.com", "default",
                                     (ServicePort(8443, "tls", "TLS"),), origin="ServiceEntry"),
}


def _named(model: type, text: str) -> Named[Any]:
    obj = model.model_validate(yaml.safe_load(text))
    return Named(obj.metadata.namespace or "default", obj.metadata.name, obj)


def gateway(servers: str, name: str = "public") -> Named[Gateway]:
    return _named(Gateway, f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{servers}""")


def route(hosts: str, body: str = "http: [{route: [{destination: {host: web}}]}]",
          name: str = "web") -> Named[VirtualService]:
    return _named(VirtualService, f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: {hosts}
  gateways: [istio-system/public]
  {body}""")


def tls_secret(name: str, *, namespace: str = "istio-system", ca: bool = True,
               type_: str = "kubernetes.io/tls") -> Named[Secret]:
    data = {"tls.crt": b64(CHAIN), "tls.key": b64(KEY)}
    if ca:
        data["ca.crt"] = b64(pem(CA))
    obj = Secret.model_validate({"apiVersion": "v1", "kind": "Secret", "type": type_,
                                 "metadata": {"name": name, "namespace": namespace},
                                 "data": data})
    return Named(namespace, name, obj)


def snapshot(*objects: Named[Any]) -> MeshSnapshot:
    return MeshSnapshot(
        version=1, services=SERVICES, endpoints={},
        gateways=tuple(o for o in objects if isinstance(o.obj, Gateway)),
        virtual_services=tuple(o for o in objects if isinstance(o.obj, VirtualService)),
        secrets=tuple(o for o in objects if isinstance(o.obj, Secret)),
    )


def https(hosts: str, tls: str, name: str = "https", number: int = 443) -> str:
    return f"""\
  - port: {{number: {number}, name: {name}, protocol: HTTPS}}
    hosts: {hosts}
    tls: {tls}
"""


def context(chain: Any) -> tls_pb2.DownstreamTlsContext:
    out = tls_pb2.DownstreamTlsContext()
    assert chain.transport_socket.typed_config.Unpack(out)
    return out


def manager(chain: Any) -> hcm.HttpConnectionManager:
    out = hcm.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(out)
    return out


def proxy(chain: Any) -> tcp_proxy_pb2.TcpProxy:
    out = tcp_proxy_pb2.TcpProxy()
    assert chain.filters[0].typed_config.Unpack(out)
    return out


def listener(res: dict[str, Any], port: int = 443) -> listener_pb2.Listener:
    found: listener_pb2.Listener = res[TYPE_LISTENER][f"gateway_{port}"]
    return found


SIMPLE = https("[shop.example.com]", "{mode: SIMPLE, credentialName: shop-cert}")


# --------------------------------------------------------------------------- SIMPLE


def test_simple_server_terminates_tls_with_its_credential_and_routes_its_hosts() -> None:
    snap = snapshot(gateway(SIMPLE), route("[shop.example.com]"), tls_secret("shop-cert"))
    res = node_resources(snap, NODE)
    gw = listener(res)
    assert gw.address.socket_address.port_value == 18443
    assert [f.name for f in gw.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    (chain,) = gw.filter_chains
    assert list(chain.filter_chain_match.server_names) == ["shop.example.com"]
    ctx = context(chain)
    common = ctx.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == [
        "kubernetes://shop-cert"]
    assert common.tls_certificate_sds_secret_configs[0].sds_config.HasField("ads")
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]
    params = common.tls_params
    assert (params.tls_minimum_protocol_version, params.tls_maximum_protocol_version) == (
        common_pb2.TlsParameters.TLSv1_2, common_pb2.TlsParameters.TLSv1_3)
    assert not ctx.require_client_certificate.value
    assert not common.HasField("combined_validation_context")
    # the connection manager routes with this server's own route config
    name = "https.443.https.public.istio-system"
    http = manager(chain)
    assert http.rds.route_config_name == name
    assert http.use_remote_address.value is True
    config = res[TYPE_ROUTE][name]
    assert [list(v.domains) for v in config.virtual_hosts] == [["shop.example.com"]]
    assert config.virtual_hosts[0].routes[0].route.cluster == f"outbound|80||{WEB}"
    assert config.request_headers_to_add  # the gateway's source header, as on http.<port>
    # the credential itself, over SDS: the Secret's chain and key, nothing else
    (secret,) = res[TYPE_SECRET].values()
    assert secret.name == "kubernetes://shop-cert"
    assert secret.tls_certificate.certificate_chain.inline_bytes == CHAIN
    assert secret.tls_certificate.private_key.inline_bytes == KEY
    assert types.SECRET == TYPE_SECRET


def test_two_hosts_on_one_port_each_present_their_own_certificate() -> None:
    servers = (SIMPLE + https("[bookinfo.example.com]",
                              "{mode: SIMPLE, credentialName: bookinfo-cert}", name="https-b"))
    snap = snapshot(gateway(servers), route("[shop.example.com, bookinfo.example.com]"),
                    tls_secret("shop-cert"), tls_secret("bookinfo-cert"))
    res = node_resources(snap, NODE)
    chains = listener(res).filter_chains
    assert [list(c.filter_chain_match.server_names) for c in chains] == [
        ["shop.example.com"], ["bookinfo.example.com"]]
    assert [context(c).common_tls_context.tls_certificate_sds_secret_configs[0].name
            for c in chains] == ["kubernetes://shop-cert", "kubernetes://bookinfo-cert"]
    # each chain's routes hold its own hosts only: SNI shop + Host bookinfo finds no vhost
    shop = res[TYPE_ROUTE][manager(chains[0]).rds.route_config_name]
    book = res[TYPE_ROUTE][manager(chains[1]).rds.route_config_name]
    assert [v.domains[0] for v in shop.virtual_hosts] == ["shop.example.com"]
    assert [v.domains[0] for v in book.virtual_hosts] == ["bookinfo.example.com"]
    assert sorted(res[TYPE_SECRET]) == ["kubernetes://bookinfo-cert", "kubernetes://shop-cert"]


def test_wildcard_host_matches_any_sni_and_namespace_prefix_is_not_sni() -> None:
    servers = https('["*"]', "{mode: SIMPLE, credentialName: shop-cert}") + https(
        '["default/*.example.org"]', "{mode: SIMPLE, credentialName: shop-cert}",
        name="https-org")
    res = node_resources(snapshot(gateway(servers), tls_secret("shop-cert")), NODE)
    assert [list(c.filter_chain_match.server_names) for c in listener(res).filter_chains] == [
        [], ["*.example.org"]]
    assert list(res[TYPE_SECRET]) == ["kubernetes://shop-cert"]  # one secret, named twice


def test_protocol_versions_and_cipher_suites() -> None:
    tls = ("{mode: SIMPLE, credentialName: shop-cert, minProtocolVersion: TLSV1_3, "
           "cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256]}")
    res = node_resources(snapshot(gateway(https("[a.example]", tls)), tls_secret("shop-cert")),
                         NODE)
    params = context(listener(res).filter_chains[0]).common_tls_context.tls_params
    assert params.tls_minimum_protocol_version == common_pb2.TlsParameters.TLSv1_3
    assert list(params.cipher_suites) == ["ECDHE-ECDSA-AES128-GCM-SHA256"]
    bad = "{mode: SIMPLE, credentialName: shop-cert, minProtocolVersion: TLSV1_3, " \
          "maxProtocolVersion: TLSV1_2}"
    built = gateway_resources(snapshot(gateway(https("[a.example]", bad)),
                                       tls_secret("shop-cert")), NODE)
    assert built.listeners == ()
    assert [p.field for p in built.problems] == ["tls.maxProtocolVersion"]


def test_certificate_files_instead_of_a_credential() -> None:
    tls = ("{mode: MUTUAL, serverCertificate: /etc/certs/server.pem, privateKey: "
           "/etc/certs/key.pem, caCertificates: /etc/certs/ca.pem, caCrl: /etc/certs/crl.pem}")
    res = node_resources(snapshot(gateway(https("[a.example]", tls))), NODE)
    common = context(listener(res).filter_chains[0]).common_tls_context
    (cert,) = common.tls_certificates
    assert (cert.certificate_chain.filename, cert.private_key.filename) == (
        "/etc/certs/server.pem", "/etc/certs/key.pem")
    assert common.validation_context.trusted_ca.filename == "/etc/certs/ca.pem"
    assert common.validation_context.crl.filename == "/etc/certs/crl.pem"
    assert TYPE_SECRET not in res
    # a terminating server without any certificate is left out, saying which field
    built = gateway_resources(snapshot(gateway(https(
        "[a.example]", "{mode: SIMPLE, serverCertificate: /etc/certs/server.pem}"))), NODE)
    assert built.listeners == ()
    (problem,) = built.problems
    assert problem.field == "tls.privateKey"
    assert "credentialName, or serverCertificate and privateKey" in problem.message


# --------------------------------------------------------------------------- MUTUAL


def test_mutual_requires_a_client_certificate_verified_against_the_credential_ca() -> None:
    tls = ("{mode: MUTUAL, credentialName: shop-cert, subjectAltNames: [client.example.com], "
           "verifyCertificateSpki: [c2Q=]}")
    res = node_resources(snapshot(gateway(https("[shop.example.com]", tls)),
                                  tls_secret("shop-cert")), NODE)
    ctx = context(listener(res).filter_chains[0])
    assert ctx.require_client_certificate.value is True
    combined = ctx.common_tls_context.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "kubernetes://shop-cert-cacert"
    default = combined.default_validation_context
    assert [(m.san_type, m.matcher.exact) for m in default.match_typed_subject_alt_names] == [
        (common_pb2.SubjectAltNameMatcher.DNS, "client.example.com")]
    assert list(default.verify_certificate_spki) == ["c2Q="]
    ca = res[TYPE_SECRET]["kubernetes://shop-cert-cacert"]
    assert ca.validation_context.trusted_ca.inline_bytes == pem(CA)
    assert "kubernetes://shop-cert" in res[TYPE_SECRET]


def test_optional_mutual_verifies_a_certificate_but_lets_clients_without_one_in() -> None:
    res = node_resources(snapshot(gateway(https(
        "[shop.example.com]", "{mode: OPTIONAL_MUTUAL, credentialName: shop-cert}")),
        tls_secret("shop-cert")), NODE)
    ctx = context(listener(res).filter_chains[0])
    assert ctx.HasField("require_client_certificate")
    assert ctx.require_client_certificate.value is False
    assert ctx.common_tls_context.HasField("combined_validation_context")


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(("secret", "mode", "needle"), [
    (None, "SIMPLE", "no Secret istio-system/shop-cert"),
    (tls_secret("shop-cert", namespace="default"), "SIMPLE", "its own namespace (istio-system)"),
    (tls_secret("shop-cert", type_="Opaque"), "SIMPLE", "is of type Opaque"),
    (tls_secret("shop-cert", ca=False), "MUTUAL", "ca.crt, which Secret istio-system/shop-cert"),
])
def test_a_credential_that_cannot_serve_leaves_its_server_out_and_says_why(
        secret: Named[Secret] | None, mode: str, needle: str) -> None:
    """Istio's gateway serves no host whose credential it cannot read; the other servers
    are served, and the problem names the Secret, never its values."""
    servers = https("[shop.example.com]", f"{{mode: {mode}, credentialName: shop-cert}}") + \
        https("[ok.example.com]", "{mode: SIMPLE, credentialName: ok-cert}", name="https-ok")
    objects = [gateway(servers), tls_secret("ok-cert"), *([secret] if secret else [])]
    built = gateway_resources(snapshot(*objects), NODE)
    (gw,) = built.listeners
    assert [list(c.filter_chain_match.server_names) for c in gw.filter_chains] == [
        ["ok.example.com"]]
    assert [s.name for s in built.secrets] == ["kubernetes://ok-cert"]
    (problem,) = built.problems
    assert (problem.gateway, problem.server, problem.port, problem.field) == (
        "istio-system/public", 0, 443, "tls.credentialName")
    assert needle in problem.message
    text = str(problem)
    assert text.startswith("Gateway istio-system/public spec.servers[0].tls.credentialName")
    for value in (CHAIN, KEY, b64(KEY).encode()):
        assert value.decode() not in text
    secrets, problems = gateway_secrets(snapshot(*objects), NODE)
    assert [s.name for s in secrets] == ["kubernetes://ok-cert"]
    assert problems == [problem]


# --------------------------------------------------------------------------- PASSTHROUGH

PASSTHROUGH = """\
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [nginx.example.com, other.example.com]
    tls: {mode: PASSTHROUGH}
"""
TLS_ROUTES = """tls:
  - match: [{sniHosts: [nginx.example.com]}]
    route: [{destination: {host: nginx.example.com}}]
  - match: [{port: 443, sniHosts: [other.example.com]}]
    route:
    - {destination: {host: nginx.example.com, port: {number: 443}}, weight: 80}
    - {destination: {host: other.example.com}, weight: 20}
    - {destination: {host: web}, weight: 0}
  - match: [{sniHosts: [elsewhere.org]}]
    route: [{destination: {host: nginx.example.com}}]"""


def test_passthrough_forwards_by_sni_to_the_tls_routes_without_terminating() -> None:
    vs = route("[nginx.example.com, other.example.com, elsewhere.org]", TLS_ROUTES, name="tls")
    built = gateway_resources(snapshot(gateway(PASSTHROUGH), vs), NODE)
    (gw,) = built.listeners
    assert [f.name for f in gw.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    first, second = gw.filter_chains  # elsewhere.org is not a host of the server
    assert not first.HasField("transport_socket")  # not terminated
    assert list(first.filter_chain_match.server_names) == ["nginx.example.com"]
    assert proxy(first).cluster == f"outbound|443||{NGINX}"
    assert list(second.filter_chain_match.server_names) == ["other.example.com"]
    weighted = proxy(second).weighted_clusters.clusters
    assert [(w.name, w.weight) for w in weighted] == [
        (f"outbound|443||{NGINX}", 80), ("outbound|8443||other.example.com", 20)]
    assert built.routes == () and built.secrets == () and built.problems == ()


def test_passthrough_with_no_tls_route_bound_serves_nothing_and_says_so() -> None:
    built = gateway_resources(snapshot(gateway(PASSTHROUGH), route("[shop.example.com]")), NODE)
    assert built.listeners == ()
    (problem,) = built.problems
    assert problem.field == "tls.mode"
    assert "no route bound to this Gateway" in problem.message


def test_terminating_and_passthrough_servers_share_a_port_by_sni() -> None:
    vs = route("[nginx.example.com]", TLS_ROUTES.split("  - match: [{port")[0], name="tls")
    servers = SIMPLE + PASSTHROUGH.replace("name: tls", "name: tls-pass")
    built = gateway_resources(snapshot(gateway(servers), vs, tls_secret("shop-cert"),
                                       route("[shop.example.com]")), NODE)
    (gw,) = built.listeners
    assert [list(c.filter_chain_match.server_names) for c in gw.filter_chains] == [
        ["shop.example.com"], ["nginx.example.com"]]
    assert [c.HasField("transport_socket") for c in gw.filter_chains] == [True, False]


# --------------------------------------------------------------------------- conflicts


def test_a_host_served_twice_on_a_port_is_kept_by_the_first_server() -> None:
    servers = SIMPLE + https("[shop.example.com, new.example.com]",
                             "{mode: SIMPLE, credentialName: shop-cert}", name="again")
    built = gateway_resources(snapshot(gateway(servers), tls_secret("shop-cert")), NODE)
    (gw,) = built.listeners
    assert [list(c.filter_chain_match.server_names) for c in gw.filter_chains] == [
        ["shop.example.com"], ["new.example.com"]]
    (problem,) = built.problems
    assert (problem.server, problem.field) == (1, "hosts")
    assert "shop.example.com already served on port 443" in problem.message


def test_plaintext_and_tls_servers_cannot_share_a_port() -> None:
    servers = """\
  - port: {number: 443, name: http, protocol: HTTP}
    hosts: [plain.example.com]
""" + SIMPLE
    built = gateway_resources(snapshot(gateway(servers), tls_secret("shop-cert")), NODE)
    (gw,) = built.listeners
    assert not gw.listener_filters  # the plaintext listener of the first server
    (problem,) = built.problems
    assert (problem.server, problem.field) == (1, "port")
    assert "already serves plaintext HTTP" in problem.message


@pytest.mark.parametrize(("protocol", "tls", "field"), [
    ("HTTPS", "{mode: ISTIO_MUTUAL}", "tls.mode"),
    ("TLS", "{mode: AUTO_PASSTHROUGH}", "tls.mode"),
    ("UDP", None, "port.protocol"),
    ("HTTPS", None, "tls"),
])
def test_servers_meshpilot_cannot_serve_are_refused_naming_the_field(
        protocol: str, tls: str | None, field: str) -> None:
    text = f"  - port: {{number: 443, name: x, protocol: {protocol}}}\n    hosts: [a.example]\n"
    if tls:
        text += f"    tls: {tls}\n"
    gw = gateway(text)
    with pytest.raises(UnsupportedGatewayTls) as caught:
        server_mode(gw.obj.spec.servers[0])
    assert caught.value.field == field
    built = gateway_resources(snapshot(gw, tls_secret("shop-cert")), NODE)
    assert built.listeners == ()
    assert [p.field for p in built.problems] == [field]


def test_credential_names_and_several_certificates_are_refused() -> None:
    built = gateway_resources(snapshot(gateway(https(
        "[a.example]", "{mode: SIMPLE, credentialNames: [a, b]}"))), NODE)
    assert [p.field for p in built.problems] == ["tls.credentialNames"]


# --------------------------------------------------------------------------- httpsRedirect


def test_https_redirect_answers_301_on_the_http_server() -> None:
    servers = """\
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.example.com, "default/info.example.com"]
    tls: {httpsRedirect: true}
""" + SIMPLE
    snap = snapshot(gateway(servers), route("[shop.example.com]"), tls_secret("shop-cert"))
    res = build_resources(snap, NODE)
    plain = res[TYPE_ROUTE]["http.80"]
    by_domain = {v.domains[0]: v for v in plain.virtual_hosts}
    assert set(by_domain) == {"shop.example.com", "info.example.com"}
    assert all(v.require_tls == rc.VirtualHost.ALL for v in by_domain.values())
    assert by_domain["shop.example.com"].routes  # routed, though Envoy redirects first
    assert not by_domain["info.example.com"].routes  # no VirtualService: redirect only
    tls_routes = res[TYPE_ROUTE]["https.443.https.public.istio-system"]
    assert tls_routes.virtual_hosts[0].require_tls == rc.VirtualHost.NONE

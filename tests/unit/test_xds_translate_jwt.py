"""RequestAuthentication JWT rules → the jwt_authn filter, asserted on the protobufs:
Istio's "valid token or none" requirement, provider names and order, keys inline or
fetched, token locations and outputs, the payload where RBAC reads it, refusals."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from meshpilot.api.request_authentication import RequestAuthentication
from meshpilot.mesh.model import InboundPort, MeshSnapshot, Named, ProxyNode
from meshpilot.xds.translate import clusters, jwt, listeners, rbac
from meshpilot.xds.translate.workload_security import inbound_security, jwks_cluster

JWKS = '{"keys": []}'


def config(*rules: jwt.JwtRule) -> dict[str, Any]:
    f = jwt.jwt_authn_filter(rules)
    assert f is not None and f.name == "envoy.filters.http.jwt_authn"
    out = jwt_pb2.JwtAuthentication()
    assert f.typed_config.Unpack(out)
    return json_format.MessageToDict(out)


def test_no_rules_no_filter():
    assert jwt.jwt_authn_filter([]) is None
    assert jwt.jwt_authentication([]) is None


def test_one_rule_requires_a_valid_token_or_none_and_stores_the_payload_for_rbac():
    found = config(jwt.JwtRule(issuer="https://issuer.example", jwks=JWKS,
                               audiences=("api",)))
    assert found["providers"] == {"origins-0": {
        "issuer": "https://issuer.example",
        "audiences": ["api"],
        "localJwks": {"inlineString": JWKS},
        "payloadInMetadata": "payload",
    }}
    assert found["rules"] == [{"match": {"prefix": "/"}, "requires": {"requiresAny": {
        "requirements": [{"providerName": "origins-0"}, {"allowMissing": {}}]}}}]
    assert found["bypassCorsPreflight"] is True
    # the RBAC translation reads the payload from the same place
    assert (rbac.JWT_FILTER, rbac.JWT_PAYLOAD) == ("envoy.filters.http.jwt_authn", "payload")


def test_several_rules_are_sorted_by_issuer_and_any_valid_token_or_none_passes():
    found = config(jwt.JwtRule(issuer="https://z.example", jwks=JWKS),
                   jwt.JwtRule(issuer="https://a.example", jwks=JWKS))
    assert found["providers"]["origins-0"]["issuer"] == "https://a.example"
    assert found["providers"]["origins-1"]["issuer"] == "https://z.example"
    valid_or_none = [{"requiresAny": {"requirements": [{"providerName": name},
                                                       {"allowMissing": {}}]}}
                     for name in ("origins-0", "origins-1")]
    assert found["rules"][0]["requires"] == {"requiresAny": {"requirements": [
        {"providerName": "origins-0"}, {"providerName": "origins-1"},
        {"requiresAll": {"requirements": valid_or_none}},
    ]}}


def test_keys_fetched_through_the_callers_cluster_with_istios_timeout_and_cache():
    found = config(jwt.JwtRule(issuer="i", jwks_uri="https://i.example/jwks.json",
                               jwks_cluster="outbound|443||i.example"))
    assert found["providers"]["origins-0"]["remoteJwks"] == {
        "httpUri": {"uri": "https://i.example/jwks.json", "cluster": "outbound|443||i.example",
                    "timeout": "5s"},
        "cacheDuration": "300s",
    }
    timed = config(jwt.JwtRule(issuer="i", jwks_uri="https://i.example/jwks.json",
                               jwks_cluster="c", timeout="1.5s"))
    assert timed["providers"]["origins-0"]["remoteJwks"]["httpUri"]["timeout"] == "1.500s"


def test_token_locations_and_outputs():
    found = config(jwt.JwtRule(
        issuer="i", jwks=JWKS,
        from_headers=(jwt.JwtHeader("x-jwt"), jwt.JwtHeader("Authorization", "Bearer ")),
        from_params=("token",), from_cookies=("session",), forward_original_token=True,
        output_payload_to_header="x-jwt-payload",
        output_claim_to_headers=(jwt.ClaimToHeader("x-user", "sub"),),
    ))["providers"]["origins-0"]
    assert found["fromHeaders"] == [{"name": "x-jwt"},
                                    {"name": "Authorization", "valuePrefix": "Bearer "}]
    assert found["fromParams"] == ["token"]
    assert found["fromCookies"] == ["session"]
    assert found["forward"] is True
    assert found["forwardPayloadHeader"] == "x-jwt-payload"
    assert found["claimToHeaders"] == [{"headerName": "x-user", "claimName": "sub"}]


@pytest.mark.parametrize("rule,field", [
    (jwt.JwtRule(issuer="i"), "jwks"),
    (jwt.JwtRule(issuer="i", jwks_uri="https://i/jwks"), "jwksUri"),
    (jwt.JwtRule(issuer="", jwks=JWKS), "issuer"),
])
def test_rules_that_cannot_be_translated_are_refused(rule: jwt.JwtRule, field: str):
    with pytest.raises(jwt.UnsupportedJwtRule) as caught:
        jwt.jwt_authn_filter([rule])
    assert caught.value.field == field


def test_the_clusters_keys_are_fetched_through_one_per_scheme_host_and_port():
    def rule(issuer: str, uri: str | None) -> jwt.JwtRule:
        return jwt.JwtRule(issuer=issuer, jwks_uri=uri,
                           jwks_cluster=jwks_cluster(uri) if uri else None,
                           jwks=None if uri else '{"keys": []}')

    built = list(clusters.jwks([
        rule("a", "https://login.example.com/keys"),
        rule("b", "https://login.example.com/other-keys"),  # same cluster
        rule("c", "http://127.0.0.1:8081/jwks.json"),
        rule("d", None),  # inline keys: no cluster
    ]))
    assert [c.name for c in built] == ["jwks|https|login.example.com|443",
                                       "jwks|http|127.0.0.1|8081"]
    secure, plain = built
    assert secure.type == plain.type == cluster_pb2.Cluster.LOGICAL_DNS
    address = plain.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "127.0.0.1", 8081)
    assert not plain.HasField("transport_socket")
    context = tls_pb2.UpstreamTlsContext()
    secure.transport_socket.typed_config.Unpack(context)
    assert context.sni == "login.example.com"
    assert context.common_tls_context.validation_context.HasField("system_root_certs")


def test_a_request_authentication_carries_its_claim_headers_and_timeout_to_the_rule():
    """The RequestAuthentication fields reach the JWT rule the filter is built from (they
    were accepted and dropped once), and the inbound listener removes a client's header
    of a claim's name before any filter runs."""
    policy = RequestAuthentication.model_validate({
        "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": "foo"},
        "spec": {"jwtRules": [{"issuer": "i", "jwks": JWKS, "timeout": "2s",
                               "outputClaimToHeaders": [{"header": "X-Sub", "claim": "sub"}]}]}})
    node = ProxyNode(id="sidecar~127.10.0.5~h.foo", kind="sidecar", namespace="foo",
                     ip="127.10.0.5", inbound=(InboundPort(8080, 40005),))
    snap = MeshSnapshot(version=1, services={}, endpoints={},
                        request_authentications=(Named("foo", "jwt", policy),))
    security = inbound_security(snap, node)
    (rule,) = security.jwt_rules
    assert rule.output_claim_to_headers == (jwt.ClaimToHeader("X-Sub", "sub"),)
    assert rule.timeout == "2s"
    provider = next(iter(config(rule)["providers"].values()))
    assert provider["claimToHeaders"] == [{"headerName": "X-Sub", "claimName": "sub"}]
    listener = listeners.inbound(node, node.inbound[0], security)
    for chain in listener.filter_chains:  # mTLS and plaintext (PERMISSIVE)
        manager = hcm_pb2.HttpConnectionManager()
        assert chain.filters[0].typed_config.Unpack(manager)
        removed = []
        for extension in manager.early_header_mutation_extensions:
            mutation = early_hm_pb2.HeaderMutation()
            assert extension.typed_config.Unpack(mutation)
            removed += [m.remove for m in mutation.mutations if m.remove]
        assert "x-sub" in removed


def test_the_keys_cluster_asks_the_mesh_configs_resolvers():
    """A ``jwksUri``'s host is a DNS name the workload's Envoy resolves: like every
    DNS-resolved cluster (Istio gives its DNS clusters a c-ares config), it asks the mesh
    config's ``dnsResolvers`` when there are some, else the host's resolv.conf."""
    import dataclasses

    from meshpilot.api.mesh_config import DnsResolver, MeshConfig
    from meshpilot.xds.translate import TYPE_CLUSTER, build_resources

    policy = RequestAuthentication.model_validate({
        "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": "foo"},
        "spec": {"jwtRules": [{"issuer": "i", "jwksUri": "http://keys.test:8081/jwks"}]}})
    node = ProxyNode(id="sidecar~127.10.0.5~h.foo", kind="sidecar", namespace="foo",
                     ip="127.10.0.5", inbound=(InboundPort(8080, 40005),))
    snap = MeshSnapshot(version=1, services={}, endpoints={},
                        request_authentications=(Named("foo", "jwt", policy),))
    name = "jwks|http|keys.test|8081"
    plain = build_resources(snap, node)[TYPE_CLUSTER][name]
    assert not plain.HasField("typed_dns_resolver_config")
    resolved = dataclasses.replace(snap, mesh_config=MeshConfig(
        dns_resolvers=(DnsResolver("127.0.0.1", 5353),)))
    cluster = build_resources(resolved, node)[TYPE_CLUSTER][name]
    assert cluster.type == cluster_pb2.Cluster.LOGICAL_DNS
    assert cluster.typed_dns_resolver_config.name == "envoy.network.dns_resolver.cares"
    assert b"127.0.0.1" in cluster.typed_dns_resolver_config.typed_config.value

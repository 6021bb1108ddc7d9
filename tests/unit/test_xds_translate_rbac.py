"""AuthorizationPolicy → Envoy RBAC, asserted on the generated protobufs, following the
cases of Istio's authorization tasks (allow-nothing, deny-all, allow by principal, deny by
path prefix, namespaces, ipBlocks, when headers), every field and condition key, Istio's
TCP reading of HTTP-only fields, dry runs, and refusals."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac
from google.protobuf import json_format

from meshpilot.api.security import AuthorizationPolicy
from meshpilot.security import WorkloadAuthorization, authorization_for
from meshpilot.xds.translate import rbac

LABELS = {"app": "httpbin"}
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
ANY_PRINCIPAL = [{"andIds": {"ids": [{"any": True}]}}]
ANY_PERMISSION = [{"andRules": {"rules": [{"any": True}]}}]


def policies(text: str, namespace: str = "foo") -> WorkloadAuthorization:
    objs = []
    for i, doc in enumerate(yaml.safe_load_all(text)):
        doc.setdefault("apiVersion", "security.istio.io/v1")
        doc.setdefault("kind", "AuthorizationPolicy")
        meta = doc.setdefault("metadata", {})
        meta.setdefault("namespace", namespace)
        meta.setdefault("creationTimestamp", f"2024-01-01T00:00:{i:02d}Z")
        objs.append(AuthorizationPolicy.model_validate(doc))
    return authorization_for(objs, namespace, LABELS)


def http(text: str, trust_domain: str = "cluster.local") -> list[tuple[str, dict[str, Any]]]:
    """(action, policies as JSON) per HTTP filter, with shadow rules under '__shadow__'."""
    out = []
    for f in rbac.http_rbac_filters(policies(text), trust_domain):
        assert f.name == "envoy.filters.http.rbac"
        config = http_rbac.RBAC()
        assert f.typed_config.Unpack(config)
        out.append(_summary(config))
    return out


def tcp(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in rbac.network_rbac_filters(policies(text), "cluster.local"):
        assert f.name == "envoy.filters.network.rbac"
        config = network_rbac.RBAC()
        assert f.typed_config.Unpack(config)
        assert config.stat_prefix == "tcp."
        out.append(_summary(config))
    return out


def _summary(config: http_rbac.RBAC | network_rbac.RBAC) -> tuple[str, dict[str, Any]]:
    rules = config.rules if config.HasField("rules") else config.shadow_rules
    found = json_format.MessageToDict(rules).get("policies", {})
    if config.HasField("shadow_rules") and config.HasField("rules"):
        found["__shadow__"] = json_format.MessageToDict(config.shadow_rules)
    return rbac_pb2.RBAC.Action.Name(rules.action), found


def one_policy(text: str) -> dict[str, Any]:
    [(_, found)] = http(text)
    [policy] = found.values()
    return policy


def principal_ids(text: str) -> list[dict[str, Any]]:
    [principal] = one_policy(text)["principals"]
    return principal["andIds"]["ids"]


def permission_rules(text: str) -> list[dict[str, Any]]:
    [permission] = one_policy(text)["permissions"]
    return permission["andRules"]["rules"]


def spiffe(matcher: dict[str, Any]) -> dict[str, Any]:
    return {"authenticated": {"principalName": matcher}}


# --- the cases of Istio's tasks ---------------------------------------------------------


def test_no_policy_no_filter():
    assert rbac.http_rbac_filters(WorkloadAuthorization(), "cluster.local") == []
    assert rbac.network_rbac_filters(WorkloadAuthorization(), "cluster.local") == []


def test_allow_nothing_is_an_allow_filter_whose_only_policy_matches_nothing():
    assert http("metadata: {name: allow-nothing}\nspec: {}") == [("ALLOW", {
        "ns[foo]-policy[allow-nothing]-rule[0]": {
            "permissions": [{"notRule": {"any": True}}],
            "principals": [{"notId": {"any": True}}],
        }})]


def test_deny_all_and_allow_all_are_the_empty_rule():
    for action in ("DENY", "ALLOW"):
        assert http(f"metadata: {{name: all}}\nspec: {{action: {action}, rules: [{{}}]}}") == [
            (action, {"ns[foo]-policy[all]-rule[0]": {
                "permissions": ANY_PERMISSION, "principals": ANY_PRINCIPAL}})]


def test_allow_by_principal_matches_the_peer_certificate_spiffe_id():
    ids = principal_ids("""
metadata: {name: sleep}
spec:
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]
""")
    assert ids == [{"orIds": {"ids": [spiffe({"exact": SLEEP})]}}]


def test_deny_by_path_prefix():
    [(action, found)] = http("""
metadata: {name: no-admin}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
""")
    assert action == "DENY"
    assert found["ns[foo]-policy[no-admin]-rule[0]"]["permissions"] == [
        {"andRules": {"rules": [{"orRules": {"rules": [
            {"urlPath": {"path": {"prefix": "/admin"}}}]}}]}}]


def test_namespaces_match_the_namespace_part_of_the_spiffe_id():
    ids = principal_ids("""
metadata: {name: ns}
spec:
  rules: [{from: [{source: {namespaces: [foo, "team-*"], notNamespaces: [foo-test]}}]}]
""")
    assert ids == [
        {"orIds": {"ids": [spiffe({"safeRegex": {"regex": ".*/ns/foo/.*"}}),
                           spiffe({"safeRegex": {"regex": ".*/ns/team-.*/.*"}})]}},
        {"notId": {"orIds": {"ids": [spiffe({"safeRegex": {"regex": ".*/ns/foo-test/.*"}})]}}},
    ]


def test_ip_blocks_are_the_peer_address_and_remote_ip_blocks_the_original_client():
    ids = principal_ids("""
metadata: {name: ip}
spec:
  rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, 1.2.3.4], remoteIpBlocks: ["2001:db8::/32"],
                            notIpBlocks: [10.1.0.0/16]}}]}]
""")
    assert ids == [
        {"orIds": {"ids": [{"remoteIp": {"addressPrefix": "2001:db8::", "prefixLen": 32}}]}},
        {"orIds": {"ids": [{"directRemoteIp": {"addressPrefix": "10.0.0.0", "prefixLen": 8}},
                           {"directRemoteIp": {"addressPrefix": "1.2.3.4", "prefixLen": 32}}]}},
        {"notId": {"orIds": {"ids": [
            {"directRemoteIp": {"addressPrefix": "10.1.0.0", "prefixLen": 16}}]}}},
    ]


def test_when_request_headers():
    ids = principal_ids("""
metadata: {name: hdr}
spec:
  rules:
  - when: [{key: "request.headers[version]", values: [v1, "v2*", "*"], notValues: ["*-beta"]}]
""")
    assert ids == [
        {"orIds": {"ids": [
            {"header": {"name": "version", "stringMatch": {"exact": "v1"}}},
            {"header": {"name": "version", "stringMatch": {"prefix": "v2"}}},
            {"header": {"name": "version", "presentMatch": True}},
        ]}},
        {"notId": {"orIds": {"ids": [
            {"header": {"name": "version", "stringMatch": {"suffix": "-beta"}}}]}}},
    ]


# --- fields ------------------------------------------------------------------------------


def test_principal_forms_and_the_local_trust_domain():
    [(_, found)] = http("""
metadata: {name: p}
spec:
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/sleep, "other.td/ns/a/sa/b",
                     "cluster.local/ns/x/*", "*/sa/bot", "*"]
        notPrincipals: [cluster.local/ns/default/sa/evil]
""", trust_domain="example.org")
    [principal] = found["ns[foo]-policy[p]-rule[0]"]["principals"]
    ids = principal["andIds"]["ids"]
    assert ids == [
        {"orIds": {"ids": [
            spiffe({"exact": "spiffe://example.org/ns/default/sa/sleep"}),
            spiffe({"exact": "spiffe://other.td/ns/a/sa/b"}),
            spiffe({"prefix": "spiffe://example.org/ns/x/"}),
            spiffe({"safeRegex": {"regex": "spiffe://.*/sa/bot"}}),
            spiffe({"safeRegex": {"regex": ".+"}}),
        ]}},
        {"notId": {"orIds": {"ids": [
            spiffe({"exact": "spiffe://example.org/ns/default/sa/evil"})]}}},
    ]


def test_service_accounts_default_to_the_policy_namespace():
    ids = principal_ids("""
metadata: {name: sa}
spec:
  rules: [{from: [{source: {serviceAccounts: [bar/sleep, curl]}}]}]
""")
    assert ids == [{"orIds": {"ids": [
        spiffe({"safeRegex": {"regex": "spiffe://.+/ns/bar/(.+/|)sa/sleep(/.+)?"}}),
        spiffe({"safeRegex": {"regex": "spiffe://.+/ns/foo/(.+/|)sa/curl(/.+)?"}}),
    ]}}]


def _claim(name: str, matcher: dict[str, Any]) -> dict[str, Any]:
    return {"sourcedMetadata": {"metadataMatcher": {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}, {"key": name}],
        "value": {"stringMatch": matcher}}}}


def test_request_principals_are_issuer_and_subject_of_the_verified_token():
    ids = principal_ids("""
metadata: {name: jwt}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/alice", "https://issuer.example/*",
                                         "*", "*/bob", "iss-only"]}}]
""")
    anything = {"safeRegex": {"regex": ".+"}}
    assert ids == [{"orIds": {"ids": [
        {"andIds": {"ids": [_claim("iss", {"exact": "https://issuer.example"}),
                            _claim("sub", {"exact": "alice"})]}},
        {"andIds": {"ids": [_claim("iss", {"exact": "https://issuer.example"}),
                            _claim("sub", anything)]}},
        {"andIds": {"ids": [_claim("iss", anything), _claim("sub", anything)]}},
        {"andIds": {"ids": [_claim("iss", anything), _claim("sub", {"exact": "bob"})]}},
        {"andIds": {"ids": [_claim("iss", {"exact": "iss-only"}), _claim("sub", {"exact": ""})]}},
    ]}}]


def test_operations_hosts_methods_paths_ports():
    rules = permission_rules("""
metadata: {name: op}
spec:
  rules:
  - to:
    - operation:
        hosts: [Example.COM, "*.example.org", "*"]
        methods: [GET, "*"]
        notMethods: [DELETE]
        paths: [/exact, "/prefix/*", "*.png", "*", "/users/{*}/info"]
        ports: ["8080"]
        notPorts: ["9090"]
""")
    template = {"uriTemplate": {"name": "uri-template", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3."
                 "UriTemplateMatchConfig",
        "pathTemplate": "/users/*/info"}}}
    assert rules == [
        {"orRules": {"rules": [
            {"header": {"name": ":authority",
                        "stringMatch": {"exact": "Example.COM", "ignoreCase": True}}},
            {"header": {"name": ":authority",
                        "stringMatch": {"suffix": ".example.org", "ignoreCase": True}}},
            {"header": {"name": ":authority", "presentMatch": True}},
        ]}},
        {"orRules": {"rules": [{"header": {"name": ":method", "stringMatch": {"exact": "GET"}}},
                               {"header": {"name": ":method", "presentMatch": True}}]}},
        {"notRule": {"orRules": {"rules": [
            {"header": {"name": ":method", "stringMatch": {"exact": "DELETE"}}}]}}},
        {"orRules": {"rules": [
            {"urlPath": {"path": {"exact": "/exact"}}},
            {"urlPath": {"path": {"prefix": "/prefix/"}}},
            {"urlPath": {"path": {"suffix": ".png"}}},
            {"urlPath": {"path": {"safeRegex": {"regex": ".+"}}}},
            template,
        ]}},
        {"orRules": {"rules": [{"destinationPort": 8080}]}},
        {"notRule": {"orRules": {"rules": [{"destinationPort": 9090}]}}},
    ]


def test_every_documented_when_key():
    policy = one_policy("""
metadata: {name: when}
spec:
  rules:
  - when:
    - {key: source.ip, values: [10.0.0.1]}
    - {key: remote.ip, values: [10.0.0.0/24]}
    - {key: source.namespace, values: [ns1]}
    - {key: source.principal, values: [cluster.local/ns/default/sa/sleep]}
    - {key: request.auth.principal, values: [iss/sub]}
    - {key: request.auth.audiences, values: [aud1, "aud-*"]}
    - {key: request.auth.presenter, values: [client]}
    - {key: "request.auth.claims[groups]", values: [admins]}
    - {key: "request.auth.claims[nested1][nested2]", notValues: [x]}
    - {key: destination.ip, values: [127.0.0.1]}
    - {key: destination.port, values: ["8080"]}
    - {key: connection.sni, values: ["*.example.com"]}
""")
    [principal] = policy["principals"]
    ids = principal["andIds"]["ids"]
    assert ids[0] == {"orIds": {"ids": [
        {"directRemoteIp": {"addressPrefix": "10.0.0.1", "prefixLen": 32}}]}}
    assert ids[1] == {"orIds": {"ids": [
        {"remoteIp": {"addressPrefix": "10.0.0.0", "prefixLen": 24}}]}}
    assert ids[2] == {"orIds": {"ids": [spiffe({"safeRegex": {"regex": ".*/ns/ns1/.*"}})]}}
    assert ids[3] == {"orIds": {"ids": [spiffe({"exact": SLEEP})]}}
    assert ids[4] == {"orIds": {"ids": [{"andIds": {"ids": [
        _claim("iss", {"exact": "iss"}), _claim("sub", {"exact": "sub"})]}}]}}
    strings = {"orMatch": {"valueMatchers": [{"stringMatch": {"exact": "aud1"}},
                                             {"stringMatch": {"prefix": "aud-"}}]}}
    assert ids[5] == {"sourcedMetadata": {"metadataMatcher": {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}, {"key": "aud"}],
        "value": {"orMatch": {"valueMatchers": [{"listMatch": {"oneOf": strings}}, strings]}}}}}
    # one value is matched directly: Envoy wants two or more matchers in an OrMatcher
    one = {"stringMatch": {"exact": "client"}}
    assert ids[6] == {"sourcedMetadata": {"metadataMatcher": {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}, {"key": "azp"}],
        "value": {"orMatch": {"valueMatchers": [{"listMatch": {"oneOf": one}}, one]}}}}}
    assert ids[7]["sourcedMetadata"]["metadataMatcher"]["path"] == [
        {"key": "payload"}, {"key": "groups"}]
    assert ids[8]["notId"]["sourcedMetadata"]["metadataMatcher"]["path"] == [
        {"key": "payload"}, {"key": "nested1"}, {"key": "nested2"}]
    [permission] = policy["permissions"]
    assert permission["andRules"]["rules"] == [
        {"orRules": {"rules": [{"destinationIp": {"addressPrefix": "127.0.0.1",
                                                  "prefixLen": 32}}]}},
        {"orRules": {"rules": [{"destinationPort": 8080}]}},
        {"orRules": {"rules": [{"requestedServerName": {"suffix": ".example.com"}}]}},
    ]


def test_sources_and_operations_are_ored_and_when_joins_each():
    policy = one_policy("""
metadata: {name: or}
spec:
  rules:
  - from: [{source: {namespaces: [a]}}, {source: {namespaces: [b]}}]
    to: [{operation: {methods: [GET]}}, {operation: {methods: [POST]}}]
    when: [{key: source.ip, values: [10.0.0.1]}, {key: destination.port, values: ["80"]}]
""")
    assert len(policy["principals"]) == 2 and len(policy["permissions"]) == 2
    for principal in policy["principals"]:
        assert "directRemoteIp" in str(principal)
    for permission in policy["permissions"]:
        assert permission["andRules"]["rules"][-1] == {
            "orRules": {"rules": [{"destinationPort": 80}]}}


def test_one_rbac_policy_per_rule_named_as_istio_names_them():
    [(_, found)] = http("""
metadata: {name: two-rules}
spec:
  rules:
  - to: [{operation: {methods: [GET]}}]
  - to: [{operation: {methods: [POST]}}]
""")
    assert sorted(found) == ["ns[foo]-policy[two-rules]-rule[0]",
                             "ns[foo]-policy[two-rules]-rule[1]"]
    assert rbac.policy_name("ns", "p", 3) == "ns[ns]-policy[p]-rule[3]"


def test_filters_come_audit_deny_allow_and_policies_of_one_action_share_a_filter():
    found = http("""
metadata: {name: allow-a}
spec: {rules: [{to: [{operation: {paths: [/a]}}]}]}
---
metadata: {name: audit}
spec: {action: AUDIT, rules: [{}]}
---
metadata: {name: deny}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}
---
metadata: {name: allow-b}
spec: {rules: [{to: [{operation: {paths: [/b]}}]}]}
""")
    assert [action for action, _ in found] == ["LOG", "DENY", "ALLOW"]
    assert sorted(found[2][1]) == ["ns[foo]-policy[allow-a]-rule[0]",
                                   "ns[foo]-policy[allow-b]-rule[0]"]


def test_a_deny_policy_without_rules_denies_nothing():
    [(action, found)] = http("metadata: {name: d}\nspec: {action: DENY}")
    assert action == "DENY"
    assert found == {"ns[foo]-policy[d]-rule[0]": {
        "permissions": [{"notRule": {"any": True}}], "principals": [{"notId": {"any": True}}]}}


def test_mesh_wide_policies_from_the_root_namespace_apply():
    text = """
metadata: {name: mesh-deny, namespace: istio-system}
spec: {action: DENY, rules: [{from: [{source: {notNamespaces: [foo]}}]}]}
"""
    [(action, found)] = http(text)
    assert action == "DENY" and list(found) == ["ns[istio-system]-policy[mesh-deny]-rule[0]"]


# --- TCP ----------------------------------------------------------------------------------


def test_tcp_allow_drops_a_rule_with_http_only_fields_so_less_is_allowed():
    [(action, found)] = tcp("""
metadata: {name: a}
spec:
  rules:
  - to: [{operation: {methods: [GET], ports: ["5432"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
  - when: [{key: "request.headers[x]", values: ["1"]}]
  - to: [{operation: {ports: ["5432"]}}]
""")
    assert action == "ALLOW"
    assert list(found) == ["ns[foo]-policy[a]-rule[3]"]


def test_tcp_allow_with_only_http_rules_allows_nothing():
    [(action, found)] = tcp("""
metadata: {name: a}
spec: {rules: [{to: [{operation: {paths: [/x]}}]}]}
""")
    assert (action, found) == ("ALLOW", {})


def test_tcp_deny_ignores_http_only_fields_so_more_is_denied():
    [(action, found)] = tcp("""
metadata: {name: d}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [GET]}}]
  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep], requestPrincipals: ["*"]}}]
    to: [{operation: {ports: ["5432"], paths: [/x]}}]
""")
    assert action == "DENY"
    assert found["ns[foo]-policy[d]-rule[0]"] == {
        "permissions": ANY_PERMISSION, "principals": ANY_PRINCIPAL}
    second = found["ns[foo]-policy[d]-rule[1]"]
    assert second["principals"] == [{"andIds": {"ids": [
        {"orIds": {"ids": [spiffe({"exact": SLEEP})]}}]}}]
    assert second["permissions"] == [{"andRules": {"rules": [
        {"orRules": {"rules": [{"destinationPort": 5432}]}}]}}]


def test_tcp_audit_reads_http_only_fields_as_deny_does():
    [(action, found)] = tcp("""
metadata: {name: log}
spec: {action: AUDIT, rules: [{to: [{operation: {methods: [GET]}}]}]}
""")
    assert action == "LOG"
    assert found["ns[foo]-policy[log]-rule[0]"]["permissions"] == ANY_PERMISSION


def test_http_keeps_what_tcp_drops():
    assert permission_rules("""
metadata: {name: a}
spec: {rules: [{to: [{operation: {methods: [GET]}}]}]}
""") == [{"orRules": {"rules": [{"header": {"name": ":method",
                                            "stringMatch": {"exact": "GET"}}}]}}]


# --- dry run -------------------------------------------------------------------------------


def test_dry_run_policies_go_to_shadow_rules_only():
    filters = rbac.http_rbac_filters(policies("""
metadata: {name: trial, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}
"""), "cluster.local")
    [f] = filters
    config = http_rbac.RBAC()
    f.typed_config.Unpack(config)
    assert not config.HasField("rules")
    assert list(config.shadow_rules.policies) == ["ns[foo]-policy[trial]-rule[0]"]
    assert config.shadow_rules.action == rbac_pb2.RBAC.DENY
    assert config.shadow_rules_stat_prefix == "istio_dry_run_deny_"


def test_dry_run_beside_an_enforced_policy_of_the_same_action():
    [(action, found)] = http("""
metadata: {name: real}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/a]}}]}]}
---
metadata: {name: trial, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/b]}}]}]}
---
metadata: {name: not-trial, annotations: {istio.io/dry-run: "false"}}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/c]}}]}]}
""")
    assert action == "DENY"
    assert sorted(k for k in found if k != "__shadow__") == [
        "ns[foo]-policy[not-trial]-rule[0]", "ns[foo]-policy[real]-rule[0]"]
    assert list(found["__shadow__"]["policies"]) == ["ns[foo]-policy[trial]-rule[0]"]


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("text,field", [
    ("spec: {action: CUSTOM, provider: {name: ext}, rules: [{}]}", "spec.action"),
    ("spec: {rules: [{when: [{key: 'experimental.envoy.filters.a.b[c]', values: [x]}]}]}",
     "spec.rules[0].when[0]"),
    ("spec: {rules: [{when: [{key: source.serviceAccount, values: [x]}]}]}",
     "spec.rules[0].when[0]"),
    ("spec: {rules: [{to: [{operation: {paths: [/a/*/b]}}]}]}",
     "spec.rules[0].to[0].operation.paths"),
    ("spec: {rules: [{from: [{source: {principals: [spiffe://cluster.local/ns/a/sa/b]}}]}]}",
     "spec.rules[0].from[0].source.principals"),
    ("spec: {rules: [{from: [{source: {ipBlocks: [10.0.0.300]}}]}]}",
     "spec.rules[0].from[0].source.ipBlocks"),
    ("spec: {rules: [{to: [{operation: {ports: [http]}}]}]}",
     "spec.rules[0].to[0].operation.ports"),
    ("spec: {rules: [{}, {when: [{key: destination.port, values: ['70000']}]}]}",
     "spec.rules[1].when[0]"),
    ("metadata: {annotations: {istio.io/dry-run: maybe}}\nspec: {}",
     "metadata.annotations[istio.io/dry-run]"),
])
def test_what_cannot_be_translated_is_refused_with_its_place(text: str, field: str):
    doc = yaml.safe_load(text)
    doc.setdefault("metadata", {})["name"] = "bad"
    with pytest.raises(rbac.UnsupportedAuthorization) as caught:
        rbac.http_rbac_filters(policies(yaml.safe_dump(doc)), "cluster.local")
    assert caught.value.field == field
    assert caught.value.policy.name == "bad"
    assert str(caught.value).startswith(f"AuthorizationPolicy foo/bad {field}: ")


def test_custom_is_refused_on_tcp_too():
    with pytest.raises(rbac.UnsupportedAuthorization, match="CUSTOM"):
        rbac.network_rbac_filters(policies("""
metadata: {name: ext}
spec: {action: CUSTOM, provider: {name: ext}, rules: [{}]}
"""), "cluster.local")


def test_the_same_policies_give_the_same_bytes():
    text = """
metadata: {name: p}
spec:
  rules:
  - from: [{source: {principals: [a/ns/b/sa/c], namespaces: [x]}}]
    to: [{operation: {paths: ["/a*"], methods: [GET]}}]
    when: [{key: "request.auth.claims[groups]", values: [g]}]
"""
    one = [f.SerializeToString(deterministic=True)
           for f in rbac.http_rbac_filters(policies(text), "cluster.local")]
    two = [f.SerializeToString(deterministic=True)
           for f in rbac.http_rbac_filters(policies(text), "cluster.local")]
    assert one == two and one

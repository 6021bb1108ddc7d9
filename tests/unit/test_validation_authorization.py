"""AuthorizationPolicy (and RequestAuthentication) rules beyond the models, through
``plan_apply`` and ``check_state``: Istio's matching forms, the parts meshpilot refuses,
and the warnings that reach apply, analyze and describe alike."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshpilot.api.identity import ObjectKey
from meshpilot.validation import Diagnostic, Plan, StateObject, check_state, plan_apply
from meshpilot.validation.conditions import VALID_KEYS

SEC = "security.istio.io/v1"


def policy(spec: dict[str, Any], kind: str = "AuthorizationPolicy") -> str:
    body = {"apiVersion": SEC, "kind": kind, "metadata": {"name": "orders", "namespace": "shop"},
            "spec": spec}
    return yaml.safe_dump(body, sort_keys=False)


def source(**fields: Any) -> str:
    return policy({"rules": [{"from": [{"source": fields}]}]})


def operation(**fields: Any) -> str:
    return policy({"rules": [{"to": [{"operation": fields}]}]})


def when(key: str, values: list[str] | None = None, not_values: list[str] | None = None) -> str:
    condition: dict[str, Any] = {"key": key}
    if values is not None:
        condition["values"] = values
    if not_values is not None:
        condition["notValues"] = not_values
    return policy({"rules": [{"when": [condition]}]})


def plan(text: str) -> Plan:
    return plan_apply([("ap.yaml", text)])


def only(p: Plan, code: str) -> Diagnostic:
    found = [d for d in p.diagnostics if d.code == code]
    assert len(found) == 1, [d.format() for d in p.diagnostics]
    return found[0]


def clean(text: str) -> None:
    p = plan(text)
    assert p.ok and p.diagnostics == [], [d.format() for d in p.diagnostics]


SOURCE = "spec.rules[0].from[0].source"
OPERATION = "spec.rules[0].to[0].operation"


def test_a_policy_in_istio_forms_is_clean() -> None:
    clean(policy({
        "selector": {"matchLabels": {"app": "orders"}},
        "action": "DENY",
        "rules": [{
            "from": [{"source": {
                "principals": ["cluster.local/ns/shop/sa/web", "*/sa/admin",
                               "cluster.local/ns/ops/*", "*"],
                "requestPrincipals": ["https://login.shop.test/*"],
                "notNamespaces": ["dev*"],
                "ipBlocks": ["203.0.113.4", "10.0.0.0/8", "10.1.2.3/8"],
                "notRemoteIpBlocks": ["2001:db8::/32", "::1"],
            }}],
            "to": [{"operation": {
                "hosts": ["*.shop.test", "shop.test"], "methods": ["GET", "HEAD", "*"],
                "paths": ["/api/*", "*.json", "/healthz", "*"], "notPorts": ["8080", "1"],
            }}],
            "when": [
                {"key": "request.headers[x-tenant]", "values": ["acme", "acme-*"]},
                {"key": "request.auth.claims[groups][admin]", "values": ["true"]},
                {"key": "destination.port", "notValues": ["9090", "65535"]},
                {"key": "source.ip", "values": ["10.0.0.0/16"]},
            ],
        }],
    }))
    clean(source(serviceAccounts=["shop/web", "admin"]))


@pytest.mark.parametrize("field", ["principals", "notPrincipals", "requestPrincipals",
                                   "notRequestPrincipals", "namespaces", "notNamespaces"])
@pytest.mark.parametrize("value", ["cluster.local/*/sa/web", "*web*", "**"])
def test_a_star_in_the_middle_or_twice_is_refused(field: str, value: str) -> None:
    p = plan(source(**{field: ["ok", value]}))
    d = only(p, "MP0031")
    assert d.path == f"{SOURCE}.{field}[1]"
    assert repr(value) in d.message and "prefix ('abc*')" in d.message
    assert p.objects == []


@pytest.mark.parametrize(("field", "value"), [("hosts", "api.*.test"), ("notHosts", "a**"),
                                              ("methods", "P*T"), ("paths", "/a/*/b"),
                                              ("notPaths", "*/admin/*")])
def test_operation_values_follow_the_same_forms(field: str, value: str) -> None:
    d = only(plan(operation(**{field: [value]})), "MP0031")
    assert d.path == f"{OPERATION}.{field}[0]"


@pytest.mark.parametrize("path", ["/api/{*}", "/files/{**}", "/a/{x}"])
def test_path_templates_are_not_supported(path: str) -> None:
    d = only(plan(operation(notPaths=["/ok", path])), "MP0032")
    assert d.path == f"{OPERATION}.notPaths[1]"
    assert "not support" in d.message and "prefix ('/api/*')" in d.message


@pytest.mark.parametrize("value", ["0", "65536", "99999"])
def test_ports_outside_the_range(value: str) -> None:
    d = only(plan(operation(ports=[value])), "MP0013")
    assert d.path == f"{OPERATION}.ports[0]" and "1-65535" in d.message


@pytest.mark.parametrize("value", ["http", "80-90", "+80", "٣"])
def test_ports_that_are_not_numbers(value: str) -> None:
    d = only(plan(operation(notPorts=[value])), "MP0017")
    assert d.path == f"{OPERATION}.notPorts[0]" and "not a number" in d.message


@pytest.mark.parametrize("field", ["ipBlocks", "notIpBlocks", "remoteIpBlocks",
                                   "notRemoteIpBlocks"])
@pytest.mark.parametrize("value", ["10.0.0.0/33", "300.1.2.3", "db.shop.test", "10.0.0.0/"])
def test_ip_blocks_must_be_addresses_or_cidrs(field: str, value: str) -> None:
    d = only(plan(source(**{field: [value]})), "MP0033")
    assert d.path == f"{SOURCE}.{field}[0]" and "10.0.0.0/8" in d.message


def test_empty_values_are_refused() -> None:
    p = plan(source(principals=[""], namespaces=["shop"]))
    assert only(p, "MP0017").path == f"{SOURCE}.principals[0]"


def test_service_accounts_take_exact_names_and_stand_alone() -> None:
    assert only(plan(source(serviceAccounts=["shop/*"])), "MP0031").path == (
        f"{SOURCE}.serviceAccounts[0]")
    for bad in ("a/b/c", "/web", "shop/"):
        assert "NAMESPACE/NAME" in only(plan(source(serviceAccounts=[bad])), "MP0017").message
    d = only(plan(source(serviceAccounts=["shop/web"], namespaces=["shop"])), "MP0017")
    assert d.path == f"{SOURCE}.serviceAccounts" and "namespaces" in d.message


# --- warnings: applied, and shown -----------------------------------------------------


@pytest.mark.parametrize("text", [
    source(principals=["spiffe://cluster.local/ns/shop/sa/web"]),
    source(notPrincipals=["spiffe://cluster.local/ns/shop/sa/web"]),
    when("source.principal", ["spiffe://cluster.local/ns/shop/sa/web"]),
])
def test_spiffe_principals_are_warned_about(text: str) -> None:
    p = plan(text)
    d = only(p, "MP2005")
    assert p.ok and len(p.objects) == 1  # a warning: the policy is applied
    assert d.severity == "warning" and d.file == "ap.yaml" and d.line is not None
    assert "'cluster.local/ns/shop/sa/web'" in d.message  # what to write instead


def test_lower_case_methods_are_warned_about() -> None:
    p = plan(operation(methods=["GET", "post"]))
    d = only(p, "MP2006")
    assert p.ok and d.path == f"{OPERATION}.methods[1]" and "'POST'" in d.message


def test_a_field_written_by_its_python_name_is_checked_too() -> None:
    text = policy({"rules": [{"from": [{"source": {"not_principals": ["a*b"]}}]}]})
    assert "MP0031" in [d.code for d in plan(text).diagnostics]
    text = policy({"rules": [{"from": [{"source": {"principals": ["spiffe://x/ns/a/sa/b"]}}]}]})
    stored = yaml.safe_load(text)
    stored["spec"]["rules"][0]["from_"] = stored["spec"]["rules"][0].pop("from")
    found = check_state([StateObject(ObjectKey("security.istio.io", "AuthorizationPolicy", "shop",
                                               "orders"), stored)], all_objects=True)
    assert [d.code for d in found] == ["MP2005"]


def test_describe_shows_warnings_of_stored_policies() -> None:
    """check_state over every object is what the diagnostics endpoint (describe) runs."""
    body = yaml.safe_load(operation(methods=["get"]))
    key = ObjectKey("security.istio.io", "AuthorizationPolicy", "shop", "orders")
    found = check_state([StateObject(key, body)], all_objects=True)
    assert [(d.code, d.object, d.path) for d in found] == [
        ("MP2006", "AuthorizationPolicy shop/orders", f"{OPERATION}.methods[0]")]
    assert found[0].file is None  # stored: no file
    assert check_state([StateObject(key, body)]) == []  # unchanged objects are not judged


# --- conditions -----------------------------------------------------------------------


@pytest.mark.parametrize("key", [
    "request.headers[User-Agent]", "source.ip", "remote.ip", "source.namespace",
    "source.principal", "request.auth.principal", "request.auth.audiences",
    "request.auth.presenter", "request.auth.claims[iss]", "request.auth.claims[a][b]",
    "destination.ip", "destination.port", "connection.sni",
    "experimental.envoy.filters.network.mysql_proxy[db.table]",
])
def test_every_documented_condition_key_is_accepted(key: str) -> None:
    value = {"source.ip": "10.0.0.1", "remote.ip": "10.0.0.1", "destination.ip": "10.0.0.1",
             "destination.port": "80"}.get(key, "x")
    clean(when(key, [value]))


@pytest.mark.parametrize("key", ["request.header[x]", "source.user", "destination.port[1]",
                                 "request.auth.claims", "experimental.envoy.filters.x",
                                 "request.headers[]", "REQUEST.HEADERS[x]"])
def test_an_unknown_condition_key_is_refused(key: str) -> None:
    d = only(plan(when(key, ["x"])), "MP0034")
    assert d.path == "spec.rules[0].when[0].key" and repr(key) in d.message


def test_unknown_key_message_lists_the_valid_keys() -> None:
    message = only(plan(when("request.header[x]", ["x"])), "MP0034").message
    for key in VALID_KEYS:
        assert key in message


@pytest.mark.parametrize(("key", "replacement"), [
    ("destination.namespace", "metadata.namespace"), ("destination.labels[app]", "selector"),
    ("request.headers", "request.headers[<header>]"),
])
def test_retired_or_incomplete_keys_name_what_to_write(key: str, replacement: str) -> None:
    assert replacement in only(plan(when(key, ["x"])), "MP0034").message


def test_condition_values_are_checked_by_key() -> None:
    assert only(plan(when("remote.ip", not_values=["10.0.0.0/40"])), "MP0033").path == (
        "spec.rules[0].when[0].notValues[0]")
    assert only(plan(when("destination.port", ["https"])), "MP0017").path == (
        "spec.rules[0].when[0].values[0]")
    assert only(plan(when("request.auth.claims[iss]", ["a*b"])), "MP0031")
    assert only(plan(when("connection.sni", [""])), "MP0017")


# --- refused: CUSTOM, targetRef -------------------------------------------------------


def test_custom_action_is_refused_even_with_a_provider() -> None:
    text = policy({"action": "CUSTOM", "provider": {"name": "opa"},
                   "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}]})
    p = plan(text)
    d = only(p, "MP0035")
    assert (d.path, d.line) == ("spec.action", 7)
    assert "ext_authz" in d.message and "'opa'" in d.message and "ALLOW or DENY" in d.message
    assert p.objects == []
    # without a provider, Istio's own rule is broken too: both are said at once
    p = plan(policy({"action": "CUSTOM"}))
    assert sorted(d.code for d in p.diagnostics) == ["MP0017", "MP0035"]


@pytest.mark.parametrize("kind", ["AuthorizationPolicy", "RequestAuthentication"])
def test_target_refs_are_refused(kind: str) -> None:
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "shop-gw"}
    d = only(plan(policy({"targetRef": ref}, kind)), "MP0036")
    assert d.path == "spec.targetRef" and "Gateway shop-gw" in d.message
    assert "selector" in d.message and f"this {kind}" in d.message
    p = plan(policy({"targetRefs": [{"kind": "Service", "name": "orders"}, ref]}, kind))
    assert [d.path for d in p.diagnostics if d.code == "MP0036"] == [
        "spec.targetRefs[0]", "spec.targetRefs[1]"]


def test_target_ref_shape_is_checked() -> None:
    p = plan(policy({"targetRef": {"kind": "Gateway", "apiVersion": "v1"}}))
    assert sorted((d.code, d.path) for d in p.diagnostics) == [
        ("MP0010", "spec.targetRef.apiVersion"), ("MP0011", "spec.targetRef.name"),
        ("MP0036", "spec.targetRef")]
    unknown = only(p, "MP0010").message
    assert "group, kind, name, namespace" in unknown


def test_peer_authentication_has_no_target_ref() -> None:
    text = policy({"targetRef": {"kind": "Gateway", "name": "gw"}}, "PeerAuthentication")
    d = only(plan(text), "MP0010")
    assert d.path == "spec.targetRef" and "selector" in d.message


# --- RequestAuthentication: one issuer twice ------------------------------------------


def test_one_issuer_twice_in_one_request_authentication_is_warned_about() -> None:
    text = policy({"jwtRules": [{"issuer": "https://login.shop.test"}, {"issuer": "other"},
                                {"issuer": "https://login.shop.test"}]},
                  "RequestAuthentication")
    p = plan(text)
    d = only(p, "MP2009")
    assert p.ok and d.path == "spec.jwtRules[2].issuer" and "jwtRules[0]" in d.message

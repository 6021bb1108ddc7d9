"""RequestAuthentication: the model and its apply-time checks, through ``plan_apply``."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
import yaml

from meshpilot.api.kinds import by_name, resolve_type
from meshpilot.api.request_authentication import RequestAuthentication
from meshpilot.validation import Diagnostic, Plan, plan_apply

JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8",
                            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})

FULL = f"""\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: orders-jwt
  namespace: shop
spec:
  selector:
    matchLabels: {{app: orders}}
  jwtRules:
  - issuer: https://login.shop.test
    audiences: [orders-api, orders-admin]
    jwksUri: https://login.shop.test/.well-known/jwks.json
    fromHeaders:
    - name: x-shop-token
      prefix: "Token "
    fromParams: [shop_token]
    fromCookies: [session]
    outputPayloadToHeader: x-shop-payload
    outputClaimToHeaders:
    - header: x-shop-user
      claim: sub
    forwardOriginalToken: true
    timeout: 3s
  - issuer: partner.test
    jwks: '{JWKS}'
"""


def plan(text: str) -> Plan:
    return plan_apply([("ra.yaml", textwrap.dedent(text))])


def only(p: Plan, code: str) -> Diagnostic:
    found = [d for d in p.diagnostics if d.code == code]
    assert len(found) == 1, [d.format() for d in p.diagnostics]
    return found[0]


def with_rule(rule: dict[str, Any], **spec: Any) -> str:
    body = {"apiVersion": "security.istio.io/v1beta1", "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "shop"},
            "spec": {"jwtRules": [rule], **spec}}
    return yaml.safe_dump(body, sort_keys=False)


def test_every_field_parses_and_round_trips() -> None:
    ra = RequestAuthentication.model_validate(yaml.safe_load(FULL))
    first, second = ra.spec.jwt_rules or []
    assert first.from_headers and first.from_headers[0].prefix == "Token "
    assert first.output_claim_to_headers and first.output_claim_to_headers[0].claim == "sub"
    assert first.forward_original_token is True and first.timeout == "3s"
    assert second.jwks == JWKS and second.jwks_uri is None
    written = ra.model_dump(by_alias=True, exclude_none=True)["spec"]
    assert written == yaml.safe_load(FULL)["spec"]


def test_every_applied_field_is_accepted_without_a_word() -> None:
    """outputClaimToHeaders and timeout parse but are not applied: the first is refused
    (MP0046: a header the sidecar does not write could be the client's own), the second
    warned about (MP2016); without them, the rest applies as written."""
    refused = plan(FULL)
    assert [(d.code, d.path) for d in refused.errors] == [
        ("MP0046", "spec.jwtRules[0].outputClaimToHeaders")]
    applied = "\n".join(line for line in FULL.splitlines()
                         if not line.startswith(("    outputClaimToHeaders", "    - header",
                                                 "      claim", "    timeout")))
    p = plan(applied)
    assert p.ok and p.diagnostics == [], [d.format() for d in p.diagnostics]
    (obj,) = p.objects
    assert obj.label == "RequestAuthentication shop/orders-jwt"
    assert isinstance(obj.model, RequestAuthentication)


def test_kind_names_and_versions() -> None:
    for name in ("ra", "requestauthentication", "requestauthentications",
                 "requestauthentications.security.istio.io"):
        assert by_name(name).kind == "RequestAuthentication"
    for version in ("v1beta1", "v1"):
        info = resolve_type(f"security.istio.io/{version}", "RequestAuthentication")
        assert info.plural == "requestauthentications"
    assert plan(with_rule({"issuer": "a"})).ok


def test_issuer_is_required() -> None:
    p = plan(with_rule({"jwksUri": "https://a.test/jwks"}))
    d = only(p, "MP0011")
    assert d.path == "spec.jwtRules[0].issuer"
    assert "'issuer'" in d.message and d.line == 8  # the rule's first line
    assert p.objects == []


def test_inline_jwks_and_jwks_uri_exclude_each_other() -> None:
    d = only(plan(with_rule({"issuer": "a", "jwks": JWKS, "jwksUri": "https://a.test/k"})),
             "MP0017")
    assert d.path == "spec.jwtRules[0]"
    assert "jwks" in d.message and "jwksUri" in d.message and "not both" in d.message


@pytest.mark.parametrize(("jwks", "needle"), [
    ("{not json", "not JSON"),
    ('{"kid": "x"}', 'no "keys" list'),
    ('[{"kty": "RSA"}]', 'no "keys" list'),
    ('{"keys": [{"kid": "k1"}]}', "keys[0] is not a JSON Web Key"),
    ('{"keys": ["x"]}', "keys[0] is not a JSON Web Key"),
])
def test_inline_jwks_must_be_a_key_set(jwks: str, needle: str) -> None:
    d = only(plan(with_rule({"issuer": "a", "jwks": jwks})), "MP0017")
    assert d.path == "spec.jwtRules[0].jwks"
    assert needle in d.message and "JSON Web Key Set" in d.message


@pytest.mark.parametrize("uri", ["ftp://a.test/jwks", "a.test/jwks.json", "https:///jwks",
                                 "file:///etc/jwks.json"])
def test_jwks_uri_must_be_http_or_https(uri: str) -> None:
    d = only(plan(with_rule({"issuer": "a", "jwksUri": uri})), "MP0017")
    assert d.path == "spec.jwtRules[0].jwksUri"
    assert repr(uri) in d.message and "https://" in d.message


def test_http_jwks_uri_with_port_is_accepted() -> None:
    assert plan(with_rule({"issuer": "a", "jwksUri": "http://127.0.0.1:8080/jwks"})).ok


def test_misspelt_rule_field_lists_the_valid_ones() -> None:
    d = only(plan(with_rule({"issuer": "a", "jwksURI": "https://a.test/k"})), "MP0010")
    assert d.path == "spec.jwtRules[0].jwksURI"
    assert "did you mean 'jwksUri'?" in d.message
    for field in ("audiences", "fromCookies", "fromHeaders", "outputClaimToHeaders", "timeout"):
        assert field in d.message


def test_header_location_needs_a_name() -> None:
    d = only(plan(with_rule({"issuer": "a", "fromHeaders": [{"prefix": "Bearer "}]})), "MP0011")
    assert d.path == "spec.jwtRules[0].fromHeaders[0].name"


def test_claim_headers_are_header_names_written_once() -> None:
    bad_name = {"issuer": "a", "outputClaimToHeaders": [{"header": "x user", "claim": "sub"}]}
    d = only(plan(with_rule(bad_name)), "MP0017")
    assert d.path == "spec.jwtRules[0].outputClaimToHeaders[0].header"
    twice = {"issuer": "a", "outputClaimToHeaders": [
        {"header": "x-user", "claim": "sub"}, {"header": "X-User", "claim": "email"}]}
    d = only(plan(with_rule(twice)), "MP0017")
    assert "x-user" in d.message and "more than once" in d.message


def test_timeout_is_a_duration() -> None:
    d = only(plan(with_rule({"issuer": "a", "timeout": "5 seconds"})), "MP0014")
    assert d.path == "spec.jwtRules[0].timeout"


def test_empty_strings_are_refused() -> None:
    p = plan(with_rule({"issuer": "a", "audiences": [""], "fromParams": [""]}))
    assert {d.path for d in p.errors} == {"spec.jwtRules[0].audiences[0]",
                                          "spec.jwtRules[0].fromParams[0]"}


def test_selector_and_target_refs_exclude_each_other() -> None:
    text = with_rule({"issuer": "a"}, selector={"matchLabels": {"app": "x"}},
                     targetRefs=[{"kind": "Gateway", "name": "gw"}])
    d = only(plan(text), "MP0017")
    assert d.path == "spec" and "mutually exclusive" in d.message

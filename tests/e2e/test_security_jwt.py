"""RequestAuthentication end to end, after Istio's "Authorization with JWT" task: the
server's sidecar checks JSON Web Tokens against an inline key set (JWKS), and an
AuthorizationPolicy may require a request principal. The keys and tokens are made here
(RS256, signed with ``cryptography``); requests come from the mesh proxy over mutual TLS.
"""

from __future__ import annotations

from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.e2e.security import (
    DENIED,
    TokenIssuer,
    applied,
    authorization_policy,
    becomes,
    durations_counted,
    request_authentication,
    url,
    wait_counted,
    workload,
)

FOO = "foo"
HTTPBIN = url("httpbin", FOO)
ISSUER = "testing@secure.istio.io"
SCENE = tuple(workload("httpbin", FOO, service_account="httpbin"))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _statuses(mesh: Mesh, tokens: dict[str, str | None]) -> dict[str, int]:
    """The status of one request to httpbin per named token (None: no token at all)."""
    return {name: mesh.http.get(HTTPBIN, headers=_bearer(token) if token else {}).status_code
            for name, token in tokens.items()}


def test_a_valid_token_passes_an_invalid_one_gets_401_and_none_passes(
        mesh: Mesh, given: Given) -> None:
    """Istio, RequestAuthentication alone: a request with a valid token is served; one
    with an invalid token (wrong signature, expired, another issuer, not a JWT) gets 401;
    a request with no token at all is served (authentication alone requires none)."""
    issuer, impostor = TokenIssuer.new(ISSUER), TokenIssuer.new(ISSUER)
    given.applied(*SCENE, request_authentication("jwt-example", FOO, ISSUER, issuer.jwks(),
                                                 app="httpbin"))
    tokens: dict[str, str | None] = {
        "valid": issuer.token(),
        "wrong signature": impostor.token(),
        "expired": issuer.token(lifetime=-120),
        "another issuer": TokenIssuer(
            "someone@else.example", issuer.key, issuer.kid).token(),
        "not a jwt": "deadbeef",
        "none": None,
    }
    assert _statuses(mesh, tokens) == {
        "valid": 200, "wrong signature": 401, "expired": 401, "another issuer": 401,
        "not a jwt": 401, "none": 200}
    refused = mesh.http.get(HTTPBIN, headers=_bearer(impostor.token()))
    assert refused.text.startswith("Jwt"), refused.text  # Envoy's jwt_authn said why
    # Istio counts the 401s on both sides, the server's sidecar with the caller its
    # certificate proved, and times them with the rest
    for reporter in ("source", "destination"):
        labels = {"reporter": reporter, "source_workload": "mesh-proxy",
                  "destination_workload": "httpbin", "destination_workload_namespace": FOO}
        assert wait_counted(mesh, 5, response_code="401", **labels) == 5
        assert wait_counted(mesh, 2, response_code="200", **labels) == 2
    proved = {"reporter": "destination", "source_workload": "mesh-proxy",
              "connection_security_policy": "mutual_tls", "destination_workload": "httpbin"}
    assert wait_counted(mesh, 7, **proved) == 7
    assert durations_counted(mesh, **proved) == 7


def test_requiring_a_request_principal_denies_requests_without_a_token(
        mesh: Mesh, given: Given) -> None:
    """Istio, RequestAuthentication plus an ALLOW policy with ``requestPrincipals:
    ["*"]``: no token is now 403 ``RBAC: access denied``, an invalid one still 401, a
    valid one 200; naming ``<issuer>/<subject>`` admits only that subject."""
    issuer = TokenIssuer.new(ISSUER)
    given.applied(
        *SCENE,
        request_authentication("jwt-example", FOO, ISSUER, issuer.jwks(), app="httpbin"),
        authorization_policy("require-jwt", FOO, """
            selector: {matchLabels: {app: httpbin}}
            action: ALLOW
            rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]
            """))
    tokens: dict[str, str | None] = {
        "alice": issuer.token("alice"), "bob": issuer.token("bob"),
        "invalid": TokenIssuer.new(ISSUER).token("alice"), "none": None}
    assert _statuses(mesh, tokens) == {"alice": 200, "bob": 200, "invalid": 401, "none": 403}
    no_token = mesh.http.get(HTTPBIN)
    assert (no_token.status_code, no_token.text) == (403, DENIED)

    applied(mesh, authorization_policy("require-jwt", FOO, f"""
        selector: {{matchLabels: {{app: httpbin}}}}
        action: ALLOW
        rules: [{{from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]}}]
        """))
    becomes(lambda: _statuses(mesh, tokens),
            {"alice": 200, "bob": 403, "invalid": 401, "none": 403})


def test_claims_reach_the_app_as_headers_only_from_a_verified_token(
        mesh: Mesh, given: Given) -> None:
    """Istio, ``outputClaimToHeaders``: the sidecar copies a claim of a verified token into
    a request header for the app; a header of that name the client sent itself never
    reaches the app (with or without a token), so the app can believe it."""
    issuer = TokenIssuer.new(ISSUER)
    policy = request_authentication("jwt-example", FOO, ISSUER, issuer.jwks(), app="httpbin")
    policy["spec"]["jwtRules"][0]["outputClaimToHeaders"] = [
        {"header": "x-jwt-sub", "claim": "sub"}]
    policy["spec"]["jwtRules"][0]["timeout"] = "2s"
    given.applied(*SCENE, policy)

    def seen(headers: dict[str, str]) -> str | None:
        r = mesh.http.get(HTTPBIN, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["headers"].get("x-jwt-sub")

    assert seen(_bearer(issuer.token("alice"))) == "alice"
    assert seen({"x-jwt-sub": "mallory"}) is None  # no token: the forged header is removed
    assert seen({**_bearer(issuer.token("bob")), "x-jwt-sub": "mallory"}) == "bob"

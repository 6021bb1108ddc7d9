"""Workload identities follow Istio's SPIFFE form: spiffe://<td>/ns/<ns>/sa/<sa> in the
certificate, and the same without the scheme in AuthorizationPolicy principals."""

from __future__ import annotations

import pytest

from meshpilot.security.identity import (
    DEFAULT_TRUST_DOMAIN,
    InvalidIdentity,
    SpiffeId,
    is_valid_identity,
    validate_trust_domain,
    workload_identity,
)


def test_identity_uri_and_principal_follow_istio() -> None:
    # Istio: the default trust domain is cluster.local; principals drop spiffe://.
    sleep = workload_identity("default", "sleep")
    assert DEFAULT_TRUST_DOMAIN == "cluster.local"
    assert sleep.uri == "spiffe://cluster.local/ns/default/sa/sleep"
    assert sleep.principal == "cluster.local/ns/default/sa/sleep"
    assert str(sleep) == sleep.uri


def test_both_forms_parse_to_the_same_identity() -> None:
    uri = SpiffeId.parse("spiffe://example.org/ns/shop/sa/cart.v1")
    principal = SpiffeId.parse("example.org/ns/shop/sa/cart.v1")
    assert uri == principal == SpiffeId("example.org", "shop", "cart.v1")
    assert SpiffeId.parse(uri.uri) == uri


@pytest.mark.parametrize(
    "text",
    [
        "spiffe://cluster.local/ns/default",  # no service account
        "spiffe://cluster.local/sa/sleep/ns/default",  # segments swapped
        "spiffe://cluster.local/ns/default/sa/sleep/extra",
        "spiffe://Cluster.Local/ns/default/sa/sleep",  # SPIFFE trust domains are lowercase
        "spiffe://cluster.local/ns/Default/sa/sleep",  # namespaces are DNS labels
        "spiffe://cluster.local/ns/default/sa/",
        "spiffe://cluster.local/ns/default/sa/sl_eep",
        "cluster.local/ns/default/sa/*",  # a policy pattern, not an identity
        "",
    ],
)
def test_malformed_identities_are_refused(text: str) -> None:
    with pytest.raises(InvalidIdentity):
        SpiffeId.parse(text)
    assert not is_valid_identity(text)


def test_refusals_say_what_is_wrong() -> None:
    with pytest.raises(InvalidIdentity, match="namespace 'Shop' is not a DNS label"):
        workload_identity("Shop", "cart")
    with pytest.raises(InvalidIdentity, match="trust domain 'a/b'"):
        validate_trust_domain("a/b")
    with pytest.raises(InvalidIdentity, match="spiffe://<trust-domain>/ns/"):
        SpiffeId.parse("spiffe://cluster.local/default/sleep")


def test_identities_are_values() -> None:
    a = workload_identity("default", "sleep", trust_domain="corp.example")
    b = SpiffeId.parse("spiffe://corp.example/ns/default/sa/sleep")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != workload_identity("default", "sleep")  # another trust domain

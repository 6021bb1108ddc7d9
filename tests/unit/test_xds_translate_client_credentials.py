"""DestinationRule ``credentialName`` secrets, read as Istio reads them: a
``kubernetes.io/tls`` Secret or a generic one (``cert``, ``key``, ``cacert``), the CA
possibly in a Secret of its own (``<name>-cacert``), only from the client's namespace."""

from __future__ import annotations

from tests.integration.gateway_envoy import issue
from tests.tls_pairs import b64

from meshpilot.api.credentials import Secret
from meshpilot.mesh.model import Named
from meshpilot.xds.translate.client_credentials import client_credential_secrets, is_credential
from meshpilot.xds.translate.gateway_tls import secret_index

ROOT = issue("root", ca=True)
LEAF = issue("client", ROOT, client=True)
NAMES = ("kubernetes://api", "kubernetes://api-cacert")


def secret(name: str, namespace: str = "default", kind: str = "Opaque",
           **values: bytes) -> Named[Secret]:
    return Named(namespace, name, Secret.model_validate({
        "apiVersion": "v1", "kind": "Secret", "type": kind,
        "metadata": {"name": name, "namespace": namespace},
        "data": {k.replace("_", "."): b64(v) for k, v in values.items()}}))


def built(*secrets: Named[Secret], names: tuple[str, ...] = NAMES
          ) -> tuple[dict[str, object], list[str]]:
    out, problems = client_credential_secrets(secret_index(secrets), "default", names)
    return {s.name: s for s in out}, problems


def test_a_tls_secret_gives_the_certificate_and_the_ca():
    got, problems = built(secret("api", kind="kubernetes.io/tls", tls_crt=LEAF.cert_pem,
                                 tls_key=LEAF.key_pem, ca_crt=ROOT.cert_pem))
    assert problems == []
    assert got["kubernetes://api"].tls_certificate.certificate_chain.inline_bytes \
        == LEAF.cert_pem
    assert got["kubernetes://api"].tls_certificate.private_key.inline_bytes == LEAF.key_pem
    assert got["kubernetes://api-cacert"].validation_context.trusted_ca.inline_bytes \
        == ROOT.cert_pem


def test_a_generic_secret_with_istios_keys_and_a_crl():
    got, problems = built(secret("api", cert=LEAF.cert_pem, key=LEAF.key_pem,
                                 cacert=ROOT.cert_pem, crl=b"crl bytes"))
    assert problems == [] and set(got) == set(NAMES)
    assert got["kubernetes://api-cacert"].validation_context.crl.inline_bytes == b"crl bytes"


def test_the_ca_may_be_a_secret_of_its_own():
    got, problems = built(secret("api", cert=LEAF.cert_pem, key=LEAF.key_pem),
                          secret("api-cacert", cacert=ROOT.cert_pem))
    assert problems == [] and set(got) == set(NAMES)


def test_simple_names_only_the_ca():
    got, problems = built(secret("api", ca_crt=ROOT.cert_pem),
                          names=("kubernetes://api-cacert",))
    assert problems == [] and list(got) == ["kubernetes://api-cacert"]


def test_what_is_missing_is_left_out_and_said_without_values():
    got, problems = built(secret("api", namespace="other", cert=LEAF.cert_pem,
                                 key=LEAF.key_pem, cacert=ROOT.cert_pem))
    assert got == {}
    assert problems == [
        "no Secret default/api for credentialName api",
        "no CA for credentialName api: neither Secret default/api nor default/api-cacert "
        "has ca.crt / cacert"]
    got, problems = built(secret("api", cacert=ROOT.cert_pem))
    assert list(got) == ["kubernetes://api-cacert"]
    assert problems == ["Secret default/api has no client certificate and key "
                        "(tls.crt / cert and tls.key / key)"]
    assert not any(b"BEGIN" in p.encode() for p in problems)


def test_only_credential_names_are_this_modules():
    assert is_credential("kubernetes://api") and not is_credential("default")
    got, problems = built(names=("default", "ROOTCA"))
    assert got == {} and problems == []

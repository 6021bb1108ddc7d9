"""Reading a proxy's SDS secrets out of Envoy's config dump: certificates parsed, the
trust of the chain judged, and key material never passed on."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.unit.security_pki import plugged_ca_directory

from meshpilot.security import load_or_create_self_signed_ca, load_plugged_ca
from meshpilot.security.workload_certs import Credential, CredentialSubject, WorkloadCertificates
from meshpilot.server.proxy_secrets import secret_items, without_keys

SECRET = "type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret"


def credential(certificates: WorkloadCertificates, sa: str = "web") -> Credential:
    subject = CredentialSubject("sidecar~127.10.0.2~web-1.shop", "shop", sa)
    return certificates.current([subject])[subject.node_id]


def dump(cred: Credential, roots_pem: bytes | None = None) -> tuple[dict[str, Any], ...]:
    """What Envoy's /config_dump answers for its active secrets (the key given as SDS
    gave it, to prove it is not passed on even when present), and no warming ones."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return ({"configs": [
        {"@type": SECRET, "name": "default", "version_info": "v1", "last_updated": "t",
         "secret": {"name": "default", "tls_certificate": {
             "certificate_chain": {"inline_bytes": b64(cred.chain_pem)},
             "private_key": {"inline_bytes": b64(cred.key_pem)}}}},
        {"@type": SECRET, "name": "ROOTCA", "version_info": "v1", "last_updated": "t",
         "secret": {"name": "ROOTCA", "validation_context": {
             "trusted_ca": {"inline_bytes": b64(roots_pem or cred.roots_pem)}}}},
    ]}, {})


def test_a_chain_through_an_intermediate_is_traced_to_the_trusted_root(tmp_path: Path) -> None:
    ca = load_plugged_ca(plugged_ca_directory(tmp_path))
    cred = credential(WorkloadCertificates(ca, ttl=timedelta(hours=1)))
    items = secret_items(*dump(cred))
    chain, roots = items
    assert chain["identity"] == "spiffe://cluster.local/ns/shop/sa/web"
    assert [c["isCA"] for c in chain["certificates"]] == [False, True]
    assert chain["certificates"][0]["issuer"] == "CN=Plugged Intermediate,O=example.test"
    assert chain["trustedRoot"] == "CN=Plugged Root,O=example.test"
    assert chain["validNow"] and chain["status"] == "ACTIVE"
    assert [c["subject"] for c in roots["certificates"]] == ["CN=Plugged Root,O=example.test"]
    assert int(chain["certificates"][0]["serialNumber"], 16) == cred.serial
    assert all(len(c["serialNumber"]) % 2 == 0 for i in items for c in i["certificates"])
    text = repr(items)
    assert "PRIVATE KEY" not in text and "private_key" not in text
    assert base64.b64encode(cred.key_pem).decode()[:40] not in text


def test_a_chain_no_trusted_root_signed_and_an_expired_one_are_told(tmp_path: Path) -> None:
    mine = load_or_create_self_signed_ca(tmp_path / "mine")
    other = load_or_create_self_signed_ca(tmp_path / "other")
    cred = credential(WorkloadCertificates(mine, ttl=timedelta(hours=1)))
    chain, _ = secret_items(*dump(cred, roots_pem=other.trust_bundle.pem))
    assert chain["trustedRoot"] is None

    later = datetime.now(UTC) + timedelta(hours=2)
    chain, roots = secret_items(*dump(cred), now=later)
    assert not chain["validNow"] and not chain["certificates"][0]["validNow"]
    assert chain["trustedRoot"] == "CN=meshpilot root CA,O=cluster.local"  # still signed
    assert roots["certificates"][0]["validNow"]


def test_without_keys_drops_key_fields_at_any_depth() -> None:
    raw = {"configs": [{"dynamic_active_secrets": [{"secret": {"tls_certificate": {
        "certificate_chain": {"inline_bytes": "Y2VydA=="},
        "private_key": {"inline_bytes": "a2V5"}, "password": {"inline_string": "pw"}}}}]}]}
    cleaned = without_keys(raw)
    certificate = cleaned["configs"][0]["dynamic_active_secrets"][0]["secret"]["tls_certificate"]
    assert certificate == {"certificate_chain": {"inline_bytes": "Y2VydA=="}}

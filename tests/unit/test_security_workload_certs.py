"""Every proxy's credential: issued once for its identity, renewed at about half its life
(Istio's rotation), reissued when its identity changes, dropped with the proxy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from meshpilot.security import load_or_create_self_signed_ca
from meshpilot.security.certs import uri_sans
from meshpilot.security.workload_certs import CredentialSubject, WorkloadCertificates

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def certificates(tmp_path: Path, ttl: timedelta = timedelta(hours=1)) -> WorkloadCertificates:
    ca = load_or_create_self_signed_ca(tmp_path / "ca", now=T0 - timedelta(days=1))
    return WorkloadCertificates(ca, ttl=ttl)


def test_a_proxy_gets_its_identity_and_keeps_it_until_half_its_life(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    web = CredentialSubject("sidecar~127.10.0.2~web-1.shop", "shop", "web")
    first = certs.current([web], T0)[web.node_id]
    leaf = x509.load_pem_x509_certificates(first.chain_pem)[0]
    assert uri_sans(leaf) == ["spiffe://cluster.local/ns/shop/sa/web"]
    assert b"PRIVATE KEY" in first.key_pem and first.roots_pem.startswith(b"-----BEGIN")
    assert first.renew_at - first.not_before <= timedelta(minutes=35)  # about half
    assert certs.current([web], T0 + timedelta(minutes=20))[web.node_id] is first
    assert certs.next_renewal() == first.renew_at
    renewed = certs.current([web], first.renew_at + timedelta(seconds=1))[web.node_id]
    assert renewed.serial != first.serial and renewed.key_pem != first.key_pem
    assert certs.issued == 2


def test_each_proxy_has_its_own_key_and_a_new_identity_is_a_new_certificate(tmp_path: Path
                                                                           ) -> None:
    certs = certificates(tmp_path)
    a = CredentialSubject("node-a", "shop", "web")
    b = CredentialSubject("node-b", "shop", "web")
    held = certs.current([a, b], T0)
    assert held["node-a"].key_pem != held["node-b"].key_pem  # one key per proxy
    moved = CredentialSubject("node-a", "shop", "admin")
    again = certs.current([moved], T0)
    assert again["node-a"].identity.uri == "spiffe://cluster.local/ns/shop/sa/admin"
    assert "node-b" not in again  # a proxy that went keeps nothing
    assert certs.next_renewal() == again["node-a"].renew_at

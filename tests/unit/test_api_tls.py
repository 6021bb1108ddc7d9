"""The API's server certificate (``up --tls``): the names it is issued for and what it
says, issued by the mesh's CA."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshpilot.security import load_or_create_self_signed_ca
from meshpilot.server.api_tls import issue_server_certificate, subject_names


def test_the_names_are_loopback_and_the_bound_address() -> None:
    assert subject_names("127.0.0.1") == (["localhost"], ["127.0.0.1"])
    assert subject_names("::1") == (["localhost"], ["127.0.0.1", "::1"])
    assert subject_names("[::1]") == (["localhost"], ["127.0.0.1", "::1"])
    assert subject_names("127.0.0.5") == (["localhost"], ["127.0.0.1", "127.0.0.5"])
    assert subject_names("0.0.0.0") == (["localhost"], ["127.0.0.1"])  # no one dials it
    assert subject_names("cp.internal") == (["localhost", "cp.internal"], ["127.0.0.1"])


def test_a_server_certificate_signed_by_the_mesh_ca(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    issued = issue_server_certificate(ca, ["localhost"], ["127.0.0.1"], ttl=timedelta(hours=2))
    cert = issued.certificate
    cert.verify_directly_issued_by(ca.root)
    assert x509.load_pem_x509_certificates(issued.chain_pem) == [cert]  # no intermediates
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(hours=2, minutes=1)
    assert b"PRIVATE KEY" in issued.key_pem and "key_pem" not in repr(issued)

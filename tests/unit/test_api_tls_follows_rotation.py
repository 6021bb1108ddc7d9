"""The API's server certificate (``up --tls``): the names it is issued for and what it
says, issued by the mesh's CA."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshpilot.security import load_or_create_self_signed_ca
from meshpilot.security.ca_files import new_self_signed_ca
from meshpilot.security.root_rotation import RootRotation
from meshpilot.server.api_tls import ApiTls, issue_server_certificate, subject_names
from meshpilot.statedir import StateDir


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


def test_the_api_certificate_follows_a_root_rotation(tmp_path: Path) -> None:
    """``meshpilot ca``: the roots file gets the new bundle at ``trust``, the certificate
    is re-issued from the new CA at ``switch`` (not at its half life), and the old root
    leaves the roots file at ``retire``."""
    state = StateDir(tmp_path / "state")
    state.create()
    old = load_or_create_self_signed_ca(tmp_path / "old")
    steps = [RootRotation(old)]
    tls = ApiTls(old, state, "127.0.0.1", follow=lambda: steps[-1].issuing)
    first = tls.current.certificate
    steps.append(steps[-1].trust(new_self_signed_ca(common_name="meshpilot root CA next")))
    asyncio.run(tls._tick())
    assert tls.current.certificate == first
    assert x509.load_pem_x509_certificates(state.api_ca_file.read_bytes()) == [
        old.root, *([steps[-1].pending.root] if steps[-1].pending else [])]
    steps.append(steps[-1].switch())
    asyncio.run(tls._tick())
    tls.current.certificate.verify_directly_issued_by(steps[-1].issuing.root)
    assert len(x509.load_pem_x509_certificates(state.api_ca_file.read_bytes())) == 2
    steps.append(steps[-1].retire({}))
    asyncio.run(tls._tick())
    assert x509.load_pem_x509_certificates(state.api_ca_file.read_bytes()) == [
        steps[-1].issuing.root]

"""The certificate authority, judged by the real openssl binary where TLS facts matter.

Behaviours followed from Istio: a self-signed root made on first use and reused; a
plugged-in CA from ``ca-cert.pem``/``ca-key.pem``/``root-cert.pem``/``cert-chain.pem``
(intermediates allowed); workload certificates with the SPIFFE ID as their only URI SAN,
24 h by default; rotation at about half the lifetime; several roots trusted at once
during a root rotation.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.unit.security_pki import (
    openssl,
    openssl_root,
    openssl_signed,
    plugged_ca_directory,
    write_secret,
)

from meshpilot.security.bundle import InvalidTrustBundle, TrustBundle
from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.ca_files import (
    CaFileError,
    load_or_create_self_signed_ca,
    load_plugged_ca,
)
from meshpilot.security.certs import root_certificate
from meshpilot.security.csr import CertificateRequestRefused, new_workload_key
from meshpilot.security.identity import SpiffeId, workload_identity
from meshpilot.security.keys import private_key_pem
from meshpilot.security.rotation import needs_renewal, renew_at

SLEEP = workload_identity("default", "sleep")
OPENSSL_TIME = "%b %d %H:%M:%S %Y GMT"


def issue(ca: CertificateAuthority, identity: SpiffeId = SLEEP, **kwargs: object):  # type: ignore[no-untyped-def]
    return ca.issue(new_workload_key(identity).csr_pem, identity, **kwargs)  # type: ignore[arg-type]


def text_of(path: Path) -> str:
    return openssl("x509", "-noout", "-text", "-in", path).stdout


def openssl_dates(path: Path) -> tuple[datetime, datetime]:
    out = openssl("x509", "-noout", "-startdate", "-enddate", "-in", path).stdout
    fields = dict(line.split("=", 1) for line in out.strip().splitlines())
    return _openssl_time(fields["notBefore"]), _openssl_time(fields["notAfter"])


def _openssl_time(text: str) -> datetime:
    return datetime.strptime(" ".join(text.split()), OPENSSL_TIME).replace(tzinfo=UTC)


def verify(root: Path, leaf: Path, untrusted: Path | None = None, at: datetime | None = None):  # type: ignore[no-untyped-def]
    args: list[str | Path] = ["verify", "-CAfile", root]
    if untrusted is not None:
        args += ["-untrusted", untrusted]
    if at is not None:
        args += ["-attime", str(int(at.timestamp()))]
    return openssl(*args, leaf, check=False)


# --- self-signed root ------------------------------------------------------------------


def test_self_signed_root_is_made_once_with_private_key_0600(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    first = load_or_create_self_signed_ca(directory)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}
    assert modes == {"ca-key.pem": 0o600, "ca-cert.pem": 0o644, "root-cert.pem": 0o644,
                     "cert-chain.pem": 0o644}  # and no temporary file left behind
    again = load_or_create_self_signed_ca(directory)
    assert again.root == first.root
    assert private_key_pem(again.signing_key) == private_key_pem(first.signing_key)
    text = text_of(directory / "root-cert.pem")
    assert "CA:TRUE" in text and "NIST CURVE: P-256" in text  # ECDSA P-256 by default
    assert "O = cluster.local" in text


def test_key_mode_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_self_signed_ca(tmp_path / "open")
    finally:
        os.umask(0o077)
    try:
        load_or_create_self_signed_ca(tmp_path / "closed")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "open" / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "closed" / "ca-cert.pem").stat().st_mode) == 0o644


def test_an_interrupted_creation_starts_over(tmp_path: Path) -> None:
    # ca-cert.pem is written last: without it the directory holds no usable CA yet.
    directory = tmp_path / "ca"
    directory.mkdir()
    (directory / "ca-key.pem").write_bytes(b"half-written")
    ca = load_or_create_self_signed_ca(directory)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(issue(ca).certificate_pem)
    assert verify(directory / "root-cert.pem", leaf).returncode == 0


def test_rsa_roots_can_be_chosen(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca", key_type="RSA_2048")
    assert "rsaEncryption" in text_of(tmp_path / "ca" / "ca-cert.pem")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(issue(ca).certificate_pem)
    assert verify(tmp_path / "ca" / "root-cert.pem", leaf).returncode == 0


# --- issued certificates ---------------------------------------------------------------


def test_workload_certificate_carries_only_the_spiffe_id(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    cart = workload_identity("shop", "cart")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(issue(ca, cart).certificate_pem)
    text = text_of(leaf)
    san = text.split("X509v3 Subject Alternative Name: critical", 1)[1].splitlines()[1].strip()
    assert san == "URI:spiffe://cluster.local/ns/shop/sa/cart"
    assert re.search(r"Subject: *\n", text)  # empty subject: no CN
    assert "Digital Signature, Key Encipherment" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    assert verify(tmp_path / "ca" / "root-cert.pem", leaf).returncode == 0


def test_default_lifetime_is_24_hours_from_slightly_in_the_past(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    now = datetime.now(UTC)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(issue(ca, now=now).certificate_pem)
    not_before, not_after = openssl_dates(leaf)
    assert now - timedelta(minutes=5) < not_before <= now - timedelta(seconds=30)  # clock skew
    assert not_after - now.replace(microsecond=0) == timedelta(hours=24)


def test_ttl_of_seconds_expires_then(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    now = datetime.now(UTC).replace(microsecond=0)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(issue(ca, ttl=timedelta(seconds=5), now=now).certificate_pem)
    root = tmp_path / "ca" / "root-cert.pem"
    assert verify(root, leaf, at=now + timedelta(seconds=4)).returncode == 0
    expired = verify(root, leaf, at=now + timedelta(seconds=10))
    assert expired.returncode != 0 and "expired" in expired.stdout + expired.stderr


def test_ttl_outside_the_allowed_range_is_refused(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    with pytest.raises(CertificateRequestRefused, match=r"TTL"):
        issue(ca, ttl=timedelta(milliseconds=500))
    with pytest.raises(CertificateRequestRefused, match=r"TTL"):
        issue(ca, ttl=timedelta(days=91))


def test_a_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca", validity=timedelta(hours=2))
    issued = issue(ca, ttl=timedelta(days=30))
    assert issued.not_after == ca.root.not_valid_after_utc


def test_serials_are_random_128_bit(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    serials = {issue(ca).certificate.serial_number for _ in range(8)}
    assert len(serials) == 8
    assert all(0 < s < 2**128 for s in serials)
    assert max(s.bit_length() for s in serials) > 120  # not a counter


def test_identity_outside_the_trust_domain_is_refused(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    other = workload_identity("default", "sleep", trust_domain="other.example")
    with pytest.raises(CertificateRequestRefused, match=r"outside this CA's trust domain"):
        issue(ca, other)


def test_configured_trust_domain(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca", trust_domain="corp.example")
    identity = workload_identity("default", "sleep", trust_domain="corp.example")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(issue(ca, identity).certificate_pem)
    assert "URI:spiffe://corp.example/ns/default/sa/sleep" in text_of(leaf)


# --- CSR checks -----------------------------------------------------------------------


def _csr(key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName] | None = None,
         subject: x509.Name | None = None, ca_extension: bool = False) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    if ca_extension:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("names", "subject", "ca_extension", "why"),
    [
        ([x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/admin")],
         None, False, "asks for URI:spiffe://cluster.local/ns/default/sa/admin"),
        ([x509.UniformResourceIdentifier(SLEEP.uri), x509.DNSName("bank.example")],
         None, False, "DNS:bank.example"),
        (None, x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "admin")]), False,
         "subject 'CN=admin'"),
        (None, None, True, "BasicConstraints"),
    ],
)
def test_csr_asking_for_more_than_its_identity_is_refused(
    tmp_path: Path, names: list[x509.GeneralName] | None, subject: x509.Name | None,
    ca_extension: bool, why: str,
) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    pem = _csr(ec.generate_private_key(ec.SECP256R1()), names, subject, ca_extension)
    with pytest.raises(CertificateRequestRefused, match=re.escape(why)):
        ca.issue(pem, SLEEP)


def test_csr_without_san_gets_the_identity_the_ca_decides(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    issued = ca.issue(_csr(ec.generate_private_key(ec.SECP256R1())), SLEEP)
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [SLEEP.uri]


def test_csr_with_a_broken_signature_is_refused(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    der = bytearray(x509.load_pem_x509_csr(new_workload_key(SLEEP).csr_pem)
                    .public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # inside the signature's last integer
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CertificateRequestRefused, match=r"signature does not verify"):
        ca.issue(tampered, SLEEP)


def test_weak_and_garbage_csrs_are_refused(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .sign(weak, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CertificateRequestRefused, match=r"1024 bits"):
        ca.issue(pem, SLEEP)
    with pytest.raises(CertificateRequestRefused, match=r"not a PEM certificate signing request"):
        ca.issue(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", SLEEP)


def test_csr_made_by_openssl_is_accepted(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    key = tmp_path / "k.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    csr = tmp_path / "req.csr"
    openssl("req", "-new", "-key", key, "-subj", "/", "-addext",
            f"subjectAltName=critical,URI:{SLEEP.uri}", "-out", csr)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(ca.issue(csr.read_bytes(), SLEEP).certificate_pem)
    modulus = lambda args: openssl(*args).stdout  # noqa: E731
    assert modulus(["pkey", "-in", key, "-pubout"]) == modulus(["x509", "-in", leaf, "-pubkey",
                                                                "-noout"])


def test_workload_key_stays_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    workload = new_workload_key(SLEEP)
    assert list(tmp_path.iterdir()) == []
    assert workload.private_key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert "private_key" not in repr(workload)


# --- plugged-in CA with an intermediate ---------------------------------------------


def test_plugged_intermediate_ca_issues_certs_that_verify_against_the_root(
    tmp_path: Path,
) -> None:
    directory = plugged_ca_directory(tmp_path)
    ca = load_plugged_ca(directory)
    issued = issue(ca)
    assert [c.subject.rfc4514_string() for c in issued.chain] == [
        "CN=Plugged Intermediate,O=example.test"]
    leaf, chain = tmp_path / "leaf.pem", tmp_path / "chain.pem"
    leaf.write_bytes(issued.certificate_pem)
    chain.write_bytes(issued.chain_pem[len(issued.certificate_pem):])
    root = directory / "root-cert.pem"
    assert verify(root, leaf, untrusted=chain).returncode == 0
    assert verify(root, leaf).returncode != 0  # the intermediate is what the chain adds
    other_root, _ = openssl_root(tmp_path, "Other Root")
    assert verify(other_root, leaf, untrusted=chain).returncode != 0


def test_cert_chain_may_hold_just_the_root_but_not_nothing(tmp_path: Path) -> None:
    directory = plugged_ca_directory(tmp_path)
    (directory / "cert-chain.pem").write_bytes(b"")  # nothing between ca-cert and the root
    with pytest.raises(CaFileError, match=r"cert-chain.pem: holds no PEM certificate"):
        load_plugged_ca(directory)
    (directory / "cert-chain.pem").write_bytes((directory / "root-cert.pem").read_bytes())
    assert load_plugged_ca(directory).intermediates == ()


def test_two_level_intermediates(tmp_path: Path) -> None:
    root = openssl_root(tmp_path, "Deep Root")
    middle = openssl_signed(tmp_path, "Middle", root)
    signer = openssl_signed(tmp_path, "Signer", middle)
    directory = tmp_path / "cacerts"
    directory.mkdir()
    (directory / "ca-cert.pem").write_bytes(signer[0].read_bytes())
    write_secret(directory / "ca-key.pem", signer[1].read_bytes())
    (directory / "root-cert.pem").write_bytes(root[0].read_bytes())
    (directory / "cert-chain.pem").write_bytes(
        signer[0].read_bytes() + middle[0].read_bytes() + root[0].read_bytes())
    issued = issue(load_plugged_ca(directory))
    leaf, chain = tmp_path / "leaf.pem", tmp_path / "chain.pem"
    leaf.write_bytes(issued.certificate_pem)
    chain.write_bytes(issued.chain_pem[len(issued.certificate_pem):])
    assert len(issued.chain) == 2
    assert verify(root[0], leaf, untrusted=chain).returncode == 0


# --- plugged-in CA files that cannot work --------------------------------------------


def test_key_not_matching_the_certificate_is_named(tmp_path: Path) -> None:
    directory = plugged_ca_directory(tmp_path)
    other = private_key_pem(ec.generate_private_key(ec.SECP256R1()))
    write_secret(directory / "ca-key.pem", other)
    with pytest.raises(CaFileError, match=r"ca-key.pem: this key does not belong") as info:
        load_plugged_ca(directory)
    assert info.value.path == directory / "ca-key.pem"


def test_a_leaf_certificate_is_not_a_ca(tmp_path: Path) -> None:
    directory = plugged_ca_directory(tmp_path)
    leaf = openssl_signed(tmp_path / "openssl", "Not A CA", (
        tmp_path / "openssl" / "Plugged Intermediate.pem",
        tmp_path / "openssl" / "Plugged Intermediate.key"), ca=False)
    (directory / "ca-cert.pem").write_bytes(leaf[0].read_bytes())
    write_secret(directory / "ca-key.pem", leaf[1].read_bytes())
    with pytest.raises(CaFileError, match=r"ca-cert.pem: 'CN=Not A CA,O=example.test' is not a CA"):
        load_plugged_ca(directory)


def test_expired_and_not_yet_valid_ca_files_are_named(tmp_path: Path) -> None:
    directory = plugged_ca_directory(tmp_path)  # valid for 30 days from now
    with pytest.raises(CaFileError, match=r"ca-cert.pem: .* expired at"):
        load_plugged_ca(directory, now=datetime.now(UTC) + timedelta(days=31))
    with pytest.raises(CaFileError, match=r"ca-cert.pem: .* is not valid until"):
        load_plugged_ca(directory, now=datetime.now(UTC) - timedelta(days=1))


def test_an_expired_root_is_named(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.now(UTC) - timedelta(days=10)
    old = root_certificate(key, trust_domain="cluster.local", not_before=start,
                           not_after=start + timedelta(days=1))
    directory = tmp_path / "ca"
    directory.mkdir()
    for name in ("ca-cert.pem", "root-cert.pem", "cert-chain.pem"):
        (directory / name).write_bytes(old.public_bytes(serialization.Encoding.PEM))
    write_secret(directory / "ca-key.pem", private_key_pem(key))
    with pytest.raises(CaFileError, match=r"ca-cert.pem: .*meshpilot root CA.* expired"):
        load_plugged_ca(directory)
    # a self-signed CA directory is never silently replaced when its root has expired
    with pytest.raises(CaFileError, match=r"expired"):
        load_or_create_self_signed_ca(directory)


def test_unreadable_and_garbage_files_are_named(tmp_path: Path) -> None:
    directory = plugged_ca_directory(tmp_path)
    (directory / "cert-chain.pem").unlink()
    with pytest.raises(CaFileError, match=r"cert-chain.pem: cannot be read"):
        load_plugged_ca(directory)
    (directory / "root-cert.pem").unlink()
    (directory / "root-cert.pem").mkdir()  # unreadable even for root
    with pytest.raises(CaFileError, match=r"root-cert.pem: cannot be read"):
        load_plugged_ca(directory)
    (directory / "root-cert.pem").rmdir()
    (directory / "root-cert.pem").write_text("not a certificate\n")
    with pytest.raises(CaFileError, match=r"root-cert.pem: holds no PEM certificate"):
        load_plugged_ca(directory)
    (directory / "ca-key.pem").write_text("not a key\n")
    with pytest.raises(CaFileError, match=r"ca-key.pem: holds no PEM private key"):
        load_plugged_ca(directory)


def test_an_encrypted_key_is_named(tmp_path: Path) -> None:
    directory = plugged_ca_directory(tmp_path)
    key = tmp_path / "openssl" / "Plugged Intermediate.key"
    encrypted = openssl("pkey", "-in", key, "-aes256", "-passout", "pass:secret").stdout
    write_secret(directory / "ca-key.pem", encrypted.encode())
    with pytest.raises(CaFileError, match=r"ca-key.pem: the key is encrypted"):
        load_plugged_ca(directory)


def test_chain_that_does_not_reach_the_root_is_named(tmp_path: Path) -> None:
    stranger = openssl_root(tmp_path, "Stranger Root")
    directory = plugged_ca_directory(tmp_path / "a")
    (directory / "root-cert.pem").write_bytes(stranger[0].read_bytes())
    with pytest.raises(CaFileError, match=r"root-cert.pem: no root here issued"):
        load_plugged_ca(directory)
    directory = plugged_ca_directory(tmp_path / "b")
    unrelated, _ = openssl_signed(tmp_path, "Unrelated", stranger)
    chain = directory / "cert-chain.pem"
    chain.write_bytes((directory / "ca-cert.pem").read_bytes() + unrelated.read_bytes())
    with pytest.raises(CaFileError, match=r"cert-chain.pem: 'CN=Unrelated,O=example.test' did not"):
        load_plugged_ca(directory)


# --- trust bundles and root rotation -------------------------------------------------


def test_root_rotation_trusts_both_roots_then_only_the_new(tmp_path: Path) -> None:
    old = load_or_create_self_signed_ca(tmp_path / "old")
    new = load_or_create_self_signed_ca(tmp_path / "new")
    from_old = tmp_path / "from-old.pem"
    from_old.write_bytes(issue(old).certificate_pem)
    # step 1: trust both; step 2: issue from the new root
    both = old.trust_bundle.with_root(new.root)
    rotating = new.with_trust_bundle(both)
    from_new = tmp_path / "from-new.pem"
    from_new.write_bytes(issue(rotating).certificate_pem)
    bundle_file = tmp_path / "bundle.pem"
    bundle_file.write_bytes(rotating.trust_bundle.pem)
    assert verify(bundle_file, from_old).returncode == 0
    assert verify(bundle_file, from_new).returncode == 0
    # step 3: retire the old root
    retired = rotating.with_trust_bundle(both.without_root(old.root))
    bundle_file.write_bytes(retired.trust_bundle.pem)
    assert verify(bundle_file, from_new).returncode == 0
    assert verify(bundle_file, from_old).returncode != 0
    assert len(both) == 2 and len(old.trust_bundle) == 1  # values, never changed in place


def test_trust_bundle_is_a_checked_value(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    bundle = TrustBundle.of([ca.root, ca.root])
    assert len(bundle) == 1 and ca.root in bundle
    assert TrustBundle.from_pem(bundle.pem) == bundle
    with pytest.raises(InvalidTrustBundle, match=r"at least one root"):
        bundle.without_root(ca.root)
    with pytest.raises(InvalidTrustBundle, match=r"not a CA certificate"):
        TrustBundle.of([issue(ca).certificate])
    with pytest.raises(ValueError, match=r"must contain the CA's own root"):
        other = load_or_create_self_signed_ca(tmp_path / "other")
        ca.with_trust_bundle(other.trust_bundle)


def test_plugged_root_cert_may_hold_several_roots(tmp_path: Path) -> None:
    directory = plugged_ca_directory(tmp_path)
    extra, _ = openssl_root(tmp_path, "Next Root")
    roots = directory / "root-cert.pem"
    roots.write_bytes(roots.read_bytes() + extra.read_bytes())
    ca = load_plugged_ca(directory)
    assert len(ca.trust_bundle) == 2 and ca.root == ca.trust_bundle.roots[0]


# --- renewal --------------------------------------------------------------------------


def test_renewal_is_due_at_about_half_the_lifetime(tmp_path: Path) -> None:
    # Istio rotates workload certificates when about half of their lifetime is left.
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    now = datetime.now(UTC)
    cert = issue(ca, now=now).certificate
    due = renew_at(cert)
    assert timedelta(hours=11, minutes=59) <= due - now <= timedelta(hours=12)
    assert not needs_renewal(cert, now)
    assert not needs_renewal(cert, now + timedelta(hours=11, minutes=58))
    assert needs_renewal(cert, now + timedelta(hours=12))
    short = issue(ca, ttl=timedelta(seconds=10), now=now).certificate
    assert not needs_renewal(short, now) and needs_renewal(short, now + timedelta(seconds=6))

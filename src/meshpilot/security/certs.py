"""Building and inspecting X.509 certificates: roots and workload certificates.

A workload certificate says one thing: the SPIFFE ID in its URI SAN. Its subject is
empty (so, by RFC 5280, the SAN extension is critical); peers and AuthorizationPolicy
read the identity from the SAN alone. Key usage and extended key usage allow the same
certificate to serve TLS as server and as client, as mTLS between sidecars needs.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshpilot.security.identity import SpiffeId
from meshpilot.security.keys import PrivateKey, PublicKey, signature_hash

SERIAL_BITS = 128


def random_serial() -> int:
    """A positive serial of 128 random bits: unpredictable, so never repeated in practice."""
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial:  # X.509 serials are positive
            return serial


ROOT_COMMON_NAME = "meshpilot root CA"


def root_certificate(
    key: PrivateKey, *, trust_domain: str, not_before: datetime, not_after: datetime,
    common_name: str = ROOT_COMMON_NAME,
) -> x509.Certificate:
    """A self-signed CA certificate for ``trust_domain``, able to sign CAs below it.
    ``common_name`` tells two roots of one mesh apart (a rotation trusts both at once)."""
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, signature_hash(key))
    )


def workload_certificate(
    public_key: PublicKey,
    identity: SpiffeId,
    *,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A leaf certificate for ``identity``, signed by ``issuer``."""
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=True,  # the subject is empty: RFC 5280 4.2.1.6
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, signature_hash(issuer_key))
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificates_pem(certs: tuple[x509.Certificate, ...] | list[x509.Certificate]) -> bytes:
    return b"".join(certificate_pem(cert) for cert in certs)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as ``openssl x509 -fingerprint -sha256`` prints it
    (``AB:CD:...``), so a person can match what meshpilot shows against a file."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def uri_sans(cert: x509.Certificate) -> list[str]:
    """The URI SANs of ``cert`` (empty when it has no SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return san.value.get_values_for_type(x509.UniformResourceIdentifier)


def is_ca(cert: x509.Certificate) -> bool:
    """Whether ``cert`` may sign certificates: basicConstraints CA, and keyCertSign when
    it states its key usage."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    if not constraints.value.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        return True
    return usage.value.key_cert_sign


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``cert`` (names and signature both checked)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return issued_by(cert, cert)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=True,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )

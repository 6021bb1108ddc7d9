"""Certificate signing requests: making one for a workload, and checking one for the CA.

The CA, not the requester, decides what a workload certificate says: the requester
contributes only its public key, proven by the CSR's signature. So a CSR may ask for
the identity it is being issued for and nothing else; one that names another identity,
a subject, or extensions of its own choosing is refused rather than quietly trimmed,
so a misconfigured or hostile requester learns at once that it asked for too much.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshpilot.security.identity import SpiffeId
from meshpilot.security.keys import (
    DEFAULT_KEY_TYPE,
    KeyType,
    PrivateKey,
    PublicKey,
    generate_key,
    private_key_pem,
    signature_hash,
    weak_key_reason,
)


class CertificateRequestRefused(ValueError):
    """The CA will not issue this certificate; the message says why and what to send."""


@dataclass(frozen=True, eq=False)
class WorkloadKey:
    """A workload's private key (memory only) and the CSR that asks for its identity."""

    identity: SpiffeId
    private_key: PrivateKey = field(repr=False)
    csr_pem: bytes

    def private_key_pem(self) -> bytes:
        """PEM of the key, for handing to Envoy over SDS; never written to disk here."""
        return private_key_pem(self.private_key)


def new_workload_key(identity: SpiffeId, key_type: KeyType = DEFAULT_KEY_TYPE) -> WorkloadKey:
    """A fresh key pair and a CSR with an empty subject and the SPIFFE ID as URI SAN."""
    key = generate_key(key_type)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=True,
        )
        .sign(key, signature_hash(key))
    )
    return WorkloadKey(identity, key, csr.public_bytes(serialization.Encoding.PEM))


def requested_public_key(csr_pem: bytes, identity: SpiffeId) -> PublicKey:
    """The public key of a CSR fit to be issued a certificate for ``identity``.

    Raises :class:`CertificateRequestRefused` when the CSR does not parse, its signature
    does not verify, its key is weak, or it asks for anything but ``identity``.
    """
    csr = _parse(csr_pem)
    if not csr.is_signature_valid:
        raise CertificateRequestRefused(
            "the CSR's signature does not verify: it was not signed by the key it carries"
        )
    _check_asks_only_for(csr, identity)
    public_key = csr.public_key()
    reason = weak_key_reason(public_key)
    if reason is not None:
        raise CertificateRequestRefused(f"the CSR carries {reason}")
    return public_key  # type: ignore[return-value]  # weak_key_reason admitted EC or RSA


def _parse(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CertificateRequestRefused(
            f"not a PEM certificate signing request ({exc})"
        ) from None


def _check_asks_only_for(csr: x509.CertificateSigningRequest, identity: SpiffeId) -> None:
    if len(csr.subject):
        raise CertificateRequestRefused(
            f"the CSR asks for subject {csr.subject.rfc4514_string()!r}; workload "
            "certificates carry their identity in the URI SAN only, so send an empty subject"
        )
    try:
        extensions = list(csr.extensions)
    except ValueError as exc:
        raise CertificateRequestRefused(f"the CSR's extensions do not parse ({exc})") from None
    for extension in extensions:
        if not isinstance(extension.value, x509.SubjectAlternativeName):
            raise CertificateRequestRefused(
                f"the CSR asks for extension {extension.oid.dotted_string} "
                f"({type(extension.value).__name__}); the CA decides every extension but the SAN"
            )
        _check_sans(extension.value, identity)


def _check_sans(sans: x509.SubjectAlternativeName, identity: SpiffeId) -> None:
    asked = [_describe(name) for name in sans]
    if asked != [f"URI:{identity.uri}"]:
        raise CertificateRequestRefused(
            f"the CSR asks for {', '.join(asked) or 'no names'} but is being issued for "
            f"{identity.uri}; ask for that URI SAN alone, or for no SAN"
        )


def _describe(name: x509.GeneralName) -> str:
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    return f"{type(name).__name__}:{name.value}"

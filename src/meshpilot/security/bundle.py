"""The set of roots a workload trusts: Istio's ``ROOTCA`` secret, as one immutable value.

Holding several roots is what makes a root rotation hitless: add the new root while
certificates from the old one are still in use, let the CA issue from the new one,
and retire the old root only once no live certificate chains to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography import x509

from meshpilot.security.certs import certificates_pem, is_ca


class InvalidTrustBundle(ValueError):
    """A bundle that would trust nothing, or trust something that is not a CA."""


@dataclass(frozen=True)
class TrustBundle:
    """Root certificates in the order added, each once. Build with :meth:`of` or
    :meth:`from_pem`; every change returns a new bundle."""

    roots: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.roots:
            raise InvalidTrustBundle("a trust bundle needs at least one root certificate")
        for root in self.roots:
            if not is_ca(root):
                raise InvalidTrustBundle(
                    f"{root.subject.rfc4514_string() or 'a certificate'} is not a CA "
                    "certificate and cannot be a trust root"
                )
        if len(set(self.roots)) != len(self.roots):
            raise InvalidTrustBundle("a root appears twice; build bundles with TrustBundle.of")

    @classmethod
    def of(cls, roots: Iterable[x509.Certificate]) -> TrustBundle:
        return cls(tuple(dict.fromkeys(roots)))

    @classmethod
    def from_pem(cls, data: bytes) -> TrustBundle:
        return cls.of(x509.load_pem_x509_certificates(data))

    @property
    def pem(self) -> bytes:
        """The concatenated PEM roots, as a ``-CAfile`` or Envoy's trusted_ca takes them."""
        return certificates_pem(self.roots)

    def with_root(self, root: x509.Certificate) -> TrustBundle:
        """Also trust ``root`` (the first step of a rotation)."""
        return TrustBundle.of((*self.roots, root))

    def without_root(self, root: x509.Certificate) -> TrustBundle:
        """Stop trusting ``root`` (the last step of a rotation)."""
        if root not in self.roots:
            raise InvalidTrustBundle("that root is not in this bundle")
        return TrustBundle(tuple(r for r in self.roots if r != root))

    def __contains__(self, cert: object) -> bool:
        return cert in self.roots

    def __iter__(self) -> Iterator[x509.Certificate]:
        return iter(self.roots)

    def __len__(self) -> int:
        return len(self.roots)

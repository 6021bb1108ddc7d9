"""The certificate authority: issues workload certificates for SPIFFE identities.

The CA signs with ``signing_cert`` (a root it made itself, or the user's plugged-in CA,
possibly an intermediate). Every certificate it issues comes with the chain from that
signer up to (not including) its root, so a peer holding only the trust bundle can
verify it. Loading and creating CA directories is :mod:`meshpilot.security.ca_files`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptography import x509

from meshpilot.security.bundle import TrustBundle
from meshpilot.security.certs import certificate_pem, certificates_pem, workload_certificate
from meshpilot.security.csr import CertificateRequestRefused, requested_public_key
from meshpilot.security.identity import SpiffeId
from meshpilot.security.keys import PrivateKey
from meshpilot.security.rotation import renew_at

DEFAULT_WORKLOAD_TTL = timedelta(hours=24)
"""Istio's default workload certificate lifetime."""
MAX_WORKLOAD_TTL = timedelta(days=90)
"""Longest lifetime a workload may ask for (Istio's default maximum)."""
MIN_WORKLOAD_TTL = timedelta(seconds=1)
CLOCK_SKEW = timedelta(seconds=60)
"""How far before issuance a certificate becomes valid, so a peer whose clock runs a
little behind does not reject it; at most a tenth of the TTL (see :func:`_validity`)."""


@dataclass(frozen=True)
class IssuedCertificate:
    """A workload certificate with the chain a peer needs to reach the root."""

    identity: SpiffeId
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the signer first, then up to below the root

    @property
    def certificate_pem(self) -> bytes:
        return certificate_pem(self.certificate)

    @property
    def chain_pem(self) -> bytes:
        """Leaf then intermediates: what the workload presents in a TLS handshake."""
        return certificates_pem((self.certificate, *self.chain))

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @property
    def renew_at(self) -> datetime:
        return renew_at(self.certificate)


@dataclass(frozen=True, eq=False)
class CertificateAuthority:
    """Signs workload certificates in one trust domain.

    Invariants (checked by the loaders): ``signing_key`` belongs to ``signing_cert``;
    ``intermediates`` link ``signing_cert`` to ``root``, each issued by the next;
    ``root`` is in ``trust_bundle``.
    """

    trust_domain: str
    signing_cert: x509.Certificate
    signing_key: PrivateKey = field(repr=False)
    root: x509.Certificate
    trust_bundle: TrustBundle
    intermediates: tuple[x509.Certificate, ...] = ()
    max_ttl: timedelta = MAX_WORKLOAD_TTL

    def __post_init__(self) -> None:
        if self.root not in self.trust_bundle:
            raise ValueError("the trust bundle must contain the CA's own root")

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Certificates between an issued leaf and the root, nearest first."""
        if self.signing_cert == self.root:
            return ()
        return (self.signing_cert, *self.intermediates)

    def with_trust_bundle(self, bundle: TrustBundle) -> CertificateAuthority:
        """The same CA distributing ``bundle`` (which must hold its root): how a root
        rotation adds the new root beside the old, then drops the old."""
        return replace(self, trust_bundle=bundle)

    def issue(
        self,
        csr_pem: bytes,
        identity: SpiffeId,
        *,
        ttl: timedelta = DEFAULT_WORKLOAD_TTL,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Sign the CSR's key for ``identity``, valid for ``ttl`` (capped by the signer's
        own expiry). Raises :class:`CertificateRequestRefused` saying why it will not."""
        if identity.trust_domain != self.trust_domain:
            raise CertificateRequestRefused(
                f"{identity.uri} is outside this CA's trust domain {self.trust_domain!r}"
            )
        self._check_ttl(ttl)
        public_key = requested_public_key(csr_pem, identity)
        not_before, not_after = _validity(ttl, _utc_now(now))
        cert = workload_certificate(
            public_key,
            identity,
            issuer=self.signing_cert,
            issuer_key=self.signing_key,
            not_before=not_before,
            not_after=min(not_after, self._expiry()),
        )
        return IssuedCertificate(identity, cert, self.chain)

    def _check_ttl(self, ttl: timedelta) -> None:
        if not MIN_WORKLOAD_TTL <= ttl <= self.max_ttl:
            raise CertificateRequestRefused(
                f"a TTL of {ttl} is outside {MIN_WORKLOAD_TTL} to {self.max_ttl}"
            )

    def _expiry(self) -> datetime:
        """No leaf may outlive a certificate in its chain: it would stop verifying."""
        return min(c.not_valid_after_utc for c in (*self.chain, self.root))


def _validity(ttl: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """Whole-second bounds (X.509 times have no fractions): valid from a little before
    ``now`` for clock skew, until ``now + ttl`` rounded up."""
    start = now.replace(microsecond=0)
    backdate = timedelta(seconds=math.floor(min(CLOCK_SKEW, ttl / 10).total_seconds()))
    return start - backdate, start + timedelta(seconds=math.ceil(ttl.total_seconds()))


def _utc_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


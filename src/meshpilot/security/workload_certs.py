"""Each proxy's credential: issued when it is first needed, renewed at about half its life.

The control plane owns one :class:`WorkloadCertificates`. For every proxy it serves it
holds a :class:`Credential` (the certificate chain, the private key, the roots to
trust), keyed by node id: a proxy is given its own key and no other. Keys are made in
memory and never written to disk; on the local runtime the control plane runs on the
pods' host, so no key leaves it.

Renewal follows Istio: a certificate is replaced when about half its lifetime is gone,
so a proxy always holds one with time to spare; the old one stays valid until it
expires, so connections made with it keep working.

A root rotation goes through here in two moves (:mod:`meshpilot.security.root_rotation`
decides when): :meth:`WorkloadCertificates.trust` hands every proxy a new trust bundle
and keeps its certificate, so peers learn the new root before anything is issued from
it; :meth:`WorkloadCertificates.switch` issues from the new CA and replaces the
credentials from the old one at moments spread over a window, so a large mesh does not
pay for all its certificates in one rebuild, nor push them all in one burst.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from cryptography import x509

from meshpilot.security.bundle import TrustBundle
from meshpilot.security.ca import DEFAULT_WORKLOAD_TTL, CertificateAuthority
from meshpilot.security.csr import new_workload_key
from meshpilot.security.identity import SpiffeId, workload_identity


@dataclass(frozen=True)
class Credential:
    """What one proxy is given over SDS (``default`` and ``ROOTCA``)."""

    identity: SpiffeId
    chain_pem: bytes  # the leaf, then the intermediates up to below the root
    key_pem: bytes = field(repr=False)  # memory only
    roots_pem: bytes  # the trust bundle
    serial: int
    not_before: datetime
    not_after: datetime
    renew_at: datetime
    signer: x509.Certificate = field(repr=False)  # the CA certificate that signed it ...
    root: x509.Certificate = field(repr=False)  # ... and the root its chain reaches


@dataclass(frozen=True)
class CredentialSubject:
    """A proxy to issue for: its node id, and the namespace and service account its
    certificate's identity names."""

    node_id: str
    namespace: str
    service_account: str


class WorkloadCertificates:
    """Credentials for the proxies of one control plane (thread-safe)."""

    def __init__(self, ca: CertificateAuthority, *,
                 ttl: timedelta = DEFAULT_WORKLOAD_TTL) -> None:
        self._ca = ca
        self._ttl = ttl
        self._lock = threading.Lock()
        self._held: dict[str, Credential] = {}
        self._reissue_at: dict[str, datetime] = {}
        """node id -> when its credential from a previous CA is replaced (see switch)."""
        self.issued = 0
        """How many certificates were issued (for tests and benchmarks)."""

    @property
    def ca(self) -> CertificateAuthority:
        return self._ca

    def trust(self, bundle: TrustBundle) -> None:
        """Distribute ``bundle`` (which holds the issuing CA's root) from the next rebuild
        on: every held credential keeps its certificate and key and gets the new roots."""
        with self._lock:
            self._ca = self._ca.with_trust_bundle(bundle)
            self._held = {n: self._with_roots(c) for n, c in self._held.items()}

    def switch(self, ca: CertificateAuthority, *, spread: timedelta = timedelta(0),
               now: datetime | None = None) -> datetime | None:
        """Issue from ``ca`` (and distribute its bundle) from now on. Each held
        credential signed by another CA is replaced at its own moment within ``spread``
        of ``now`` (the first at once, in node order); returns when the last is due
        (None: none held)."""
        moment = now or datetime.now(UTC)
        with self._lock:
            self._ca = ca
            self._held = {n: self._with_roots(c) for n, c in self._held.items()}
            stale = sorted(n for n, c in self._held.items() if c.signer != ca.signing_cert)
            step = spread / len(stale) if stale else spread
            self._reissue_at = {n: moment + step * i for i, n in enumerate(stale)}
            return max(self._reissue_at.values(), default=None)

    def roots_in_use(self) -> Counter[x509.Certificate]:
        """root -> how many held credentials chain to it."""
        with self._lock:
            return Counter(c.root for c in self._held.values())

    def awaiting_reissue(self) -> tuple[int, datetime | None]:
        """(How many held credentials are signed by another CA than the issuing one,
        when the last of them is due to be replaced.)"""
        with self._lock:
            stale = [n for n, c in self._held.items() if c.signer != self._ca.signing_cert]
            due = [self._reissue_at[n] for n in stale if n in self._reissue_at]
            return len(stale), max(due, default=None)

    def current(self, proxies: Iterable[CredentialSubject], now: datetime | None = None
                ) -> Mapping[str, Credential]:
        """node id -> a valid credential for each of ``proxies`` (issuing or renewing what
        is due); credentials of proxies not named are dropped. Immutable."""
        moment = now or datetime.now(UTC)
        with self._lock:
            held = {p.node_id: self._valid(p, moment) for p in proxies}
            self._held = held
            self._reissue_at = {n: t for n, t in self._reissue_at.items()
                                if n in held and held[n].signer != self._ca.signing_cert}
            return MappingProxyType(dict(held))

    def next_renewal(self) -> datetime | None:
        """When the earliest held credential is due for renewal, or for replacement by
        one from the issuing CA (None: none held)."""
        with self._lock:
            due = [self._due(n, c) for n, c in self._held.items()]
            return min(due, default=None)

    def _due(self, node_id: str, held: Credential) -> datetime:
        """When ``held`` must be replaced: at half its life, or sooner when another CA
        than the issuing one signed it (at once unless :meth:`switch` spread it)."""
        if held.signer == self._ca.signing_cert:
            return held.renew_at
        return min(held.renew_at, self._reissue_at.get(node_id, held.not_before))

    def _valid(self, proxy: CredentialSubject, now: datetime) -> Credential:
        identity = workload_identity(proxy.namespace, proxy.service_account,
                                     trust_domain=self._ca.trust_domain)
        held = self._held.get(proxy.node_id)
        if held is not None and held.identity == identity and \
                now < self._due(proxy.node_id, held):
            return held
        return self._issue(identity, now)

    def _with_roots(self, held: Credential) -> Credential:
        """``held`` with the issuing CA's bundle (the same object if it has it already,
        so its proxy's secrets are not rebuilt)."""
        roots = self._ca.trust_bundle.pem
        return held if held.roots_pem == roots else replace(held, roots_pem=roots)

    def _issue(self, identity: SpiffeId, now: datetime) -> Credential:
        key = new_workload_key(identity)
        issued = self._ca.issue(key.csr_pem, identity, ttl=self._ttl, now=now)
        self.issued += 1
        return Credential(
            identity=identity, chain_pem=issued.chain_pem, key_pem=key.private_key_pem(),
            roots_pem=self._ca.trust_bundle.pem, serial=issued.certificate.serial_number,
            not_before=issued.not_before, not_after=issued.not_after,
            renew_at=issued.renew_at, signer=self._ca.signing_cert, root=self._ca.root)

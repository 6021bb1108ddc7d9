"""Each proxy's credential: issued when it is first needed, renewed at about half its life.

The control plane owns one :class:`WorkloadCertificates`. For every proxy it serves it
holds a :class:`Credential` (the certificate chain, the private key, the roots to
trust), keyed by node id: a proxy is given its own key and no other. Keys are made in
memory and never written to disk; on the local runtime the control plane runs on the
pods' host, so no key leaves it.

Renewal follows Istio: a certificate is replaced when about half its lifetime is gone,
so a proxy always holds one with time to spare; the old one stays valid until it
expires, so connections made with it keep working. A new root is distributed beside the
old (the trust bundle holds both) before anything is issued from it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

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
        self.issued = 0
        """How many certificates were issued (for tests and benchmarks)."""

    @property
    def ca(self) -> CertificateAuthority:
        return self._ca

    def rotate_trust(self, ca: CertificateAuthority) -> None:
        """Issue from ``ca`` from now on (its bundle is what proxies trust); credentials are
        reissued at their next :meth:`current` so every proxy gets the new bundle."""
        with self._lock:
            self._ca = ca
            self._held = {}

    def current(self, proxies: Iterable[CredentialSubject], now: datetime | None = None
                ) -> Mapping[str, Credential]:
        """node id -> a valid credential for each of ``proxies`` (issuing or renewing what
        is due); credentials of proxies not named are dropped. Immutable."""
        moment = now or datetime.now(UTC)
        with self._lock:
            held = {p.node_id: self._valid(p, moment) for p in proxies}
            self._held = held
            return MappingProxyType(dict(held))

    def next_renewal(self) -> datetime | None:
        """When the earliest held credential is due for renewal (None: none held)."""
        with self._lock:
            return min((c.renew_at for c in self._held.values()), default=None)

    def _valid(self, proxy: CredentialSubject, now: datetime) -> Credential:
        identity = workload_identity(proxy.namespace, proxy.service_account,
                                     trust_domain=self._ca.trust_domain)
        held = self._held.get(proxy.node_id)
        if held is not None and held.identity == identity and now < held.renew_at:
            return held
        return self._issue(identity, now)

    def _issue(self, identity: SpiffeId, now: datetime) -> Credential:
        key = new_workload_key(identity)
        issued = self._ca.issue(key.csr_pem, identity, ttl=self._ttl, now=now)
        self.issued += 1
        return Credential(
            identity=identity, chain_pem=issued.chain_pem, key_pem=key.private_key_pem(),
            roots_pem=self._ca.trust_bundle.pem, serial=issued.certificate.serial_number,
            not_before=issued.not_before, not_after=issued.not_after,
            renew_at=issued.renew_at)

"""Root CA rotation as three steps, each a pure function of the mesh's CA state.

A workload trusts the roots in its ``ROOTCA`` bundle and presents a certificate from
the issuing CA. Replacing the root in one move would break every connection between a
proxy that has the new certificate and one that does not trust its root yet, so the
rotation (as with Istio's plugged-in CA) goes:

1. **trust** a new CA's root: the bundle holds the old and the new root; nothing is
   issued from the new CA yet (it is *pending*).
2. **switch** the issuing CA to the new one (once every proxy trusts its root):
   workload certificates are re-issued from it; both roots stay trusted, so old and new
   certificates verify everywhere meanwhile.
3. **retire** the old root (once no live workload certificate chains to it): the bundle
   holds only the roots still needed.

:class:`RootRotation` checks the order and the preconditions it can see (which CA,
which roots); what it cannot see, which certificates are live and what the proxies have
taken, its caller passes in or checks. A refused step raises :class:`RotationRefused`
and changes nothing: every step returns a new value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509

from meshpilot.security.bundle import TrustBundle
from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.certs import fingerprint


class Phase(StrEnum):
    """Where a rotation is, read from the state itself (so a restart resumes it)."""

    STEADY = "Steady"  # the bundle holds only the issuing CA's root
    TRUSTED = "Trusted"  # a pending CA's root is trusted; switch next
    SWITCHED = "Switched"  # roots other than the issuing one are still trusted; retire next


class Refusal(StrEnum):
    """Why a step was refused; the API gives each a stable diagnostic code."""

    CA_FILES = "ca-files"  # a CA directory that cannot be used
    OUT_OF_ORDER = "out-of-order"  # the step does not apply in this phase
    NOT_TRUSTED = "not-trusted"  # switching to a CA whose root is not in the bundle
    ROOT_NEEDED = "root-needed"  # retiring would leave nothing but the roots in use
    ROOT_IN_USE = "root-in-use"  # live workload certificates chain to a root to retire
    NOT_PROPAGATED = "not-propagated"  # proxies have not taken the previous step yet


class RotationRefused(Exception):
    """A step that was not taken: ``refusal`` says which rule, the message what to do;
    ``file`` is the CA file at fault, if one is."""

    def __init__(self, refusal: Refusal, message: str, *, file: str | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message
        self.file = file


def describe(cert: x509.Certificate) -> str:
    """How a message names a CA certificate: its subject and the start of its
    fingerprint (two roots of one mesh may share a subject)."""
    return f"{cert.subject.rfc4514_string() or 'a root'} (SHA-256 {fingerprint(cert)[:23]}...)"


@dataclass(frozen=True)
class RootRotation:
    """The mesh's CA state: ``issuing`` signs workload certificates and its
    ``trust_bundle`` is what every proxy trusts; ``pending`` is a CA whose roots are
    trusted and that :meth:`switch` will issue from."""

    issuing: CertificateAuthority
    pending: CertificateAuthority | None = None

    def __post_init__(self) -> None:
        if self.pending is not None and self.pending.root not in self.bundle:
            raise ValueError("the pending CA's root must be in the trust bundle")

    @property
    def bundle(self) -> TrustBundle:
        return self.issuing.trust_bundle

    @property
    def phase(self) -> Phase:
        if self.pending is not None:
            return Phase.TRUSTED
        if self.retirable():
            return Phase.SWITCHED
        return Phase.STEADY

    def retirable(self) -> tuple[x509.Certificate, ...]:
        """The roots :meth:`retire` removes: all but the issuing and the pending CA's."""
        keep = {self.issuing.root} | ({self.pending.root} if self.pending else set())
        return tuple(r for r in self.bundle if r not in keep)

    def trust(self, ca: CertificateAuthority) -> RootRotation:
        """Trust ``ca``'s roots beside the current ones and make it the pending CA."""
        if self.pending is not None:
            raise RotationRefused(
                Refusal.OUT_OF_ORDER,
                f"{describe(self.pending.root)} is already trusted and pending: switch to "
                "it (`meshpilot ca switch`) before trusting another root")
        if ca.signing_cert == self.issuing.signing_cert or ca.root in self.bundle:
            raise RotationRefused(
                Refusal.OUT_OF_ORDER,
                f"{describe(ca.root)} is already in the trust bundle; to issue from this "
                "CA, use `meshpilot ca switch --ca-dir` with its directory")
        bundle = TrustBundle.of((*self.bundle, *ca.trust_bundle))
        return RootRotation(self.issuing.with_trust_bundle(bundle),
                            ca.with_trust_bundle(bundle))

    def switch(self, ca: CertificateAuthority | None = None) -> RootRotation:
        """Issue from ``ca`` (default: the pending CA), whose root must be trusted."""
        target = ca if ca is not None else self.pending
        if target is None:
            raise RotationRefused(
                Refusal.OUT_OF_ORDER,
                "no new root is trusted yet: run `meshpilot ca trust` first (every proxy "
                "must trust a root before certificates from it are handed out)")
        if target.root not in self.bundle:
            raise RotationRefused(
                Refusal.NOT_TRUSTED,
                f"the CA's root {describe(target.root)} is not in the trust bundle: "
                "`meshpilot ca trust --ca-dir` that directory first, then switch")
        if target.signing_cert == self.issuing.signing_cert:
            raise RotationRefused(
                Refusal.OUT_OF_ORDER, "the mesh already issues from this CA")
        return RootRotation(target.with_trust_bundle(self.bundle))

    def retire(self, in_use: Mapping[x509.Certificate, int]) -> RootRotation:
        """Stop trusting :meth:`retirable` roots; ``in_use`` counts live workload
        certificates per root, and none may chain to a root retired."""
        retired = self.retirable()
        if not retired:
            raise RotationRefused(
                Refusal.ROOT_NEEDED,
                f"nothing to retire: the bundle holds only {self._kept()}, which the mesh "
                "still needs; a rotation starts with `meshpilot ca trust`")
        busy = {r: in_use[r] for r in retired if in_use.get(r)}
        if busy:
            counts = ", ".join(f"{n} chain to {describe(r)}" for r, n in busy.items())
            raise RotationRefused(
                Refusal.ROOT_IN_USE,
                f"live workload certificates still chain to a root to retire ({counts}); "
                "wait until `meshpilot ca status` shows them re-issued")
        bundle = TrustBundle.of(r for r in self.bundle if r not in retired)
        pending = self.pending.with_trust_bundle(bundle) if self.pending else None
        return RootRotation(self.issuing.with_trust_bundle(bundle), pending)

    def _kept(self) -> str:
        kept = [f"the issuing CA's root {describe(self.issuing.root)}"]
        if self.pending is not None and self.pending.root != self.issuing.root:
            kept.append(f"the pending CA's root {describe(self.pending.root)}")
        return " and ".join(kept)

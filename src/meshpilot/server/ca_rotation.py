"""The control plane's root CA rotation: each step checked, saved, then pushed.

:class:`meshpilot.security.root_rotation.RootRotation` decides whether a step applies;
this service adds what only the running control plane knows: which certificates its
proxies hold (:class:`WorkloadCertificates`) and whether every proxy has acknowledged
the config carrying the previous step (``converge``). A step is saved
(:class:`RootStore`) before any proxy is told, so a control plane that dies right after
resumes from it; steps run one at a time.

Why ``switch`` and ``retire`` wait for the proxies: a certificate from the new CA must
not reach any peer that does not trust its root yet, and the old root must not leave a
bundle while some proxy still presents a certificate that chains to it. Either would
fail handshakes, which the rotation exists to avoid.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509

from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.ca_files import CaFileError, load_plugged_ca, new_self_signed_ca
from meshpilot.security.certs import ROOT_COMMON_NAME, certificate_pem, fingerprint
from meshpilot.security.options import SecurityOptions
from meshpilot.security.root_rotation import (
    Phase,
    Refusal,
    RootRotation,
    RotationRefused,
    describe,
)
from meshpilot.security.root_store import ROTATION_DIR, RootStore, ca_id
from meshpilot.security.workload_certs import WorkloadCertificates
from meshpilot.server.proxy_secrets import certificate_json

log = logging.getLogger(__name__)

SYNC_TIMEOUT_SECONDS = 10.0
"""How long a step waits for every connected proxy to acknowledge the latest config."""
DEFAULT_SPREAD = timedelta(seconds=30)
"""Over how long ``switch`` re-issues the workload certificates by default."""
NEXT_STEP = MappingProxyType({
    Phase.STEADY: "`meshpilot ca trust` starts a rotation (a new root, trusted beside "
                  "this one)",
    Phase.TRUSTED: "`meshpilot ca switch` issues from the new CA (every proxy must have "
                   "the new bundle)",
    Phase.SWITCHED: "`meshpilot ca retire` drops the old root(s), once no workload "
                    "certificate chains to them",
})

Converge = Callable[[float], bool]
"""Rebuild now and wait (at most the given seconds) until every connected proxy has
acknowledged that config; True if they all did."""
Wake = Callable[[], None]
"""Make the rebuild loop look again at when the next certificate is due: one asleep
until the next renewal (hours away) would otherwise miss the re-issues ``switch``
spread over the coming seconds."""


class CaRotation:
    """The root rotation of one control plane (thread-safe; see the module)."""

    def __init__(self, store: RootStore, rotation: RootRotation,
                 certificates: WorkloadCertificates, converge: Converge, *,
                 wake: Wake = lambda: None,
                 sync_timeout: float = SYNC_TIMEOUT_SECONDS) -> None:
        self._store = store
        self._rotation = rotation
        self.certificates = certificates
        self._converge = converge
        self._wake = wake
        self._sync_timeout = sync_timeout
        self._lock = threading.Lock()

    @classmethod
    def open(cls, state_root: Path, options: SecurityOptions, converge: Converge,
             wake: Wake = lambda: None) -> CaRotation:
        """The rotation saved in ``state_root`` if one was (it says which CA issues),
        else the CA of ``options`` (``--ca-dir``, or the root made in the state dir)."""
        store = RootStore(state_root / ROTATION_DIR)
        rotation = store.load(trust_domain=options.trust_domain)
        if rotation is None:
            rotation = RootRotation(options.certificate_authority(state_root))
        elif options.ca_dir is not None:
            _warn_if_other(options, rotation)
        certificates = WorkloadCertificates(rotation.issuing, ttl=options.cert_ttl)
        return cls(store, rotation, certificates, converge, wake=wake)

    @property
    def rotation(self) -> RootRotation:
        return self._rotation

    # --- steps -----------------------------------------------------------------------------
    def trust(self, ca_dir: Path | None = None, now: datetime | None = None
              ) -> dict[str, Any]:
        """Trust a new root beside the current ones: the CA in ``ca_dir``, else a new
        self-signed root made here. Nothing is issued from it yet."""
        with self._lock:
            ca = self._load(ca_dir) if ca_dir is not None else self._new_root(now)
            after = self._rotation.trust(ca)
            self._commit(after)
            self.certificates.trust(after.bundle)
            synced = self._converge(self._sync_timeout)
            return self._report(f"trusting {describe(ca.root)} beside the current root; "
                                "nothing is issued from it yet", synced)

    def switch(self, ca_dir: Path | None = None, spread: timedelta = DEFAULT_SPREAD
               ) -> dict[str, Any]:
        """Issue from the pending CA (or the trusted one in ``ca_dir``); the workload
        certificates from the previous CA are re-issued within ``spread``."""
        with self._lock:
            target = self._load(ca_dir) if ca_dir is not None else None
            after = self._rotation.switch(target)
            self._require_synced("switch", "might not trust the new root yet")
            self._commit(after)
            last = self.certificates.switch(after.issuing, spread=spread)
            synced = self._converge(self._sync_timeout)
            self._wake()
            by = f", the last by {_time(last)}" if last is not None else ""
            return self._report(f"issuing from {describe(after.issuing.signing_cert)}; "
                                f"re-issuing the workload certificates{by}", synced)

    def retire(self) -> dict[str, Any]:
        """Stop trusting every root but the issuing (and a pending) CA's, once no live
        workload certificate chains to one of them."""
        with self._lock:
            retired = self._rotation.retirable()
            # the rules first, so a refusal does not wait for the proxies; again after
            self._rotation.retire(self.certificates.roots_in_use())
            self._require_synced("retire", "might still present a certificate from the "
                                           "old root")
            after = self._rotation.retire(self.certificates.roots_in_use())
            self._commit(after)
            self.certificates.trust(after.bundle)
            synced = self._converge(self._sync_timeout)
            names = ", ".join(describe(r) for r in retired)
            return self._report(f"retired {names}", synced)

    # --- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``meshpilot ca status`` shows: the phase and next step, the issuing and
        pending CA, every trusted root with how many workload certificates chain to it."""
        rotation = self._rotation
        in_use = self.certificates.roots_in_use()
        awaiting, due = self.certificates.awaiting_reissue()
        now = datetime.now(UTC)
        return {
            "kind": "CaRotation",
            "phase": rotation.phase.value,
            "next": NEXT_STEP[rotation.phase],
            "trustDomain": rotation.issuing.trust_domain,
            "issuing": _ca_json(rotation.issuing, now),
            "pending": _ca_json(rotation.pending, now) if rotation.pending else None,
            "roots": [_root_json(root, rotation, in_use, now) for root in rotation.bundle],
            "workloadCertificates": {
                "total": sum(in_use.values()), "awaitingReissue": awaiting,
                "reissuedBy": _time(due) if awaiting and due is not None else None,
            },
        }

    # --- helpers ---------------------------------------------------------------------------
    def _load(self, directory: Path) -> CertificateAuthority:
        if not directory.is_dir():
            raise RotationRefused(Refusal.CA_FILES, "no such directory",
                                  file=str(directory))
        try:
            return load_plugged_ca(directory, trust_domain=self._rotation.issuing.trust_domain,
                                   max_ttl=self._rotation.issuing.max_ttl)
        except CaFileError as exc:
            raise RotationRefused(Refusal.CA_FILES, exc.problem, file=str(exc.path)) from None

    def _new_root(self, now: datetime | None) -> CertificateAuthority:
        """A new self-signed root whose name says when it was made (so it is told apart
        from the root it replaces by a person too, not only by its fingerprint)."""
        moment = now or datetime.now(UTC)
        issuing = self._rotation.issuing
        return new_self_signed_ca(trust_domain=issuing.trust_domain, now=moment,
                                  max_ttl=issuing.max_ttl,
                                  common_name=f"{ROOT_COMMON_NAME} {_time(moment)}")

    def _require_synced(self, step: str, risk: str) -> None:
        if not self._converge(self._sync_timeout):
            raise RotationRefused(
                Refusal.NOT_PROPAGATED,
                f"not every connected proxy acknowledged the latest config within "
                f"{self._sync_timeout:g}s, and one that has not {risk}; see `meshpilot "
                f"proxy-status`, then {step} again")

    def _commit(self, after: RootRotation) -> None:
        """Save ``after``, then make it the state: a failed save changes nothing."""
        self._store.save(after)
        self._rotation = after
        log.warning("CA rotation: %s, issuing from %s (%s), trusting %d root(s)",
                    after.phase.value, after.issuing.signing_cert.subject.rfc4514_string(),
                    ca_id(after.issuing), len(after.bundle))

    def _report(self, done: str, synced: bool) -> dict[str, Any]:
        body = self.status()
        body["message"] = done
        body["synced"] = synced
        return body


def _warn_if_other(options: SecurityOptions, rotation: RootRotation) -> None:
    """``--ca-dir`` names another CA than the saved rotation issues from: the saved one
    stays in force (proxies were told of it), visibly."""
    try:
        given = load_plugged_ca(options.ca_dir or Path(), trust_domain=options.trust_domain)
    except CaFileError as exc:
        log.warning("--ca-dir %s is not used (the CA rotation saved in the state directory "
                    "is) and cannot be loaded anyway: %s", options.ca_dir, exc)
        return
    if given.signing_cert != rotation.issuing.signing_cert:
        log.warning("--ca-dir %s is not used: the CA rotation saved in the state directory "
                    "issues from %s (see `meshpilot ca status`)", options.ca_dir,
                    describe(rotation.issuing.signing_cert))


def _ca_json(ca: CertificateAuthority, now: datetime) -> dict[str, Any]:
    cert = certificate_json(ca.signing_cert, now)
    return {"subject": cert["subject"], "serialNumber": cert["serialNumber"],
            "notAfter": cert["notAfter"], "fingerprint": fingerprint(ca.signing_cert),
            "root": fingerprint(ca.root), "intermediates": len(ca.chain)}


def _root_json(root: x509.Certificate, rotation: RootRotation,
               in_use: Mapping[x509.Certificate, int], now: datetime) -> dict[str, Any]:
    cert = certificate_json(root, now)
    roles = [role for role, ca in (("issuing", rotation.issuing), ("pending", rotation.pending))
             if ca is not None and ca.root == root]
    return {"subject": cert["subject"], "serialNumber": cert["serialNumber"],
            "notBefore": cert["notBefore"], "notAfter": cert["notAfter"],
            "fingerprint": fingerprint(root), "role": "+".join(roles) or "old",
            "workloadCertificates": in_use.get(root, 0),
            "pem": certificate_pem(root).decode()}


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

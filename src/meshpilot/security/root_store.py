"""A root rotation on disk, so a control plane restarted mid-rotation resumes it.

Layout (in the state directory's ``ca-rotation/``, mode 0700):

- ``cas/<id>/``: each CA the rotation names (the issuing one, the pending one), as
  Istio's four files (:func:`meshpilot.security.ca_files.write_ca_files`, key 0600);
  ``<id>`` is the start of its signing certificate's SHA-256 fingerprint;
- ``rotation.json``: which CA issues, which is pending, and the trust bundle (PEM).

Invariant: ``rotation.json`` is written last and atomically, so it names only CA
directories that are complete; a crash before it leaves the previous state in force.
CA directories it no longer names are removed once it is written (a retired CA's key
does not linger). Once this file exists it, not ``--ca-dir`` or the first root made in
``ca/``, says which CA the mesh uses.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from meshpilot.security.bundle import InvalidTrustBundle, TrustBundle
from meshpilot.security.ca import MAX_WORKLOAD_TTL, CertificateAuthority
from meshpilot.security.ca_files import CaFileError, load_plugged_ca, write_ca_files
from meshpilot.security.certs import fingerprint
from meshpilot.security.files import write_public
from meshpilot.security.root_rotation import RootRotation

ROTATION_DIR = "ca-rotation"
"""Where, in the state directory, a rotation is kept."""
STATE_FILE = "rotation.json"
FORMAT = 1
_CA_ID = re.compile(r"[0-9a-f]{24}")


class RootStoreError(ValueError):
    """A rotation on disk that cannot be used: the control plane must not start with
    another CA than the one its proxies were last told about."""


def ca_id(ca: CertificateAuthority) -> str:
    return fingerprint(ca.signing_cert).replace(":", "")[:24].lower()


class RootStore:
    """The rotation kept in ``directory`` (see the module)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE

    def exists(self) -> bool:
        return self.state_file.exists()

    def save(self, rotation: RootRotation) -> None:
        """Write ``rotation`` (durable once this returns)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        cas = self.directory / "cas"
        named = [rotation.issuing, *([rotation.pending] if rotation.pending else [])]
        for ca in named:
            if not (cas / ca_id(ca) / "ca-cert.pem").exists():
                write_ca_files(cas / ca_id(ca), ca)
        state = {
            "format": FORMAT,
            "issuing": ca_id(rotation.issuing),
            "pending": ca_id(rotation.pending) if rotation.pending else None,
            "bundle": rotation.bundle.pem.decode(),
        }
        write_public(self.state_file, (json.dumps(state, indent=2) + "\n").encode())
        keep = {ca_id(ca) for ca in named}
        for directory in cas.iterdir():
            if directory.name not in keep:
                shutil.rmtree(directory, ignore_errors=True)

    def load(self, *, trust_domain: str, max_ttl: timedelta = MAX_WORKLOAD_TTL,
             now: datetime | None = None) -> RootRotation | None:
        """The saved rotation (None: none saved), every CA checked as when plugged in."""
        if not self.exists():
            return None
        state = self._state()
        try:
            bundle = TrustBundle.from_pem(str(state["bundle"]).encode())
            issuing = self._ca(state["issuing"], bundle, trust_domain, max_ttl, now)
            pending = (self._ca(state["pending"], bundle, trust_domain, max_ttl, now)
                       if state.get("pending") else None)
            return RootRotation(issuing, pending)
        except (CaFileError, InvalidTrustBundle, ValueError, KeyError, TypeError) as exc:
            raise RootStoreError(f"{self.state_file}: the saved CA rotation cannot be "
                                 f"used: {exc}") from None

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            raise RootStoreError(f"{self.state_file} cannot be read: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise RootStoreError(f"{self.state_file}: not a rotation state of format {FORMAT}")
        return state

    def _ca(self, name: Any, bundle: TrustBundle, trust_domain: str, max_ttl: timedelta,
            now: datetime | None) -> CertificateAuthority:
        if not isinstance(name, str) or not _CA_ID.fullmatch(name):
            raise ValueError(f"{name!r} names no CA directory")
        ca = load_plugged_ca(self.directory / "cas" / name, trust_domain=trust_domain,
                             max_ttl=max_ttl, now=now)
        return ca.with_trust_bundle(bundle)

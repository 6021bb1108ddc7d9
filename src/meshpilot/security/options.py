"""How a control plane's identities are made: its trust domain, its CA, their lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from meshpilot.security.ca import DEFAULT_WORKLOAD_TTL, CertificateAuthority
from meshpilot.security.ca_files import load_or_create_self_signed_ca, load_plugged_ca
from meshpilot.security.identity import DEFAULT_TRUST_DOMAIN

CA_DIR = "ca"
"""Where, in the state directory, a self-signed root is made on first start."""


@dataclass(frozen=True)
class SecurityOptions:
    """``ca_dir``: the user's plugged-in CA (Istio's four files), else a self-signed root
    in the state directory. ``cert_ttl``: workload certificates' lifetime (renewed at
    about half of it)."""

    trust_domain: str = DEFAULT_TRUST_DOMAIN
    ca_dir: Path | None = None
    cert_ttl: timedelta = DEFAULT_WORKLOAD_TTL

    def certificate_authority(self, state_root: Path) -> CertificateAuthority:
        if self.ca_dir is not None:
            return load_plugged_ca(self.ca_dir, trust_domain=self.trust_domain)
        return load_or_create_self_signed_ca(state_root / CA_DIR,
                                             trust_domain=self.trust_domain)

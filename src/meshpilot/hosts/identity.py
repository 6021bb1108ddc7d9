"""The joined host's key and certificate files, made and kept on that host.

The key is generated here and written owner-only (0600) for the sidecar's Envoy, which
reads it from this file (the control plane names the file in the secret it serves, and
never sees the key). The CSR carries only the public key: no subject and no SAN, so the
control plane's CA decides the identity (the group's service account) alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshpilot.security.files import write_private, write_public
from meshpilot.security.keys import generate_key, private_key_pem, signature_hash

KEY_FILE = "key.pem"
CHAIN_FILE = "cert-chain.pem"
ROOTS_FILE = "root-cert.pem"


@dataclass(frozen=True)
class HostFiles:
    """Where the host's identity lives (a directory only its owner can enter)."""

    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def chain(self) -> Path:
        return self.directory / CHAIN_FILE

    @property
    def roots(self) -> Path:
        return self.directory / ROOTS_FILE

    def new_key(self) -> bytes:
        """A fresh key, written 0600; returns the CSR (PEM) for it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        key = generate_key()
        write_private(self.key, private_key_pem(key))
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .sign(key, signature_hash(key)))
        return csr.public_bytes(serialization.Encoding.PEM)

    def save(self, chain_pem: bytes, roots_pem: bytes) -> None:
        write_public(self.chain, chain_pem)
        write_public(self.roots, roots_pem)

"""The joined host's key and certificate files, made and kept on that host.

Each key is generated here and written owner-only (0600) for the sidecar's Envoy, which
reads it from its file (the control plane names the file in the secret it serves, and
never sees the key). The CSR carries only the public key: no subject and no SAN, so the
control plane's CA decides the identity (the group's service account) alone.

Keys and certificates come in generations (``key-N.pem``, ``cert-chain-N.pem``): a
renewal writes the next one beside the current, then switches the sidecar's xDS client
certificate to it by rewriting ``xds-client.json``, a file-based SDS resource Envoy
watches (its directory, renamed into place), so the sidecar needs no restart. The
generation before the previous one is removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshpilot.security.files import write_private, write_public
from meshpilot.security.keys import generate_key, private_key_pem, signature_hash
from meshpilot.security.rotation import renew_at

ROOTS_FILE = "root-cert.pem"
XDS_CLIENT_SECRET = "xds-client"
SDS_FILE = "xds-client.json"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


@dataclass
class HostFiles:
    """Where the host's identity lives (a directory only its owner can enter)."""

    directory: Path
    generation: int = 0

    def key_of(self, generation: int) -> Path:
        return self.directory / f"key-{generation}.pem"

    def chain_of(self, generation: int) -> Path:
        return self.directory / f"cert-chain-{generation}.pem"

    @property
    def key(self) -> Path:
        return self.key_of(self.generation)

    @property
    def chain(self) -> Path:
        return self.chain_of(self.generation)

    @property
    def roots(self) -> Path:
        return self.directory / ROOTS_FILE

    @property
    def sds(self) -> Path:
        return self.directory / SDS_FILE

    def new_key(self, generation: int) -> bytes:
        """A fresh key for ``generation``, written 0600; returns the CSR (PEM) for it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        key = generate_key()
        write_private(self.key_of(generation), private_key_pem(key))
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .sign(key, signature_hash(key)))
        return csr.public_bytes(serialization.Encoding.PEM)

    def save(self, generation: int, chain_pem: bytes, roots_pem: bytes) -> None:
        """``generation``'s certificate becomes the current one (and the sidecar's xDS
        client certificate); two generations back is removed."""
        write_public(self.chain_of(generation), chain_pem)
        write_public(self.roots, roots_pem)
        self.generation = generation
        write_private(self.sds, json.dumps({"resources": [{
            "@type": SECRET_TYPE, "name": XDS_CLIENT_SECRET,
            "tls_certificate": {
                "certificate_chain": {"filename": str(self.chain)},
                "private_key": {"filename": str(self.key)}}}]}).encode())
        for old in (self.key_of(generation - 2), self.chain_of(generation - 2)):
            old.unlink(missing_ok=True)

    def renew_at(self) -> datetime:
        """When the current certificate is due for renewal (about half its life)."""
        leaf = x509.load_pem_x509_certificates(self.chain.read_bytes())[0]
        return renew_at(leaf)

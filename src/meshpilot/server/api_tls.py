"""The API over HTTPS (``meshpilot up --tls``), with a certificate from the mesh's own CA.

The control plane issues its API a server certificate from the CA that issues the
workloads' (self-signed in the state directory, or the user's plugged-in one): SANs
``localhost`` and the bound address, so a client that trusts the CA's roots verifies
the server it reached. The roots are written to the state directory
(:attr:`StateDir.api_ca_file`), where the CLI reads them; the bearer token is still
required on every request.

The private key never stays on disk: Python's ``ssl`` loads a key only from a file, so
it is written (0600, in a fresh 0700 directory inside the state directory) and removed
as soon as it is loaded. The certificate is renewed at about half its life, in place on
the same ``SSLContext``, so new connections get the new one without a restart.

It follows a root rotation (``meshpilot ca``) too: a new trust bundle is written to the
roots file, and once the mesh issues from another CA the certificate is re-issued from
it, at once. The new certificate is loaded before a smaller bundle is written, so a
client reading the roots file never lacks the root of the certificate served.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshpilot.security.ca import CLOCK_SKEW, DEFAULT_WORKLOAD_TTL, CertificateAuthority
from meshpilot.security.certs import certificates_pem, random_serial
from meshpilot.security.files import write_private, write_public
from meshpilot.security.keys import generate_key, private_key_pem, signature_hash
from meshpilot.security.rotation import renew_at
from meshpilot.statedir import StateDir

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1",)
MIN_WAIT_SECONDS = 0.5
"""Shortest pause between renewals (a CA about to expire must not make a busy loop)."""
FOLLOW_SECONDS = 1.0
"""How often the CA is looked at for a rotation step."""


def subject_names(host: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) for the API certificate of a server bound to ``host``:
    ``localhost`` and 127.0.0.1 always, and ``host`` itself unless it is a wildcard
    address (0.0.0.0, ::), which no client connects to by that name."""
    dns, ips = list(LOOPBACK_NAMES), list(LOOPBACK_ADDRESSES)
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host not in dns:
            dns.append(host)
        return dns, ips
    if not address.is_unspecified and str(address) not in ips:
        ips.append(str(address))
    return dns, ips


@dataclass(frozen=True)
class ServerCertificate:
    """A server certificate with the chain a client needs to reach the CA's root."""

    chain_pem: bytes  # the leaf, then the CA's intermediates
    key_pem: bytes = field(repr=False)
    certificate: x509.Certificate


def issue_server_certificate(ca: CertificateAuthority, dns: list[str], ips: list[str], *,
                             ttl: timedelta = DEFAULT_WORKLOAD_TTL,
                             now: datetime | None = None) -> ServerCertificate:
    """A TLS server certificate for ``dns`` and ``ips`` signed by ``ca`` (its key made
    here, in memory), valid from a little before ``now`` for ``ttl``, capped by the
    expiry of every certificate in the CA's chain."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    key = generate_key()
    expiry = min(c.not_valid_after_utc for c in (*ca.chain, ca.root))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ca.trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, "meshpilot control plane API")]))
        .issuer_name(ca.signing_cert.subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(moment - min(CLOCK_SKEW, ttl / 10))
        .not_valid_after(min(moment + ttl, expiry))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.signing_key.public_key()), critical=False)
        .sign(ca.signing_key, signature_hash(ca.signing_key))
    )
    return ServerCertificate(certificates_pem((cert, *ca.chain)), private_key_pem(key), cert)


class ApiTls:
    """The API's ``SSLContext``, its certificate, and its renewal (see the module)."""

    def __init__(self, ca: CertificateAuthority, state: StateDir, host: str, *,
                 ttl: timedelta = DEFAULT_WORKLOAD_TTL,
                 follow: Callable[[], CertificateAuthority] | None = None) -> None:
        self._ca = ca
        self._follow = follow  # the mesh's CA now, as a rotation changes it
        self._state = state
        self._names = subject_names(host)
        self._ttl = ttl
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.current = self._issue()
        self._load(self.current)
        write_public(state.api_ca_file, ca.trust_bundle.pem)  # what clients verify against

    def _issue(self) -> ServerCertificate:
        return issue_server_certificate(self._ca, *self._names, ttl=self._ttl)

    def _load(self, issued: ServerCertificate) -> None:
        """Put ``issued`` into the context; the key file lives only while it is read."""
        directory = Path(tempfile.mkdtemp(prefix=".api-tls-", dir=self._state.root))
        try:
            chain, key = directory / "chain.pem", directory / "key.pem"
            write_private(key, issued.key_pem)
            write_public(chain, issued.chain_pem)
            self.context.load_cert_chain(chain, key)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def renew_forever(self) -> None:
        """Replace the certificate at about half its life, and follow the CA's rotation,
        for as long as the server runs (a task on the server's event loop, so the context
        changes on that loop only)."""
        while True:
            due = (renew_at(self.current.certificate) - datetime.now(UTC)).total_seconds()
            if self._follow is not None:
                due = min(due, FOLLOW_SECONDS)
            await asyncio.sleep(max(MIN_WAIT_SECONDS, due))
            try:
                await self._tick()
            except Exception:  # keep the current one; try again after the pause
                log.exception("renewing the API certificate failed")

    async def _tick(self) -> None:
        """Re-issue when due or when another CA issues now; then write a changed bundle."""
        ca = self._follow() if self._follow is not None else self._ca
        moved = ca.signing_cert != self._ca.signing_cert
        if moved or datetime.now(UTC) >= renew_at(self.current.certificate):
            issued = await asyncio.to_thread(issue_server_certificate, ca, *self._names,
                                             ttl=self._ttl)
            self._load(issued)
            self.current = issued
        if ca.trust_bundle != self._ca.trust_bundle:
            write_public(self._state.api_ca_file, ca.trust_bundle.pem)
        self._ca = ca

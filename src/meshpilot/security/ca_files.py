"""CA directories: the user's plugged-in CA, or a self-signed root made on first use.

Both use Istio's file names, so a directory prepared for istiod works here:

- ``ca-cert.pem``: the certificate the CA signs with (a root or an intermediate);
- ``ca-key.pem``: its private key;
- ``root-cert.pem``: the root(s) workloads trust;
- ``cert-chain.pem``: the chain from ``ca-cert.pem`` up to the root.

Every file is checked when loaded, and a problem names the file and what is wrong with
it: a CA that fails later, at the first handshake, is much harder to diagnose.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from meshpilot.security.bundle import TrustBundle
from meshpilot.security.ca import CLOCK_SKEW, MAX_WORKLOAD_TTL, CertificateAuthority
from meshpilot.security.certs import (
    ROOT_COMMON_NAME,
    certificate_pem,
    certificates_pem,
    is_ca,
    is_self_signed,
    issued_by,
    root_certificate,
)
from meshpilot.security.files import write_private, write_public
from meshpilot.security.identity import DEFAULT_TRUST_DOMAIN, validate_trust_domain
from meshpilot.security.keys import (
    DEFAULT_KEY_TYPE,
    KeyType,
    PrivateKey,
    generate_key,
    private_key_pem,
    public_key_der,
    weak_key_reason,
)

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
ROOT_CERT = "root-cert.pem"
CERT_CHAIN = "cert-chain.pem"
ROOT_VALIDITY = timedelta(days=3650)
"""Lifetime of a self-signed root (Istio's self-signed root lasts ten years too)."""


class CaFileError(ValueError):
    """A CA file that cannot be used; ``path`` is the file, ``problem`` what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def load_plugged_ca(
    directory: Path | str,
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    now: datetime | None = None,
    max_ttl: timedelta = MAX_WORKLOAD_TTL,
) -> CertificateAuthority:
    """The CA in ``directory``'s four Istio files, checked: readable, the key matching
    ``ca-cert.pem``, every certificate a current CA, the chain linking to a root."""
    directory = Path(directory)
    moment = now or datetime.now(UTC)
    signing_cert = _load_ca_certificates(directory / CA_CERT, moment)[0]
    signing_key = _load_signing_key(directory / CA_KEY, signing_cert)
    roots = _load_ca_certificates(directory / ROOT_CERT, moment)
    for root in roots:
        if not is_self_signed(root):
            raise CaFileError(
                directory / ROOT_CERT,
                f"{_name(root)} is not self-signed; this file holds only root certificates",
            )
    chain = _load_ca_certificates(directory / CERT_CHAIN, moment)
    root, intermediates = _link_to_root(directory, signing_cert, chain, roots)
    return CertificateAuthority(
        trust_domain=validate_trust_domain(trust_domain),
        signing_cert=signing_cert,
        signing_key=signing_key,
        root=root,
        trust_bundle=TrustBundle.of(roots),
        intermediates=intermediates,
        max_ttl=max_ttl,
    )


def load_or_create_self_signed_ca(
    directory: Path | str,
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    key_type: KeyType = DEFAULT_KEY_TYPE,
    validity: timedelta = ROOT_VALIDITY,
    now: datetime | None = None,
    max_ttl: timedelta = MAX_WORKLOAD_TTL,
) -> CertificateAuthority:
    """The self-signed root CA kept in ``directory``: made there on first use, then
    loaded (and checked) as a plugged-in CA on every later call."""
    directory = Path(directory)
    if not (directory / CA_CERT).exists():
        _create_root_ca(directory, validate_trust_domain(trust_domain), key_type, validity,
                        now or datetime.now(UTC))
    return load_plugged_ca(directory, trust_domain=trust_domain, now=now, max_ttl=max_ttl)


def new_self_signed_ca(
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    key_type: KeyType = DEFAULT_KEY_TYPE,
    validity: timedelta = ROOT_VALIDITY,
    now: datetime | None = None,
    max_ttl: timedelta = MAX_WORKLOAD_TTL,
    common_name: str = ROOT_COMMON_NAME,
) -> CertificateAuthority:
    """A new self-signed root CA, in memory (its key too) until :func:`write_ca_files`."""
    domain = validate_trust_domain(trust_domain)
    key = generate_key(key_type)
    start = (now or datetime.now(UTC)).replace(microsecond=0) - CLOCK_SKEW
    root = root_certificate(key, trust_domain=domain, not_before=start,
                            not_after=start + validity, common_name=common_name)
    return CertificateAuthority(trust_domain=domain, signing_cert=root, signing_key=key,
                                root=root, trust_bundle=TrustBundle.of((root,)),
                                max_ttl=max_ttl)


def write_ca_files(directory: Path, ca: CertificateAuthority) -> None:
    """Write ``ca`` as Istio's four files (``root-cert.pem``: its own root), which
    :func:`load_plugged_ca` reads back: the key 0600, the directory 0700.

    Invariant: ``ca-cert.pem`` is written last, so its presence means a complete set;
    a run interrupted before it simply starts over (nothing was issued from that key).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(directory / CA_KEY, private_key_pem(ca.signing_key))
    write_public(directory / ROOT_CERT, certificate_pem(ca.root))
    write_public(directory / CERT_CHAIN, certificates_pem((*ca.chain, ca.root)))
    write_public(directory / CA_CERT, certificate_pem(ca.signing_cert))


def _create_root_ca(
    directory: Path, trust_domain: str, key_type: KeyType, validity: timedelta, now: datetime
) -> None:
    """Write a new root's key and certificate files (see :func:`write_ca_files`)."""
    write_ca_files(directory, new_self_signed_ca(trust_domain=trust_domain,
                                                 key_type=key_type, validity=validity,
                                                 now=now))


def _link_to_root(
    directory: Path,
    signing_cert: x509.Certificate,
    chain: list[x509.Certificate],
    roots: list[x509.Certificate],
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The root that ``signing_cert`` chains to through ``cert-chain.pem``, and the
    intermediates above ``signing_cert`` (the file may or may not list ``ca-cert.pem``
    first and the root last)."""
    if signing_cert in roots:
        return signing_cert, ()
    links = [c for c in chain if c != signing_cert and c not in roots]
    current = signing_cert
    for cert in links:
        if not issued_by(current, cert):
            raise CaFileError(
                directory / CERT_CHAIN,
                f"{_name(cert)} did not issue {_name(current)}; list the chain from "
                f"{CA_CERT} up to the root, each certificate followed by its issuer",
            )
        current = cert
    root = next((r for r in roots if issued_by(current, r)), None)
    if root is None:
        raise CaFileError(
            directory / ROOT_CERT,
            f"no root here issued {_name(current)}, the top of the chain from {CA_CERT} "
            f"({CERT_CHAIN}); the root it chains to must be in {ROOT_CERT}",
        )
    return root, tuple(links)


def _load_ca_certificates(path: Path, now: datetime) -> list[x509.Certificate]:
    data = _read(path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CaFileError(path, "holds no PEM certificate") from None
    for cert in certs:
        _check_usable_ca(path, cert, now)
    return certs


def _check_usable_ca(path: Path, cert: x509.Certificate, now: datetime) -> None:
    if not is_ca(cert):
        raise CaFileError(
            path,
            f"{_name(cert)} is not a CA certificate "
            "(needs basicConstraints CA:TRUE and, if key usage is set, keyCertSign)",
        )
    if now < cert.not_valid_before_utc:
        raise CaFileError(
            path, f"{_name(cert)} is not valid until {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
        )
    if now > cert.not_valid_after_utc:
        raise CaFileError(
            path, f"{_name(cert)} expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        )


def _load_signing_key(path: Path, signing_cert: x509.Certificate) -> PrivateKey:
    data = _read(path)
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise CaFileError(path, "the key is encrypted; give it unencrypted, mode 0600") from None
    except ValueError:
        raise CaFileError(path, "holds no PEM private key") from None
    reason = weak_key_reason(key.public_key())
    if reason is not None:
        raise CaFileError(path, f"holds {reason}")
    if public_key_der(key.public_key()) != public_key_der(signing_cert.public_key()):
        raise CaFileError(path, f"this key does not belong to the certificate in {CA_CERT}")
    return key  # type: ignore[return-value]  # weak_key_reason admitted EC or RSA


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CaFileError(path, f"cannot be read: {exc.strerror or exc}") from None


def _name(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}")

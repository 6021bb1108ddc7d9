"""Test helpers for the CA tests: the real openssl binary, used as an independent judge
of what the CA writes and issues, and as the maker of plugged-in CA directories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

OPENSSL = "/usr/bin/openssl"

_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
O = example.test
CN = {cn}
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
"""


def openssl(
    *args: str | Path, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def write_secret(path: Path, data: bytes) -> Path:
    """A key file for openssl to read, created 0600 (keys never more readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def openssl_key(path: Path) -> Path:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    os.chmod(path, 0o600)
    return path


def openssl_root(directory: Path, cn: str, days: int = 30) -> tuple[Path, Path]:
    """A self-signed root made by openssl: (certificate, key)."""
    config = directory / f"{cn}.cnf"
    config.write_text(_CA_CONFIG.format(cn=cn))
    key = openssl_key(directory / f"{cn}.key")
    cert = directory / f"{cn}.pem"
    openssl("req", "-x509", "-new", "-config", config, "-extensions", "v3_ca", "-key", key,
            "-days", str(days), "-out", cert)
    return cert, key


def openssl_signed(
    directory: Path, cn: str, issuer: tuple[Path, Path], *, ca: bool = True, days: int = 30
) -> tuple[Path, Path]:
    """A certificate signed by ``issuer`` (an intermediate CA unless ``ca`` is False)."""
    config = directory / f"{cn}.cnf"
    config.write_text(_CA_CONFIG.format(cn=cn))
    key = openssl_key(directory / f"{cn}.key")
    csr = directory / f"{cn}.csr"
    cert = directory / f"{cn}.pem"
    openssl("req", "-new", "-config", config, "-key", key, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", issuer[0], "-CAkey", issuer[1],
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", str(days),
            "-extfile", config, "-extensions", "v3_ca" if ca else "v3_leaf", "-out", cert)
    return cert, key


def plugged_ca_directory(directory: Path) -> Path:
    """Istio's four plugged-in CA files, made with openssl: a root and an intermediate
    that signs (``ca-cert.pem``), with ``cert-chain.pem`` = intermediate + root."""
    work = directory / "openssl"
    work.mkdir(parents=True)
    root = openssl_root(work, "Plugged Root")
    intermediate = openssl_signed(work, "Plugged Intermediate", root)
    ca = directory / "cacerts"
    ca.mkdir()
    (ca / "ca-cert.pem").write_bytes(intermediate[0].read_bytes())
    write_secret(ca / "ca-key.pem", intermediate[1].read_bytes())
    (ca / "root-cert.pem").write_bytes(root[0].read_bytes())
    (ca / "cert-chain.pem").write_bytes(intermediate[0].read_bytes() + root[0].read_bytes())
    return ca

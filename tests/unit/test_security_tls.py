"""Issued workload certificates in a real mutual-TLS handshake between openssl's own
server and client, through a plugged-in intermediate CA: what sidecars will do with them
(Istio's ISTIO_MUTUAL: both sides present their SPIFFE certificate and verify the peer's
against the trust bundle)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.security_pki import OPENSSL, plugged_ca_directory, write_secret

from meshpilot.proxy.ports import free_port
from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.ca_files import load_or_create_self_signed_ca, load_plugged_ca
from meshpilot.security.csr import new_workload_key
from meshpilot.security.identity import SpiffeId, workload_identity

REQUEST = b"GET / HTTP/1.0\r\n\r\n"


def workload_files(ca: CertificateAuthority, identity: SpiffeId, directory: Path) -> list[str]:
    """Write an identity's key (0600), certificate and chain; openssl -cert/-key args."""
    key = new_workload_key(identity)
    issued = ca.issue(key.csr_pem, identity)
    name = identity.service_account
    cert, chain = directory / f"{name}.pem", directory / f"{name}-chain.pem"
    cert.write_bytes(issued.certificate_pem)
    chain.write_bytes(issued.chain_pem[len(issued.certificate_pem):])
    secret = write_secret(directory / f"{name}.key", key.private_key_pem())
    args = ["-cert", str(cert), "-key", str(secret)]
    return [*args, "-cert_chain", str(chain)] if issued.chain else args


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, CertificateAuthority, Path]]:
    """openssl s_server on 127.0.0.1 with a workload certificate, requiring a client
    certificate that verifies against root-cert.pem (``-Verify 1``)."""
    ca_dir = plugged_ca_directory(tmp_path)
    ca = load_plugged_ca(ca_dir)
    port = free_port("127.0.0.1")
    root = ca_dir / "root-cert.pem"
    process = subprocess.Popen(
        [OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-Verify", "1",
         "-verify_return_error", "-CAfile", str(root),
         *workload_files(ca, workload_identity("default", "httpbin"), tmp_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process)
        yield port, ca, root
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, "s_server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("s_server did not listen")


def client(port: int, root: Path, *cert_args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(root),
         "-verify_return_error", "-ign_eof", *cert_args],
        input=REQUEST, capture_output=True, timeout=30,
    )


def test_mutual_tls_handshake_with_issued_certificates(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, ca, root = server
    result = client(port, root, *workload_files(ca, workload_identity("default", "sleep"),
                                                tmp_path))
    out = result.stdout.decode(errors="replace")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in out  # the client accepted the server's chain
    assert "HTTP/1.0 200 ok" in out  # the server accepted the client's certificate


def test_handshake_fails_without_a_client_certificate(server) -> None:  # type: ignore[no-untyped-def]
    port, _, root = server
    result = client(port, root)
    assert result.returncode != 0
    assert "HTTP/1.0 200 ok" not in result.stdout.decode(errors="replace")
    assert "alert certificate required" in result.stderr.decode(errors="replace")


def test_handshake_fails_with_a_certificate_from_another_root(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port, _, root = server
    stranger = load_or_create_self_signed_ca(tmp_path / "stranger")
    (tmp_path / "s").mkdir()
    args = workload_files(stranger, workload_identity("default", "sleep"), tmp_path / "s")
    result = client(port, root, *args)
    assert result.returncode != 0
    assert "HTTP/1.0 200 ok" not in result.stdout.decode(errors="replace")
    assert "alert unknown ca" in result.stderr.decode(errors="replace")

"""``meshpilot up --tls``: the API over HTTPS with a certificate from the mesh's own CA,
judged by the real ``openssl s_client`` and used by the real CLI; plain HTTP to that port
gets no answer, and the bearer token is still required."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from tests.conftest import read_endpoints, run_cli, wait_for
from tests.unit.security_pki import OPENSSL, openssl_root, plugged_ca_directory

from meshpilot.cli.client import pid_alive

PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", re.S)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state dir for the control plane ``up`` starts; stopped at teardown."""
    state = tmp_path / "tls-state"
    yield state
    endpoints = read_endpoints(state)
    if endpoints and pid_alive(int(endpoints["pid"])):
        pid = int(endpoints["pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def s_client(address: str, ca_file: Path) -> tuple[str, list[x509.Certificate]]:
    """What ``openssl s_client`` says of the server at ``host:port`` when it verifies it
    against ``ca_file`` (and its address, 127.0.0.1), and the chain the server sent."""
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", address, "-CAfile", str(ca_file), "-verify_ip",
         "127.0.0.1", "-showcerts"],
        input=b"", capture_output=True, timeout=30)
    sent = [x509.load_pem_x509_certificate(m) for m in PEM.findall(result.stdout)]
    return (result.stdout + result.stderr).decode(errors="replace"), sent


def address_of(state: Path) -> str:
    endpoints = read_endpoints(state)
    assert endpoints is not None
    return endpoints["api"].removeprefix("https://")


def private_keys_in(state: Path) -> list[Path]:
    """Files under the state directory holding a private key."""
    return sorted(p for p in state.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes())


def test_up_tls_serves_the_api_with_a_certificate_from_the_mesh_ca(
    state_dir: Path, tmp_path: Path
) -> None:
    out = ok(run_cli("up", "--tls", state_dir=state_dir))
    endpoints = read_endpoints(state_dir)
    assert endpoints is not None
    api = endpoints["api"]
    assert api.startswith("https://127.0.0.1:") and api in out
    ca_file = state_dir / "api-ca.pem"
    assert endpoints["api_ca"] == str(ca_file)
    root_pem = (state_dir / "ca" / "root-cert.pem").read_bytes()
    assert ca_file.read_bytes() == root_pem  # the mesh's own root, nothing else
    root = x509.load_pem_x509_certificate(root_pem)

    said, sent = s_client(address_of(state_dir), ca_file)
    assert "Verify return code: 0 (ok)" in said, said
    leaf = sent[0]
    assert leaf.issuer == root.subject
    leaf.verify_directly_issued_by(root)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # a client trusting another CA refuses it: the verification above is real
    other, _ = openssl_root(tmp_path, "Other Root")
    said, _ = s_client(address_of(state_dir), other)
    assert "Verify return code: 0 (ok)" not in said and "verify error" in said, said

    # The CLI verifies the server and uses the token.
    status = ok(run_cli("status", state_dir=state_dir))
    assert "running" in status and api in status
    ok(run_cli("apply", "-f", "-", state_dir=state_dir, input=(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews}\nspec: {hosts: [reviews], http: [{route: [{destination: "
        "{host: reviews}}]}]}\n")))
    listed = json.loads(ok(run_cli("get", "vs", "-o", "json", state_dir=state_dir)))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["reviews"]
    pods = run_cli("get", "pods", state_dir=state_dir)
    assert pods.returncode == 0, pods.stderr

    token = (state_dir / "token").read_text().strip()
    trusting = ssl.create_default_context(cafile=ca_file)
    with httpx.Client(base_url=api, verify=trusting, trust_env=False, timeout=10) as https:
        assert https.get("/version").status_code == 401  # the token is still required
        assert https.get("/version", headers={"Authorization": f"Bearer {token}"}
                         ).status_code == 200
    with httpx.Client(trust_env=False, timeout=10) as plain, \
            pytest.raises(httpx.TransportError):
        plain.get(api.replace("https://", "http://") + "/version",
                  headers={"Authorization": f"Bearer {token}"})

    # The API's key is in memory only: the one key on disk is the CA's own.
    assert private_keys_in(state_dir) == [state_dir / "ca" / "ca-key.pem"]

    # The CLI refuses a server its roots did not sign.
    ca_file.write_bytes(other.read_bytes())
    refused = run_cli("status", state_dir=state_dir)
    assert refused.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    ca_file.write_bytes(root_pem)
    ok(run_cli("down", state_dir=state_dir))


def test_up_tls_with_a_plugged_in_ca_sends_its_chain_and_renews(
    state_dir: Path, tmp_path: Path
) -> None:
    ca_dir = plugged_ca_directory(tmp_path)
    ok(run_cli("up", "--tls", "--no-mesh", "--ca-dir", str(ca_dir), "--cert-ttl", "4s",
               state_dir=state_dir))
    ca_file = state_dir / "api-ca.pem"
    assert ca_file.read_bytes() == (ca_dir / "root-cert.pem").read_bytes()
    intermediate = x509.load_pem_x509_certificate((ca_dir / "ca-cert.pem").read_bytes())

    said, sent = s_client(address_of(state_dir), ca_file)
    assert "Verify return code: 0 (ok)" in said, said
    assert len(sent) == 2 and sent[1] == intermediate  # the client holds only the root
    sent[0].verify_directly_issued_by(intermediate)
    first = sent[0].serial_number
    lifetime = sent[0].not_valid_after_utc - sent[0].not_valid_before_utc
    assert lifetime.total_seconds() <= 5

    def renewed() -> x509.Certificate | None:
        said, now = s_client(address_of(state_dir), ca_file)
        assert "Verify return code: 0 (ok)" in said, said
        return now[0] if now[0].serial_number != first else None

    wait_for(renewed, timeout=15, interval=0.5, message="a renewed API certificate")
    assert "running" in ok(run_cli("status", state_dir=state_dir))
    assert ok(run_cli("get", "vs", state_dir=state_dir)) == ""

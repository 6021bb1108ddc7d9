"""Hosts join the mesh as Istio's VMs do (WorkloadGroup auto-registration), for real: the
control plane listens (``--listen``) on a bridge address that exists only for this test,
and each joined host is a network namespace on that bridge running ``meshpilot.hosts``
(its own key, CSR, Envoy sidecar and probe reports) and the demo app.

Istio behaviour followed: a VM's workload joins the Services whose selectors match its
WorkloadGroup's template labels, is reached over mutual TLS as the group's service
account, and an auto-registered entry whose proxy stops reporting is marked unhealthy
(leaves the endpoints); its removal after the grace period is stepped through with a
fake clock in tests/unit/test_host_registry.py.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ControlPlane
from tests.e2e import myapp
from tests.e2e.hosts import Host, Network, network
from tests.e2e.mesh import URL, Mesh

CLUSTER = "outbound|8080||myapp.default.svc.cluster.local"
TIMEOUT = 2.0  # --host-timeout: how long a silent host stays in the endpoints
CERT_TTL = 16.0  # --cert-ttl: a joined host renews its certificate after about half
MESH_PROXY_ID = "spiffe://cluster.local/ns/default/sa/default"
VM_ID = "spiffe://cluster.local/ns/default/sa/myapp-vm"
PEER_HEADER = "x-meshpilot-peer-principal"
V2_SERVICE = {"apiVersion": "v1", "kind": "Service",
              "metadata": {"name": "myapp-v2", "namespace": "default"},
              "spec": {"selector": {"app": "myapp", "version": "v2"},
                       "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}


def group(name: str = "myapp-vm", version: str = "v2") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"metadata": {"labels": {"app": "myapp"}},
                     "template": {"labels": {"app": "myapp", "version": version},
                                  "ports": {"http": 8080}, "serviceAccount": "myapp-vm"},
                     "probe": {"periodSeconds": 1, "httpGet": {"path": "/", "port": 9080}}}}


def roots(cp: ControlPlane) -> ssl.SSLContext:
    """What verifies the control plane's API: the roots it wrote (api-ca.pem)."""
    return ssl.create_default_context(cafile=str(cp.state_dir / "api-ca.pem"))


@pytest.fixture
def net() -> Iterator[Network]:
    with network() as n:
        yield n


@pytest.fixture
def mesh(control_plane_factory: Callable[..., ControlPlane], net: Network) -> Iterator[Mesh]:
    cp = control_plane_factory("cp", args=["--listen", net.address, "--host-timeout",
                                           f"{TIMEOUT:g}s", "--host-grace", "60s",
                                           "--cert-ttl", f"{CERT_TTL:g}s"])
    cp.client = cp.new_client(verify=roots(cp))
    m = Mesh(cp)
    try:
        yield m
    finally:
        m.close()
        cp.discard()  # while its hosts are there: else it waits on dead connections


def token(mesh: Mesh, group_ref: str = "default/myapp-vm", ttl: float = 600) -> str:
    r = mesh.api.post("/apis/meshpilot.io/v1/hosts/tokens",
                      json={"group": group_ref, "ttlSeconds": ttl})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def join(mesh: Mesh, host: Host, tmp: Path, tok: str, group_ref: str = "default/myapp-vm",
         ) -> subprocess.Popen[bytes]:
    """The demo app (v2) and the node agent, started on ``host``."""
    host.python("-m", "meshpilot.demoapp", "--version", "v2", "--host", host.address,
                "--port", "9080", "--pod-name", f"vm-{host.address}", log=tmp / "app.log")
    return host.python(
        "-m", "meshpilot.hosts", "join", "--server", mesh.cp.api, "--token", tok,
        "--group", group_ref, "--address", host.address,
        "--ca-file", str(mesh.cp.state_dir / "api-ca.pem"),
        "--state-dir", str(tmp / f"host-{host.address}"), "--app-port", "http=9080",
        log=tmp / "agent.log")


def wait_for(what: Callable[[], Any], timeout: float, message: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message())


def entry(mesh: Mesh, name: str) -> dict[str, Any] | None:
    r = mesh.api.get(f"/apis/networking.istio.io/v1/namespaces/default/workloadentries/{name}")
    return r.json() if r.status_code == 200 else None


def healthy(body: dict[str, Any] | None) -> bool | None:
    if body is None:
        return None
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Healthy" and c["status"] == "True" for c in conditions)


def joined(mesh: Mesh, host: Host, tmp: Path) -> str:
    """Wait until the host's entry is healthy and the mesh proxy holds its endpoint."""
    name = f"myapp-vm-{host.address}"
    wait_for(lambda: healthy(entry(mesh, name)), 30,
             lambda: f"{name} never healthy\n{read(tmp / 'agent.log')}\n{mesh.cp.log()}")
    wait_for(lambda: f"{host.address}:8080" in mesh.endpoint_addresses("mesh-proxy", CLUSTER),
             10, lambda: f"{host.address} not in the mesh proxy's endpoints")
    return name


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_v1_here_and_v2_on_a_joined_host_split_90_10_over_mtls(
        mesh: Mesh, net: Network, tmp_path: Path) -> None:
    """Given v1 pods on the control plane's host and a WorkloadGroup v2 on another host,
    when the host joins, a 90/10 VirtualService splits traffic between them, each request
    arriving at the joined host over mutual TLS (its sidecar verified the caller's
    certificate and passed its SPIFFE ID on), the joined sidecar's counters reach the
    control plane's telemetry (Istio's destination reporter, as for a pod), and the
    host's sidecar presents the group's identity, checked with openssl."""
    mesh.apply(myapp.version("v1"), myapp.service(), myapp.subsets(), myapp.split(v1=90, v2=10),
               group(), V2_SERVICE)
    mesh.converge()
    host = net.add_host()
    join(mesh, host, tmp_path, token(mesh))
    joined(mesh, host, tmp_path)

    counts: Counter[str] = Counter()
    for _ in range(200):
        r = mesh.http.get(URL)
        assert r.status_code == 200, r.text
        body = r.json()
        counts[body["version"]] += 1
        assert body["headers"].get(PEER_HEADER) == MESH_PROXY_ID, body
    assert set(counts) == {"v1", "v2"}, counts
    assert 6 <= counts["v2"] <= 45, counts  # 10% of 200: 20, sd ~4.2

    # The joined sidecar's counters reach the control plane's telemetry with its agent's
    # reports (its admin is on that host): Istio's destination-reported requests of the
    # entry's workload, one for each v2 answer, as for a pod's sidecar.
    def vm_row() -> dict[str, Any] | None:
        rows = mesh.telemetry(workload=name, namespace="default", window="120s")["rows"]
        return rows[0] if rows and rows[0]["requests"] >= counts["v2"] else None

    name = f"myapp-vm-{host.address}"
    row = wait_for(vm_row, 20, lambda: f"no telemetry of {name}: "
                                       f"{mesh.telemetry(namespace='default')}")
    assert row["requests"] == counts["v2"] and row["errors"] == 0, (row, counts)

    # The app on the joined host calls the mesh through its sidecar's HTTP proxy, which
    # listens on that host's loopback only (here a service whose only endpoint is that
    # host, since the pods' addresses are loopback addresses of the control plane's host).
    via = subprocess.run(
        ["ip", "netns", "exec", host.netns, "curl", "-sS", "--max-time", "10", "-x",
         "http://127.0.0.1:15001", "http://myapp-v2:8080/"],
        capture_output=True, text=True, timeout=20)
    assert json.loads(via.stdout)["headers"][PEER_HEADER] == VM_ID, via.stdout + via.stderr
    closed = subprocess.run(["curl", "-sS", "--max-time", "5", "-x",
                             f"http://{host.address}:15001", "http://myapp-v2:8080/"],
                            capture_output=True, text=True, timeout=20)
    assert closed.returncode != 0, closed.stdout

    # The joined sidecar's inbound port speaks TLS with the group's identity ...
    first = served_certificate(host)
    assert f"URI:{VM_ID}" in first, first
    # ... and the host renews it (a new key, made there) at about half its life, with
    # no request failing meanwhile.
    deadline = time.monotonic() + CERT_TTL
    while "renewed (generation 1)" not in read(tmp_path / "agent.log"):
        assert time.monotonic() < deadline, read(tmp_path / "agent.log")
        r = mesh.http.get(URL)
        assert r.status_code == 200 and r.json()["headers"][PEER_HEADER] == MESH_PROXY_ID
        time.sleep(0.2)
    wait_for(lambda: serial(served_certificate(host)) != serial(first), 10,
             lambda: "the sidecar still serves the first certificate")
    assert f"URI:{VM_ID}" in served_certificate(host)
    assert (tmp_path / f"host-{host.address}" / "identity" / "key-1.pem").exists()


def served_certificate(host: Host) -> str:
    """What the joined sidecar's inbound port presents, as openssl prints it."""
    shown = subprocess.run(
        ["openssl", "s_client", "-connect", f"{host.address}:8080", "-alpn", "istio",
         "-showcerts"], input="", capture_output=True, text=True, timeout=20)
    cert = subprocess.run(["openssl", "x509", "-noout", "-serial", "-ext", "subjectAltName"],
                          input=shown.stdout, capture_output=True, text=True, timeout=10)
    return cert.stdout + cert.stderr


def serial(text: str) -> str:
    return next((line for line in text.splitlines() if line.startswith("serial=")), "")


def test_a_host_cut_off_leaves_the_endpoints_within_the_bound(
        mesh: Mesh, net: Network, tmp_path: Path) -> None:
    """Given v1 pods and a joined host behind one Service (kept across a crash and
    restart of the control plane), when the host's link goes down, its endpoint leaves
    every proxy within the report timeout (plus a check and a push), its entry is marked
    unhealthy, and requests keep succeeding on the pods."""
    mesh.apply(myapp.version("v1"), myapp.service(), group())
    mesh.converge()
    host = net.add_host()
    join(mesh, host, tmp_path, token(mesh))
    name = joined(mesh, host, tmp_path)

    # A control plane that crashes and restarts keeps its joined hosts: same API address
    # for their reports, their membership, their sidecar's xDS over mutual TLS again.
    api = mesh.cp.api
    mesh.cp.restart(graceful=False)
    mesh.cp.client = mesh.cp.new_client(verify=roots(mesh.cp))
    assert mesh.cp.api == api
    mesh.converge()
    wait_for(lambda: any(p["name"] == name and p["connected"] for p in mesh.proxies()), 10,
             lambda: f"{name}'s sidecar did not reconnect: {mesh.proxies()}")
    wait_for(lambda: healthy(entry(mesh, name)), 10, lambda: f"{name} not healthy")
    assert {r.json()["version"] for r in (mesh.http.get(URL) for _ in range(40))} \
        == {"v1", "v2"}

    host.cut_off()
    cut = time.monotonic()
    wait_for(lambda: f"{host.address}:8080" not in mesh.endpoint_addresses("mesh-proxy",
                                                                             CLUSTER),
             TIMEOUT + 6, lambda: "the cut-off host is still an endpoint")
    left_after = time.monotonic() - cut
    assert left_after <= TIMEOUT + 4, left_after
    assert healthy(entry(mesh, name)) is False

    answers = [mesh.http.get(URL) for _ in range(50)]
    assert [r.status_code for r in answers] == [200] * 50
    assert {r.json()["version"] for r in answers} == {"v1"}


def csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def join_request(mesh: Mesh, tok: str, group_ref: str, address: str) -> httpx.Response:
    """The join call a host's agent makes, without the bearer token it does not have."""
    with httpx.Client(verify=roots(mesh.cp), trust_env=False) as c:
        return c.post(f"{mesh.cp.api}/apis/meshpilot.io/v1/hosts/join", json={
            "token": tok, "group": group_ref, "address": address, "csr": csr(),
            "keyFile": "/var/lib/host/key.pem"})


def refusal(r: httpx.Response) -> str:
    assert r.status_code == 403, r.text
    (diagnostic,) = r.json()["diagnostics"]
    assert diagnostic["code"] == "MP0066"
    return str(diagnostic["message"])


def test_stale_reused_and_wrong_group_tokens_are_refused(
        mesh: Mesh, net: Network, tmp_path: Path) -> None:
    """A join token is single use, short-lived and bound to one group: a reused one, an
    expired one, and one for group A used to join group B are refused (MP0066) and
    register nothing; the agent on a host says so and exits without a sidecar. Across
    hosts nothing is plaintext: the API at the listen address answers TLS only, and
    endpoints.json names the API and the mutual-TLS xDS port there."""
    plain = mesh.cp.api.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/version", timeout=5, trust_env=False)
    endpoints = mesh.cp_endpoints()
    assert endpoints["api"].startswith(f"https://{net.address}:")
    assert endpoints["xds_tls"].startswith(f"{net.address}:")
    assert endpoints["xds"].startswith("127.0.0.1:")

    mesh.apply(myapp.service(), group(), group("other", version="v3"))
    address = f"{net.address.rsplit('.', 1)[0]}.50"
    used = token(mesh)
    first = join_request(mesh, used, "default/myapp-vm", address)
    assert first.status_code == 200, first.text
    assert first.json()["identity"] == "spiffe://cluster.local/ns/default/sa/myapp-vm"
    assert "already used" in refusal(join_request(mesh, used, "default/myapp-vm", address))

    stale = token(mesh, ttl=0.5)
    time.sleep(1.0)
    assert "expired" in refusal(join_request(mesh, stale, "default/myapp-vm", address))

    for_a = token(mesh)
    assert "not issued for WorkloadGroup default/other" in refusal(
        join_request(mesh, for_a, "default/other", f"{address[:-1]}1"))

    host = net.add_host()
    agent = subprocess.run(
        ["ip", "netns", "exec", host.netns, sys.executable, "-m", "meshpilot.hosts", "join",
         "--server", mesh.cp.api, "--token", for_a, "--group", "default/other",
         "--address", host.address, "--ca-file", str(mesh.cp.state_dir / "api-ca.pem"),
         "--state-dir", str(tmp_path / "agent"), "--app-port", "http=9080"],
        capture_output=True, text=True, timeout=30)
    assert agent.returncode == 2, agent.stderr
    assert "MP0066" in agent.stderr and "default/other" in agent.stderr, agent.stderr
    assert not (tmp_path / "agent" / "sidecar").exists()

    names = [e["metadata"]["name"] for e in mesh.api.get(
        "/apis/networking.istio.io/v1/namespaces/default/workloadentries").json()["items"]]
    assert names == [f"myapp-vm-{address}"]

"""A joined host goes on with another control-plane replica when its own dies.

Two replicas on one etcd, both reachable from other hosts (``--listen`` on the test's
bridge) and issuing from the one root they share (no ``--ca-dir``: the first replica's
self-signed root, taken by the other from etcd); a host (a network namespace) joins
through replica A. SIGKILL the replica its sidecar streams xDS from: the sidecar reconnects to
the other by itself and gets the next config change from it, and the agent's reports
reach the other too, so the entry stays healthy under whichever replica leads.

Follows Istio's VM model (a VM's proxy is bootstrapped with the discovery address and
reconnects when its istiod goes, istiod replicas behind one address), Envoy's priority
failover of a static cluster with active health checks, and Kubernetes controllers'
leader election (client-go's leaderelection) for who judges the hosts' health.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpilot.proxy.admin_socket import admin_socket_path
from tests.conftest import ControlPlane, read_endpoints
from tests.e2e import myapp
from tests.e2e.hosts import Host, Network, network
from tests.e2e.mesh import Mesh
from tests.e2e.test_hosts_join import V2_SERVICE, entry, group, healthy, read, roots, wait_for
from tests.etcd_cluster import Cluster

TIMEOUT = 2.0  # --host-timeout
LEADER = "/apis/meshpilot.io/v1/leader"


@pytest.fixture
def net() -> Iterator[Network]:
    with network() as n:
        yield n


@pytest.fixture
def replicas(control_plane_factory: Callable[..., ControlPlane], etcd_server: Cluster,
             etcd_prefix: str, net: Network, tmp_path: Path) -> Iterator[list[Mesh]]:
    url = etcd_server.url + etcd_prefix.rstrip("/")
    meshes = []
    try:
        for name in ("a", "b"):
            cp = control_plane_factory(name, args=[
                "--store", url, "--listen", net.address,
                "--host-timeout", f"{TIMEOUT:g}s", "--host-grace", "60s"])
            cp.client = cp.new_client(verify=roots(cp))
            meshes.append(Mesh(cp))
        yield meshes
    finally:
        for m in meshes:
            m.close()
            m.cp.discard()  # while its hosts are there (else it waits on dead connections)


def via_sidecar(host: Host, url: str) -> subprocess.CompletedProcess[str]:
    """A request from the host's app through its sidecar's HTTP proxy."""
    return subprocess.run(
        ["ip", "netns", "exec", host.netns, "curl", "-sS", "--max-time", "3", "-o",
         "/dev/null", "-w", "%{http_code}", "-x", "http://127.0.0.1:15001", url],
        capture_output=True, text=True, timeout=10)


def streaming_from(mesh: Mesh, name: str) -> bool:
    try:
        return any(p["name"] == name and p["connected"] for p in mesh.proxies())
    except Exception:
        return False


def xds_cluster(tmp: Path, name: str) -> str:
    """The sidecar's view of its xDS servers (health flags), for a failure's message."""
    sock = admin_socket_path(tmp / "host" / "sidecar", f"host-{name}")
    shown = subprocess.run(["curl", "-sS", "--unix-socket", str(sock), "http://admin/clusters"],
                           capture_output=True, text=True, timeout=10)
    return "\n".join(line for line in shown.stdout.splitlines() if line.startswith("xds-grpc"))


def token(mesh: Mesh) -> str:
    r = mesh.api.post("/apis/meshpilot.io/v1/hosts/tokens",
                      json={"group": "default/myapp-vm", "ttlSeconds": 600})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_a_joined_host_goes_on_with_the_other_replica_when_its_own_is_killed(
        replicas: list[Mesh], net: Network, tmp_path: Path) -> None:
    """Given two replicas that name each other, a host joins at A with a token made at
    B (tokens are shared, and still single-use); when A is SIGKILLed, B leads, a change
    made at B reaches the host's sidecar (now streaming from B), and the host stays
    healthy past its report timeout, its agent reporting to B, the leader, whose
    telemetry then has the sidecar's counters."""
    a, b = replicas
    # every replica's endpoints.json names both (API and mutual-TLS xDS at the bridge)
    def named(cp: ControlPlane) -> list[dict[str, Any]]:
        return list((read_endpoints(cp.state_dir) or {}).get("replicas") or [])
    for m in replicas:
        wait_for(lambda m=m: len(named(m.cp)) == 2, 10,
                 lambda m=m: f"{m.cp.state_dir.name}: {named(m.cp)}")
    assert {r["api"] for r in named(a.cp)} == {a.cp.api, b.cp.api}
    # one root for both (the API's roots are the mesh's)
    assert (a.cp.state_dir / "api-ca.pem").read_bytes() == \
        (b.cp.state_dir / "api-ca.pem").read_bytes()

    a.apply(myapp.service(), group())
    host = net.add_host()
    host.python("-m", "meshpilot.demoapp", "--version", "v2", "--host", host.address,
                "--port", "9080", "--pod-name", "vm", log=tmp_path / "app.log")
    agent = host.python(
        "-m", "meshpilot.hosts", "join", "--server", a.cp.api, "--token", token(b),
        "--group", "default/myapp-vm", "--address", host.address,
        "--ca-file", str(a.cp.state_dir / "api-ca.pem"), "--state-dir",
        str(tmp_path / "host"), "--app-port", "http=9080", log=tmp_path / "agent.log")
    name = f"myapp-vm-{host.address}"
    wait_for(lambda: healthy(entry(b, name)), 30,
             lambda: f"never healthy\n{read(tmp_path / 'agent.log')}\n{a.cp.log()}")
    # the sidecar streams from the replica it joined (priority 0 in its bootstrap)
    wait_for(lambda: streaming_from(a, name), 15, lambda: f"not on A: {a.proxies()}")
    assert not streaming_from(b, name)
    assert via_sidecar(host, "http://myapp-v2:8080/").stdout != "200"  # no such service yet

    a.cp.kill()
    killed = time.monotonic()
    wait_for(lambda: b.api.get(LEADER).json()["leading"], 15, lambda: "B never leads")
    b.apply(V2_SERVICE)  # the next change, made at B
    wait_for(lambda: via_sidecar(host, "http://myapp-v2:8080/").stdout == "200", 20,
             lambda: f"the change never reached the sidecar: {b.proxies()}\n"
                     f"{read(tmp_path / 'agent.log')}\n{xds_cluster(tmp_path, name)}")
    assert streaming_from(b, name)
    moved = time.monotonic() - killed

    # the agent reports to B now; B leads and judges from the shared reports: past the
    # timeout the entry is still healthy
    time.sleep(TIMEOUT * 2 + 1)
    assert healthy(entry(b, name)) is True, read(tmp_path / "agent.log")
    # ... with its sidecar's counters: B's telemetry has the requests the host sent
    # itself through its sidecar (destination-reported by that sidecar)
    wait_for(lambda: [r for r in b.telemetry(workload=name, namespace="default",
                                             window="120s")["rows"] if r["requests"] >= 1],
             15, lambda: f"no counters of {name} at B: {b.telemetry(namespace='default')}")
    log = read(tmp_path / "agent.log")  # the agent went on with B, the leader
    assert f"control plane {b.cp.api} answered" in log or f"reporting to {b.cp.api}" in log
    assert agent.poll() is None
    assert moved < 20

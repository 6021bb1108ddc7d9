"""A joined host reaches the control-plane host's pods through the east-west gateway.

Follows Istio's multi-network model ("Install Multi-Primary on different networks" and
its east-west gateway in ``AUTO_PASSTHROUGH`` mode): a proxy on another network gets, as
the endpoints of pods it cannot reach, the gateway's address; the gateway forwards the
still-encrypted mutual-TLS connection by its SNI (``outbound_.PORT_.SUBSET_.HOST``) to a
local pod, never terminating it, so the destination sidecar sees the caller's SPIFFE
identity and applies PeerAuthentication and AuthorizationPolicy to it (Istio's
"authorization across networks" holds the same way). Hosts are network namespaces on a
bridge (tests/e2e/hosts.py), the control plane listening on the bridge address.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e import myapp
from tests.e2e.hosts import Host, Network
from tests.e2e.mesh import URL, Mesh
from tests.e2e.security import authorization_policy, peer_authentication
from tests.e2e.test_hosts_join import (  # noqa: F401  (fixtures: mesh, net)
    MESH_PROXY_ID,
    PEER_HEADER,
    VM_ID,
    group,
    join,
    joined,
    mesh,
    net,
    read,
    token,
    wait_for,
)

GATEWAY_PORT = 15443


def call(host: Host, url: str = "http://myapp:8080/") -> tuple[int, str]:
    """The joined host's app calling ``url`` through its sidecar's HTTP proxy: (status,
    body); status 0 when nothing answered."""
    done = subprocess.run(
        ["ip", "netns", "exec", host.netns, "curl", "-sS", "--max-time", "10", "-o",
         "/dev/stdout", "-w", "\n%{http_code}", "-x", "http://127.0.0.1:15001", url],
        capture_output=True, text=True, timeout=20)
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), body + done.stderr


def answer_from_v1(host: Host) -> dict[str, Any] | None:
    status, body = call(host)
    if status != 200:
        return None
    parsed: dict[str, Any] = json.loads(body)
    return parsed if parsed.get("version") == "v1" else None


def test_a_joined_host_calls_pods_of_the_control_plane_host_over_mtls(
        mesh: Mesh, net: Network, tmp_path: Path) -> None:  # noqa: F811
    """Given v1 pods on the control-plane host (loopback addresses) and a joined host
    (v2), when the host's app calls myapp routed to v1, the answers come from the v1 pod
    through the east-west gateway at the listen address, and the pod's sidecar saw the
    joined host's identity (mutual TLS end to end). The gateway refuses a connection
    whose SNI names no mesh service port; proxies on this host still reach the pods
    directly. With STRICT mTLS and a policy denying the host's service account, the same
    call is refused by the destination's RBAC (403)."""
    mesh.apply(myapp.version("v1"), myapp.service(), myapp.subsets(), myapp.split(v1=100),
               group())
    mesh.converge()
    assert mesh.cp_endpoints()["east_west"] == f"{net.address}:{GATEWAY_PORT}"
    host = net.add_host()
    join(mesh, host, tmp_path, token(mesh))
    joined(mesh, host, tmp_path)

    body = wait_for(lambda: answer_from_v1(host), 20,
                    lambda: f"no answer from v1: {call(host)}\n{mesh.cp.log()}")
    assert body["headers"][PEER_HEADER] == VM_ID, body
    for _ in range(10):
        status, text = call(host)
        assert status == 200 and json.loads(text)["version"] == "v1", text

    # The connections went through the gateway, to the cluster the SNI named (its
    # access log, Istio's format: the upstream cluster is a field of each line).
    gateway_log = Path(mesh.cp.state_dir) / "run" / "eastwestgateway.access.log"
    wait_for(lambda: "outbound_.8080_.v1_.myapp.default.svc.cluster.local"
             in read(gateway_log), 10, lambda: f"gateway log: {read(gateway_log)!r}")

    # On this host the mesh proxy reaches the pod at its own (loopback) address.
    local = mesh.endpoint_addresses("mesh-proxy", "outbound|8080|v1|myapp.default.svc."
                                                  "cluster.local")
    assert local and all(a.startswith("127.") for a in local), local
    r = mesh.http.get(URL)
    assert r.status_code == 200 and r.json()["version"] == "v1", r.text
    assert r.json()["headers"][PEER_HEADER] == MESH_PROXY_ID, r.text

    # An SNI that names no service port: no chain matches, the connection is closed.
    probe = subprocess.run(
        ["ip", "netns", "exec", host.netns, "openssl", "s_client", "-connect",
         f"{net.address}:{GATEWAY_PORT}", "-servername", "outbound_.9999_._.nothing.here"],
        input="", capture_output=True, text=True, timeout=20)
    assert "BEGIN CERTIFICATE" not in probe.stdout, probe.stdout

    mesh.apply(peer_authentication("default", "STRICT"), authorization_policy(
        "deny-vm", "default", {"selector": {"matchLabels": {"app": "myapp", "version": "v1"}},
                               "action": "DENY",
                               "rules": [{"from": [{"source": {"principals": [
                                   "cluster.local/ns/default/sa/myapp-vm"]}}]}]}))
    mesh.converge()
    status = wait_for(lambda: call(host)[0] == 403, 20, lambda: f"not refused: {call(host)}")
    assert status
    r = mesh.http.get(URL)  # the mesh proxy's identity is not denied
    assert r.status_code == 200 and r.json()["version"] == "v1", r.text

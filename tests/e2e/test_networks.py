"""Two named networks (Istio's ``meshNetworks``): a host on network A reaches a workload
on network B only through B's gateway, over mutual TLS.

Follows Istio's "multi-network" model (``meshNetworks`` with ``fromRegistry``,
``fromCidr`` and gateways by ``registryServiceName``; a WorkloadGroup's ``network``, as
in "Virtual Machine Installation" on multiple networks) and its split-horizon EDS: a
proxy gets the endpoints of its own network directly and those of another network as
that network's gateway, which passes the mutual-TLS connection through by its SNI
(``AUTO_PASSTHROUGH``). Hosts are network namespaces on two bridges: the control plane
(on network B, with its pods' registry) has an address on each; host B sits on B's
bridge; host A on A's bridge reaches only the control plane's listen address (one
route), never host B's address.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpilot.api.mesh_networks import EAST_WEST_SERVICE
from meshpilot.proxy.admin_socket import admin_socket_path
from tests.builders import demo_deployment
from tests.builders import service as service_body
from tests.conftest import ControlPlane
from tests.e2e.hosts import Host, Network, ip, network
from tests.e2e.mesh import Mesh
from tests.e2e.test_host_pods import on_node, pod_addresses
from tests.e2e.test_hosts_join import (
    MESH_PROXY_ID,
    PEER_HEADER,
    entry,
    healthy,
    read,
    roots,
    wait_for,
)

GATEWAY_PORT = 15443
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client-vm"
CLUSTER = "outbound|8080||myapp.default.svc.cluster.local"
NODE_A = "node-a"
FAR_ID = "spiffe://cluster.local/ns/default/sa/far"


def far() -> list[dict[str, Any]]:
    """Deployment ``far-v1`` (the demo app, service account ``far``), placed on node-a,
    and its Service ``far`` on port 8080."""
    placed = on_node(demo_deployment("far-v1", "v1", app="far"), NODE_A)
    placed["spec"]["template"]["spec"]["serviceAccountName"] = "far"
    return [placed, service_body("far", port=8080, target_port="http")]


def group(name: str, app: str, account: str, network: str | None) -> dict[str, Any]:
    template: dict[str, Any] = {"labels": {"app": app, "version": "v2"},
                                "ports": {"http": 8080}, "serviceAccount": account}
    if network:
        template["network"] = network
    return {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"metadata": {"labels": {"app": app}}, "template": template,
                     "probe": {"periodSeconds": 1, "httpGet": {"path": "/", "port": 9080}}}}


SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "myapp", "namespace": "default"},
           "spec": {"selector": {"app": "myapp"},
                    "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}


@pytest.fixture
def nets() -> Iterator[tuple[Network, Network]]:
    with network() as a, network() as b:
        yield a, b


@pytest.fixture
def mesh(control_plane_factory: Callable[..., ControlPlane],
         nets: tuple[Network, Network], loopback_dns: Any) -> Iterator[Mesh]:
    net_a, net_b = nets
    cp = control_plane_factory("cp", start=False, args=["--listen", net_b.address,
                                                        "--host-timeout", "2s"])
    cp.state_dir.mkdir(parents=True, exist_ok=True)
    (cp.state_dir / "mesh.yaml").write_text(f"""\
dnsResolvers: ["{loopback_dns.address}"]
meshNetworks:
  networks:
    network-b:
      endpoints: [{{fromRegistry: Kubernetes}}, {{fromCidr: {net_b.address}/24}}]
      gateways: [{{registryServiceName: {EAST_WEST_SERVICE}, port: {GATEWAY_PORT}}}]
    network-a:
      endpoints: [{{fromCidr: {net_a.address}/24}}]
      gateways: [{{registryServiceName: {EAST_WEST_SERVICE}, port: {GATEWAY_PORT}}}]
""")
    cp.start()
    cp.client = cp.new_client(verify=roots(cp))
    m = Mesh(cp)
    try:
        yield m
    finally:
        m.close()
        cp.discard()  # while its hosts are there: else it waits on dead connections


def join(mesh: Mesh, host: Host, tmp: Path, group_name: str, *more: str) -> str:
    """The demo app and the node agent on ``host``, joined to ``group_name`` (with the
    agent's flags ``more``); the entry's name once it is healthy."""
    r = mesh.api.post("/apis/meshpilot.io/v1/hosts/tokens",
                      json={"group": f"default/{group_name}", "ttlSeconds": 600})
    assert r.status_code == 200, r.text
    host.python("-m", "meshpilot.demoapp", "--version", "v2", "--host", host.address,
                "--port", "9080", "--pod-name", group_name, log=tmp / f"{group_name}.app.log")
    host.python("-m", "meshpilot.hosts", "join", "--server", mesh.cp.api,
                "--token", r.json()["token"], "--group", f"default/{group_name}",
                "--address", host.address, "--ca-file", str(mesh.cp.state_dir / "api-ca.pem"),
                "--state-dir", str(tmp / group_name), "--app-port", "http=9080", *more,
                log=tmp / f"{group_name}.agent.log")
    found: list[str] = []

    def registered() -> bool:
        r = mesh.api.get("/apis/networking.istio.io/v1/namespaces/default/workloadentries")
        names = [i["metadata"]["name"] for i in r.json().get("items", [])
                 if i["metadata"]["name"].startswith(f"{group_name}-")]
        found[:] = names
        return bool(names) and bool(healthy(entry(mesh, names[0])))

    wait_for(registered, 30, lambda: f"{group_name} never healthy\n"
                                     f"{read(tmp / f'{group_name}.agent.log')}\n{mesh.cp.log()}")
    return found[0]


def call(host: Host, url: str, proxy: bool = True) -> tuple[int, str]:
    """``url`` from ``host`` (through its sidecar's HTTP proxy, or straight): (status,
    body); status 0 when nothing answered."""
    via = ["-x", "http://127.0.0.1:15001"] if proxy else []
    done = subprocess.run(
        ["ip", "netns", "exec", host.netns, "curl", "-sS", "--max-time", "5", "-o",
         "/dev/stdout", "-w", "\n%{http_code}", *via, url],
        capture_output=True, text=True, timeout=20)
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), body + done.stderr


def sidecar_endpoints(tmp: Path, group_name: str, entry_name: str) -> list[str]:
    """host:port of each endpoint of myapp the joined sidecar holds (its admin)."""
    sock = admin_socket_path(tmp / group_name / "sidecar", f"host-{entry_name}")
    shown = subprocess.run(["curl", "-sS", "--unix-socket", str(sock), "http://admin/clusters"],
                           capture_output=True, text=True, timeout=10).stdout
    return sorted({line.split("::")[1] for line in shown.splitlines()
                   if line.startswith(CLUSTER + "::") and "::cx_active::" in line})


def test_a_host_on_network_a_reaches_network_b_only_through_b_s_gateway(
        mesh: Mesh, nets: tuple[Network, Network], tmp_path: Path) -> None:
    """Given myapp on host B (network B by fromCidr) and a client host A whose
    WorkloadGroup says network A, with no route from A to B: A's sidecar holds, as
    myapp's endpoint, the gateway at the control plane's listen address (not B's
    address, which A cannot reach), and its calls arrive at B over mutual TLS with A's
    identity, through the gateway (its access log names the SNI). The control plane's
    own proxies, on network B, reach host B directly, and host A through the east-west
    gateway host A runs for network A (``host join --east-west-gateway``; meshNetworks
    names it by registryServiceName, as Istio names a network's gateway), over mutual
    TLS with the mesh proxy's identity; that gateway passes on nothing of network B.

    A Deployment placed on host A's node (``host join --node-name``; Kubernetes'
    ``kubernetes.io/hostname`` selector) runs its pod there, on network A like the host
    (Istio puts a workload on its node's network): the mesh proxy reaches it only through
    network A's gateway, over mutual TLS, and the pod's own sidecar reaches myapp on
    network B only through B's gateway, with the pod's identity (its service account)."""
    net_a, net_b = nets
    mesh.apply(SERVICE, group("myapp-b", "myapp", "myapp-vm", None),
               group("client-a", "client", "client-vm", "network-a"), *far())
    host_b = net_b.add_host()
    host_a = net_a.add_host()
    far_addresses = pod_addresses(host_a)
    # A reaches the control plane's listen address only, through its side of the bridge
    ip("netns", "exec", host_a.netns, "ip", "route", "add", f"{net_b.address}/32",
       "via", net_a.address)
    name_b = join(mesh, host_b, tmp_path, "myapp-b")
    name_a = join(mesh, host_a, tmp_path, "client-a", "--east-west-gateway",
                  "--node-name", NODE_A, "--pod-addresses", f"{far_addresses[0]}/29")
    assert name_a.endswith("-network-a"), name_a  # Istio's auto-registration name

    direct = call(host_a, f"http://{host_b.address}:9080/", proxy=False)
    assert direct[0] == 0, direct  # no way from A to B's address
    wait_for(lambda: sidecar_endpoints(tmp_path, "client-a", name_a)
             == [f"{net_b.address}:{GATEWAY_PORT}"], 20,
             lambda: f"A's sidecar holds {sidecar_endpoints(tmp_path, 'client-a', name_a)}")

    status, body = call(host_a, "http://myapp:8080/")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["pod"] == "myapp-b", answer  # host B answered
    assert answer["headers"][PEER_HEADER] == CLIENT_ID, answer  # mutual TLS, A's identity
    for _ in range(5):
        assert call(host_a, "http://myapp:8080/")[0] == 200

    gateway_log = Path(mesh.cp.state_dir) / "run" / "eastwestgateway.access.log"
    wait_for(lambda: "outbound_.8080_._.myapp.default.svc.cluster.local"
             in read(gateway_log), 10, lambda: f"gateway log: {read(gateway_log)!r}")

    # the control plane's mesh proxy is on network B: host B directly, and host A only
    # through network A's gateway, which host A runs
    assert mesh.endpoint_addresses("mesh-proxy", CLUSTER) == [f"{host_b.address}:8080"]
    assert name_b.startswith("myapp-b-")
    mesh.apply({**SERVICE, "metadata": {"name": "client", "namespace": "default"},
                "spec": {**SERVICE["spec"], "selector": {"app": "client"}}})
    mesh.converge()
    client = "outbound|8080||client.default.svc.cluster.local"
    assert client in mesh.clusters("mesh-proxy")
    wait_for(lambda: mesh.endpoint_addresses("mesh-proxy", client)
             == [f"{host_a.address}:{GATEWAY_PORT}"], 20,
             lambda: f"mesh proxy holds {mesh.endpoint_addresses('mesh-proxy', client)}\n"
                     f"{read(tmp_path / 'client-a.agent.log')}")
    reached = mesh.http.get("http://client:8080/")
    assert reached.status_code == 200, reached.text
    assert reached.json()["pod"] == "client-a", reached.json()  # host A answered
    assert reached.json()["headers"][PEER_HEADER] == MESH_PROXY_ID  # mutual TLS
    # host A's gateway passes on its own network's workloads, never network B's
    gateway = admin_socket_path(tmp_path / "client-a" / "gateway",
                                f"gateway-{name_a}")
    held = subprocess.run(["curl", "-sS", "--unix-socket", str(gateway),
                           "http://admin/clusters"], capture_output=True, text=True,
                          timeout=10).stdout
    assert f"{host_a.address}:8080" in held and host_b.address not in held, held
    far_pod_on_network_a(mesh, host_a, far_addresses, tmp_path)


def far_pod_on_network_a(mesh: Mesh, host_a: Host, addresses: list[str],
                         tmp: Path) -> None:
    """The far-v1 pod on node-a (host A, network A): in and out through the gateways."""
    def running() -> dict[str, Any] | None:
        pods = mesh.pods_of("far-v1", terminating=False)
        return pods[0] if len(pods) == 1 and pods[0]["status"]["ready"] else None

    pod = wait_for(running, 60, lambda: f"no ready far pod on {NODE_A}: "
                   f"{mesh.pods_of('far-v1')}\n{read(tmp / 'client-a.agent.log')}")
    assert pod["spec"]["nodeName"] == NODE_A and pod["status"]["podIP"] in addresses, pod
    # in: the mesh proxy (network B) holds host A's gateway, never the pod's address
    far_cluster = "outbound|8080||far.default.svc.cluster.local"
    wait_for(lambda: mesh.endpoint_addresses("mesh-proxy", far_cluster)
             == [f"{host_a.address}:{GATEWAY_PORT}"], 20,
             lambda: f"mesh proxy holds {mesh.endpoint_addresses('mesh-proxy', far_cluster)}")
    reached = mesh.http.get("http://far:8080/")
    assert reached.status_code == 200, reached.text
    assert reached.json()["pod"] == pod["metadata"]["name"], reached.json()
    assert reached.json()["headers"][PEER_HEADER] == MESH_PROXY_ID, reached.json()
    # out: from the pod's sidecar (its loopback twin on host A, which has no route to
    # host B) to myapp on host B, through B's gateway, as the pod's identity
    _, b, c, d = pod["status"]["podIP"].split(".")
    gateway_log = Path(mesh.cp.state_dir) / "run" / "eastwestgateway.access.log"
    before = read(gateway_log).count("outbound_.8080_._.myapp.default.svc.cluster.local")
    out = subprocess.run(
        ["ip", "netns", "exec", host_a.netns, "curl", "-sS", "--max-time", "10", "-x",
         f"http://127.{b}.{c}.{d}:15001", "http://myapp:8080/"],
        capture_output=True, text=True, timeout=20)
    answer = json.loads(out.stdout or "{}") if out.returncode == 0 else {}
    assert answer.get("pod") == "myapp-b", out.stdout + out.stderr
    assert answer["headers"][PEER_HEADER] == FAR_ID, answer
    wait_for(lambda: read(gateway_log).count(
        "outbound_.8080_._.myapp.default.svc.cluster.local") > before, 10,
             lambda: f"the pod's call not in B's gateway log: {read(gateway_log)!r}")

"""Control-plane replicas on different hosts: the leader's east-west gateway carries
every other replica's traffic to the pods.

Two replicas, each in its own network namespace (a host of its own, joined by a veth to
the test's bridge, where a real etcd listens), ``--listen`` on their own addresses. Only
the leader runs pods, on its host's loopback addresses; a host that joined through the
follower reaches them through the leader's gateway (Istio's multi-network model: a
workload on another network is reached at that network's east-west gateway, which
passes mutual TLS through by SNI). When the leader's process dies, the other replica
leads and runs the pods (Kubernetes controllers' leader election, as client-go's
leaderelection, for who runs them); the old pods stay endpoints until the new ones are
ready, as Kubernetes keeps a lost node's pods until it is declared dead.

That host also declares a node (``host join --node-name``) where a Deployment is placed
(Kubernetes' ``kubernetes.io/hostname`` selector): its pod's sidecar streams xDS from
the follower it joined, whose config and certificate (signed at the leader, shared
through etcd, served over SDS) it runs with, as Istio's proxies take both from any
istiod replica.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpilot.proxy.admin_socket import admin_socket_path
from meshpilot.server.leftovers import stop_leftovers
from tests.builders import demo_deployment
from tests.builders import service as service_body
from tests.conftest import ControlPlane
from tests.e2e import myapp
from tests.e2e.hosts import Host, Network, network
from tests.e2e.mesh import Mesh
from tests.e2e.test_host_pods import on_node, pod_addresses
from tests.e2e.test_hosts_join import PEER_HEADER, VM_ID, entry, group, healthy, read, roots
from tests.e2e.test_hosts_join import wait_for as wait
from tests.etcd_cluster import Member

GATEWAY_PORT = 15443
LEADER = "/apis/meshpilot.io/v1/leader"
V1 = "outbound|8080|v1|myapp.default.svc.cluster.local"
NODE = "node-vm"
NEAR_ID = "spiffe://cluster.local/ns/default/sa/near"


@pytest.fixture
def lan() -> Iterator[Network]:
    with network() as n:
        yield n


@pytest.fixture
def etcd(lan: Network, tmp_path: Path) -> Iterator[Member]:
    """One etcd member on the bridge address, so replicas in other namespaces reach it."""
    member = Member("etcd0", lan.address, tmp_path / "etcd0.data")
    member.start(f"etcd0={member.peer_url}", f"etcd-{tmp_path.name}")
    try:
        wait(member.healthy, 20, lambda: read(tmp_path / "etcd0.log")[-2000:])
        yield member
    finally:
        member.stop()


@pytest.fixture
def replicas(lan: Network, etcd: Member, tmp_path: Path) -> Iterator[list[tuple[Mesh, Host]]]:
    started: list[ControlPlane] = []
    out: list[tuple[Mesh, Host]] = []
    try:
        for name in ("a", "b"):
            host = lan.add_host()
            cp = ControlPlane(tmp_path / name, [
                "--store", f"etcd://{lan.address}:{etcd.client_port}/apart", "--listen",
                host.address, "--host-timeout", "2s", "--host-grace", "60s"])
            cp.argv_prefix = ("ip", "netns", "exec", host.netns)
            started.append(cp)
            cp.start()
            cp.client = cp.new_client(verify=roots(cp))
            out.append((Mesh(cp), host))
            if name == "a":  # A leads: it started first
                wait(lambda cp=cp: cp.client.get(LEADER).json()["leading"], 15,
                     lambda cp=cp: f"A never leads\n{cp.log()}")
        yield out
    finally:
        for cp in started:
            cp.stop()


def call(host: Host) -> dict[str, Any] | None:
    """The joined host's app calling myapp through its sidecar; the answer, or None."""
    done = subprocess.run(
        ["ip", "netns", "exec", host.netns, "curl", "-sS", "--max-time", "5", "-x",
         "http://127.0.0.1:15001", "http://myapp:8080/"],
        capture_output=True, text=True, timeout=20)
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return None
    return answer if answer.get("version") == "v1" else None


def v1_endpoints(state: Path, entry_name: str) -> list[str]:
    """host:port of each v1 endpoint the joined sidecar holds (its admin)."""
    sock = admin_socket_path(state / "sidecar", f"host-{entry_name}")
    shown = subprocess.run(["curl", "-sS", "--unix-socket", str(sock), "http://admin/clusters"],
                           capture_output=True, text=True, timeout=10).stdout
    return sorted({line.split("::")[1] for line in shown.splitlines()
                   if line.startswith(V1 + "::") and "::cx_active::" in line})


def xds_view(state: Path, entry_name: str) -> str:
    sock = admin_socket_path(state / "sidecar", f"host-{entry_name}")
    shown = subprocess.run(["curl", "-sS", "--unix-socket", str(sock), "http://admin/clusters"],
                           capture_output=True, text=True, timeout=10).stdout
    return "\n".join(line for line in shown.splitlines() if line.startswith("xds-grpc")
                     or line.startswith(V1))


def near() -> list[dict[str, Any]]:
    """Deployment ``near-v1`` (the demo app, service account ``near``) placed on the
    joined host's node, and its Service ``near`` on port 8080."""
    placed = on_node(demo_deployment("near-v1", "v1", app="near"), NODE)
    placed["spec"]["template"]["spec"]["serviceAccountName"] = "near"
    return [placed, service_body("near", port=8080, target_port="http")]


def from_vm(host: Host, proxy: str, url: str) -> dict[str, Any]:
    """``url`` from the joined host through the HTTP proxy ``proxy`` there: the demo
    app's answer, or what went wrong under "error"."""
    done = subprocess.run(
        ["ip", "netns", "exec", host.netns, "curl", "-sS", "--max-time", "5", "-x",
         proxy, url], capture_output=True, text=True, timeout=20)
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"error": done.stdout + done.stderr}
    return answer


def near_pod_at_the_follower(a: Mesh, b: Mesh, vm: Host, addresses: list[str],
                             agent_log: Path) -> dict[str, Any]:
    """The near-v1 pod on the joined host: its sidecar streams from B only, where its
    certificate (SDS) and config are acknowledged; it serves the host's sidecar over
    mutual TLS and calls A's pods through A's gateway as its own identity."""
    def running() -> dict[str, Any] | None:
        pods = a.pods_of("near-v1", terminating=False)
        return pods[0] if len(pods) == 1 and pods[0]["status"]["ready"] else None

    pod = wait(running, 60, lambda: f"no ready near pod on {NODE}: "
               f"{a.pods_of('near-v1')}\n{read(agent_log)}")
    assert pod["spec"]["nodeName"] == NODE and pod["status"]["podIP"] in addresses, pod
    name = pod["metadata"]["name"]

    def at(mesh: Mesh) -> list[dict[str, Any]]:
        return [p for p in mesh.proxies() if p["name"] == name and p["connected"]]

    [sidecar] = wait(lambda: at(b), 20, lambda: f"{name} not streaming from B: {b.proxies()}")
    assert at(a) == [], a.proxies()
    secret = sidecar["types"].get("Secret") or {}
    assert secret.get("acked") and secret.get("resources"), sidecar["types"]
    assert sidecar["types"]["Listener"]["acked"], sidecar["types"]

    def answered() -> dict[str, Any] | None:
        r = from_vm(vm, "http://127.0.0.1:15001", "http://near:8080/")
        return r if r.get("pod") == name else None

    served = wait(answered, 20, lambda: "near never answered the host: " + str(
        from_vm(vm, "http://127.0.0.1:15001", "http://near:8080/")))
    assert served["headers"][PEER_HEADER] == VM_ID, served  # mutual TLS, the host's identity
    _, x, y, z = pod["status"]["podIP"].split(".")
    out = from_vm(vm, f"http://127.{x}.{y}.{z}:15001", "http://myapp:8080/")
    assert out.get("version") == "v1" and out["pod"] in pod_names(a), out
    assert out["headers"][PEER_HEADER] == NEAR_ID, out  # the pod's own certificate
    return pod


def pod_names(mesh: Mesh) -> set[str]:
    return {p["metadata"]["name"] for p in mesh.pods_of("myapp-v1")}


def test_a_host_joined_at_the_follower_reaches_the_leader_s_pods_through_its_gateway(
        replicas: list[tuple[Mesh, Host]], lan: Network, tmp_path: Path) -> None:
    """Given replicas A (leader) and B on two hosts and v1 pods on A's host, a host that
    joined through B calls myapp: its sidecar (streaming from B) holds A's gateway as the
    v1 endpoint, and A's pod answers over mutual TLS with the host's identity. When A's
    control plane dies, B leads; A's pods, still alive, serve through A's gateway until
    B runs v1 pods on its host, then the host is sent through B's gateway to them, with
    no failed request; and when A's host dies too, B's pods go on serving. A pod placed
    on the host's node streams from B, with B's config and its certificate over B's SDS,
    serves the host over mutual TLS, calls A's pods as its own identity, and goes on
    serving under B as leader."""
    (a, host_a), (b, host_b) = replicas
    a.apply(myapp.version("v1"), myapp.service(), myapp.subsets("v1"), myapp.split(v1=100),
            group())
    a.converge()
    a.apply(*near())  # Pending until the host below joins as its node
    vm = lan.add_host()
    addresses = pod_addresses(vm)
    r = b.api.post("/apis/meshpilot.io/v1/hosts/tokens",
                   json={"group": "default/myapp-vm", "ttlSeconds": 600})
    assert r.status_code == 200, r.text
    state = tmp_path / "vm"
    vm.python("-m", "meshpilot.demoapp", "--version", "v2", "--host", vm.address,
              "--port", "9080", "--pod-name", "vm", log=tmp_path / "app.log")
    vm.python("-m", "meshpilot.hosts", "join", "--server", b.cp.api, "--token",
              r.json()["token"], "--group", "default/myapp-vm", "--address", vm.address,
              "--ca-file", str(b.cp.state_dir / "api-ca.pem"), "--state-dir", str(state),
              "--app-port", "http=9080", "--node-name", NODE, "--pod-addresses",
              f"{addresses[0]}/29", log=tmp_path / "agent.log")
    name = f"myapp-vm-{vm.address}"
    wait(lambda: healthy(entry(b, name)), 30,
         lambda: f"never healthy\n{read(tmp_path / 'agent.log')}\n{b.cp.log()}")

    answer = wait(lambda: call(vm), 30, lambda: f"no answer from v1: "
                  f"{v1_endpoints(state, name)}\n{b.cp.log()[-3000:]}")
    a_pods = pod_names(a)
    assert answer["pod"] in a_pods, answer  # a pod on A's host
    assert answer["headers"][PEER_HEADER] == VM_ID, answer  # mutual TLS end to end
    assert v1_endpoints(state, name) == [f"{host_a.address}:{GATEWAY_PORT}"]
    near_pod = near_pod_at_the_follower(a, b, vm, addresses, tmp_path / "agent.log")

    # A's control plane dies (SIGKILL), its pods and gateway live on: B leads and its
    # proxies still reach A's pods, kept during the hand-over, through A's gateway, until
    # B's own are ready; no request of the host fails meanwhile
    a.cp.kill()
    killed = time.monotonic()
    failed, answered_by_a = [], 0
    while v1_endpoints(state, name) != [f"{host_b.address}:{GATEWAY_PORT}"]:
        assert time.monotonic() - killed < 60, (
            f"still {v1_endpoints(state, name)}\n{b.proxies()}\n{xds_view(state, name)}")
        answer = call(vm)
        if answer is None:
            failed.append(time.monotonic() - killed)
        elif answer["pod"] in a_pods:
            answered_by_a += 1
        time.sleep(0.2)
    assert b.api.get(LEADER).json()["leading"]
    assert failed == [], failed
    assert answered_by_a > 0  # A's pods served during the hand-over

    # then A's host dies (its pods and proxies SIGKILLed): B's pods serve, through B's
    # gateway, with the host's identity
    stop_leftovers(a.cp.state_dir / "run")
    for _ in range(5):
        answer = call(vm)
        assert answer is not None, b.cp.log()[-3000:]
        assert answer["pod"] in pod_names(b), (answer, pod_names(b))
        assert answer["headers"][PEER_HEADER] == VM_ID, answer
    # the pod on the joined host was never the leader's to run: under B it serves on
    answer = from_vm(vm, "http://127.0.0.1:15001", "http://near:8080/")
    assert answer.get("pod") == near_pod["metadata"]["name"], answer
    assert answer["headers"][PEER_HEADER] == VM_ID, answer

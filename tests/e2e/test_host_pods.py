"""A Deployment's pods on a joined host, for real: the control plane listens on a bridge
address that exists only for this test, and the joined host is a network namespace whose
agent declared a node name (``host join --node-name``) and addresses for its pods.

Kubernetes behaviour followed: a template that names a node (here the hostname label of
``nodeSelector``, as ``kubernetes.io/hostname`` selects a node in Kubernetes) runs its pods
on that node only; while no node has that name the pods stay Pending with the reason
Unschedulable; once there, they are endpoints of the Services that select them, reached
over the mesh's mutual TLS (Istio's sidecar-to-sidecar traffic), and the Deployment's
ready count is theirs.
"""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ControlPlane
from tests.e2e import myapp
from tests.e2e.hosts import Host, Network, ip, network
from tests.e2e.mesh import URL, Mesh
from tests.e2e.rollouts import canary, target
from tests.e2e.scenario import Given, Then, When
from tests.e2e.test_gateway_tcp import SERVICE, echo
from tests.e2e.test_hosts_join import (
    MESH_PROXY_ID,
    PEER_HEADER,
    group,
    read,
    roots,
    token,
    wait_for,
)
from tests.e2e.test_mesh_tcp import client, connect

NODE = "node-b"
POD_ID = "spiffe://cluster.local/ns/default/sa/default"
V2_CLUSTER = "outbound|8080|v2|myapp.default.svc.cluster.local"


@pytest.fixture
def net() -> Iterator[Network]:
    with network() as n:
        yield n


@pytest.fixture
def host_timeout() -> str:
    """``up --host-timeout``: a host reports and syncs each quarter of it."""
    return "3s"


@pytest.fixture
def mesh(control_plane_factory: Callable[..., ControlPlane], net: Network,
         host_timeout: str) -> Iterator[Mesh]:
    cp = control_plane_factory("cp", args=["--listen", net.address, "--host-timeout",
                                           host_timeout, "--host-grace", "60s"])
    cp.client = cp.new_client(verify=roots(cp))
    m = Mesh(cp)
    try:
        yield m
    finally:
        m.close()
        cp.discard()  # while its hosts are there: else it waits on dead connections


def on_node(body: dict[str, Any], node: str) -> dict[str, Any]:
    placed = copy.deepcopy(body)
    placed["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    return placed


def pod_addresses(host: Host, first: int = 17) -> list[str]:
    """Six more addresses of the host, the hosts of a /29 (``--pod-addresses``) of its /24
    from ``first`` (one more than a multiple of 8; each host its own)."""
    base = host.address.rsplit(".", 1)[0]
    inner = "mpi" + host.netns.removeprefix("mph-")
    out = [f"{base}.{n}" for n in range(first, first + 6)]
    for address in out:
        ip("netns", "exec", host.netns, "ip", "addr", "add", f"{address}/24", "dev", inner)
    return out


def join_as_node(mesh: Mesh, host: Host, tmp_path: Path, addresses: list[str],
                 node: str = NODE) -> None:
    """The demo app (the group's own workload, version ``vm``) and the node agent, which
    declares ``node`` (node-b) and the host's pod addresses."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    host.python("-m", "meshpilot.demoapp", "--version", "vm", "--host", host.address,
                "--port", "9080", "--pod-name", "vm", log=tmp_path / "app.log")
    host.python("-m", "meshpilot.hosts", "join", "--server", mesh.cp.api,
                "--token", token(mesh), "--group", "default/myapp-vm",
                "--address", host.address, "--ca-file", str(mesh.cp.state_dir / "api-ca.pem"),
                "--state-dir", str(tmp_path / "host"), "--app-port", "http=9080",
                "--node-name", node, "--pod-addresses", f"{addresses[0]}/29",
                log=tmp_path / "agent.log")


@pytest.mark.parametrize("host_timeout", ["32s"])  # rounds of 8 s: the restart's bound
def test_a_deployment_placed_on_a_joined_host_runs_there_and_serves_over_mtls(
        mesh: Mesh, net: Network, tmp_path: Path) -> None:
    """Given v1 here and v2 placed by its hostname selector on node-b: Pending
    (Unschedulable) until a host joins as node-b; then its pod runs there, at one of that
    host's pod addresses, turns ready, and a 50/50 split reaches both versions, v2 over
    mutual TLS (its sidecar passes on the caller's SPIFFE ID), and its sidecar's counters
    reach the mesh's telemetry under the Deployment's workload; a TCP client placed there
    too reaches a TCP service here; a control plane that crashes and restarts takes the
    pod back."""
    mesh.apply(myapp.version("v1"), myapp.service(), myapp.subsets(),
               myapp.split(v1=50, v2=50), group(version="vm"), on_node(myapp.version("v2"), NODE),
               echo("v1", "one"), SERVICE,
               *(on_node(d, NODE) if d["kind"] == "Deployment" else d for d in client()))
    pending = wait_for(lambda: mesh.pods_of("myapp-v2"), 30, lambda: "no v2 pod listed")
    assert [p["status"]["phase"] for p in pending] == ["Pending"], pending
    assert pending[0]["status"]["reason"] == "Unschedulable", pending
    assert NODE in pending[0]["status"]["message"], pending

    host = net.add_host()
    addresses = pod_addresses(host)
    join_as_node(mesh, host, tmp_path, addresses)

    def running() -> dict[str, Any] | None:
        pods = mesh.pods_of("myapp-v2", terminating=False)
        ready = [p for p in pods if p["status"]["ready"]]
        return ready[0] if len(pods) == 1 and ready else None

    pod = wait_for(running, 60, lambda: f"no ready v2 pod on {NODE}: {mesh.pods_of('myapp-v2')}"
                   f"\n{read(tmp_path / 'agent.log')}\n{mesh.cp.log()}")
    assert pod["status"]["podIP"] in addresses, pod
    assert pod["spec"]["nodeName"] == NODE, pod
    wait_for(lambda: f"{pod['status']['podIP']}:8080" in mesh.endpoint_addresses(
        "mesh-proxy", V2_CLUSTER), 20, lambda: "v2 pod not in the mesh proxy's endpoints")
    mesh.converge()  # v1 here too, and every proxy on the latest version

    counts: Counter[str] = Counter()
    for _ in range(40):
        r = mesh.http.get(URL)
        assert r.status_code == 200, r.text
        body = r.json()
        counts[body["version"]] += 1
        if body["version"] == "v2":
            assert body["pod"] == pod["metadata"]["name"], body
            assert body["headers"].get(PEER_HEADER) == MESH_PROXY_ID, body
    assert set(counts) == {"v1", "v2"}, counts

    # The pod's sidecar counters reach the control plane's telemetry with its host's
    # syncs (its admin is on that host): Istio's destination-reported requests of the
    # Deployment's workload, one for each v2 answer, as for a pod here.
    def v2_row() -> dict[str, Any] | None:
        rows = mesh.telemetry(workload="myapp-v2", namespace="default", window="120s")["rows"]
        return rows[0] if rows and rows[0]["requests"] >= counts["v2"] else None

    row = wait_for(v2_row, 20, lambda: f"no telemetry of myapp-v2: "
                                       f"{mesh.telemetry(namespace='default')}")
    assert row["requests"] == counts["v2"] and row["errors"] == 0, (row, counts)

    # The pod's app calls the mesh through its sidecar, which takes those calls on a
    # loopback address of that host only (127.B.C.D for pod address A.B.C.D): here v1
    # through the east-west gateway, v2 (itself) directly, both as the pod's identity.
    _, b, c, d = pod["status"]["podIP"].split(".")
    for _ in range(4):
        via = subprocess.run(
            ["ip", "netns", "exec", host.netns, "curl", "-sS", "--max-time", "10", "-x",
             f"http://127.{b}.{c}.{d}:15001", URL], capture_output=True, text=True, timeout=20)
        assert json.loads(via.stdout)["headers"][PEER_HEADER] == POD_ID, via.stdout + via.stderr
    # ... which is where its HTTP_PROXY points: the pod's own app calls v1 or v2 from
    # there (asked through the mesh; the half of the calls that reach v2 show it)
    def called_from_the_pod() -> dict[str, Any] | None:
        r = mesh.http.get(f"{URL}call?url={URL}")
        return r.json() if r.status_code == 200 and r.json()["version"] == "v2" else None

    call = wait_for(called_from_the_pod, 20, lambda: "no call made from the v2 pod")
    assert call["proxy"] == f"http://127.{b}.{c}.{d}:15001", call
    assert call["status"] == 200 and call["body"]["headers"][PEER_HEADER] == POD_ID, call
    closed = subprocess.run(["curl", "-sS", "--max-time", "5", "-x",
                             f"http://{pod['status']['podIP']}:15001", URL],
                            capture_output=True, text=True, timeout=20)
    assert closed.returncode != 0, closed.stdout  # not from another host

    # No plaintext across hosts: on node-b the pod's app listens on the loopback twin
    # only, its routable address carrying the sidecar's inbound port alone; from another
    # host the app's port there refuses, while the mesh call above went over mutual TLS.
    listening = subprocess.run(["ip", "netns", "exec", host.netns, "ss", "-Hltn"],
                               capture_output=True, text=True, timeout=20, check=True).stdout
    sockets = [line.split()[3].rsplit(":", 1) for line in listening.splitlines()]
    assert {int(port) for a, port in sockets if a == pod["status"]["podIP"]} == {8080}, listening
    app_ports = {int(port) for a, port in sockets
                 if a == f"127.{b}.{c}.{d}" and int(port) not in (15001,)}
    assert app_ports, listening  # the demo app's port, on the twin
    other = net.add_host()
    for app_port in app_ports:
        refused = subprocess.run(
            ["ip", "netns", "exec", other.netns, "curl", "-sS", "--max-time", "5",
             f"http://{pod['status']['podIP']}:{app_port}/"],
            capture_output=True, text=True, timeout=20)
        assert refused.returncode == 7, refused.stdout + refused.stderr  # connection refused
    reached = subprocess.run(
        ["ip", "netns", "exec", other.netns, "curl", "-sS", "--max-time", "5", "-o",
         "/dev/null", "-w", "%{http_code}", f"http://{mesh.cp.api.split('//')[1]}/"],
        capture_output=True, text=True, timeout=20)
    assert reached.returncode != 7, reached.stderr  # that host does reach the network

    # Its logs and its sidecar's admin are on that host: said, not answered empty.
    logs = mesh.api.get(f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}/log")
    assert logs.status_code == 409 and NODE in logs.text, logs.text

    dep = mesh.api.get("/apis/apps/v1/namespaces/default/deployments/myapp-v2").json()
    assert dep["status"]["readyReplicas"] == 1, dep["status"]

    # Istio's "TCP Traffic Shifting" client (the task's sleep pod), placed on node-b too,
    # finds tcp-echo as a Kubernetes pod does (TCP_ECHO_SERVICE_HOST/_PORT: its sidecar's
    # local listener); its connections cross the east-west gateway, over mutual TLS, to
    # the echo pod here.
    assert {p["spec"]["nodeName"] for p in mesh.pods_of("tcp-client")} == {NODE}
    assert connect(mesh, 5) == {"one": 5}

    # The control plane crashes and starts again (adopting what runs here): the host's
    # watch comes back, so the host syncs at once (not at its next round, 8 s here) and
    # the control plane knows the joined pod again within seconds; it has the host issue
    # the pod sidecar's certificate again (it never held the key), and v2 answers over
    # mutual TLS as before.
    mesh.cp.kill()
    mesh.cp.start()
    back = time.monotonic()
    mesh.cp.client = mesh.cp.new_client(verify=roots(mesh.cp))
    kept = wait_for(running, 30, lambda: f"the v2 pod not back: {mesh.pods_of('myapp-v2')}")
    took = time.monotonic() - back
    # the same pod: a control plane that has not placed yet tells the host nothing to stop
    assert kept["metadata"]["name"] == pod["metadata"]["name"], (kept, pod)
    assert took < 4.0, f"the v2 pod took {took:.1f} s to come back\n" + read(
        tmp_path / "agent.log")
    assert "syncing now" in read(tmp_path / "agent.log")

    def v2_over_mtls() -> bool:
        r = mesh.http.get(URL)
        return r.status_code == 200 and r.json()["version"] == "v2" and \
            r.json()["headers"].get(PEER_HEADER) == MESH_PROXY_ID

    wait_for(lambda: "issued again" in read(tmp_path / "agent.log"), 10,
             lambda: f"no certificate issued again\n{read(tmp_path / 'agent.log')}")
    wait_for(v2_over_mtls, 30, lambda: f"v2 not answering\n{read(tmp_path / 'agent.log')}")


def test_a_flagger_canary_whose_new_revision_runs_on_a_joined_host_is_promoted(
        mesh: Mesh, net: Network, tmp_path: Path, given: Given, when: When,
        then: Then) -> None:
    """Flagger's podinfo e2e shape (a Canary over a Deployment, both built-in checks,
    short interval, 10% steps to 30%): v1's primary runs here; the new revision's
    template selects node-b, so the canary pods run on the joined host. The steps split
    the traffic between here and there over mutual TLS, the checks judge the joined
    pods' own counters (Istio's destination reporter), and promotion moves the primary to
    node-b (Flagger copies the target's template, placement included), its pods here
    kept until those there are ready: no request fails."""
    vm_group = group()
    vm_group["spec"]["metadata"]["labels"] = vm_group["spec"]["template"]["labels"] = {
        "app": "vm"}  # the host's own workload is no part of the rollout's Services
    mesh.apply(vm_group)
    host = net.add_host()
    join_as_node(mesh, host, tmp_path, pod_addresses(host))
    given.rollout(canary())
    assert {p["spec"]["nodeName"] for p in mesh.pods_of("myapp-primary")} == {"localhost"}

    with when.traffic() as load:
        when.apply_nowait(on_node(target("v2", replicas=1), NODE))
        canary_pods = when.until(lambda: [p for p in mesh.pods_of("myapp", terminating=False)
                                          if p["status"]["ready"]], 60,
                                 "the canary's pod ready on node-b")
        seen = when.rollout_runs_to_the_end(timeout=90)
        when.until(lambda: {p["spec"]["nodeName"] for p in mesh.pods_of(
            "myapp-primary", terminating=False) if p["status"]["ready"]} == {NODE}, 30,
                   "the promoted primary's pods ready on node-b")
        when.time_passes(1.0)

    final = then.rollout_phase("Succeeded")
    assert final["history"][-1]["outcome"] == "promoted", final["history"]
    assert {10, 20, 30} <= {body["canaryWeight"] for body in seen}, seen[-1]
    judged = [c for c in final["checks"] if c["name"] == "request-success-rate"]
    assert judged and judged[-1]["verdict"] == "pass", final["checks"]
    assert judged[-1]["value"] == 100, judged
    # what was judged: the canary's requests as its sidecar on node-b counted them
    rows = mesh.telemetry(workload="myapp", namespace="default", window="300s")["rows"]
    assert rows and rows[0]["requests"] >= 10 and rows[0]["errors"] == 0, rows
    then.no_request_failed(load, more_than=100)
    assert {p["spec"]["nodeName"] for p in canary_pods} == {NODE}, canary_pods
    primary = mesh.pods_of("myapp-primary", terminating=False)
    assert {p["spec"]["nodeName"] for p in primary} == {NODE}, primary
    on_b = {p["metadata"]["name"] for p in canary_pods + primary}
    answered = {o.pod for o in load.outcomes if o.version == "v2"}
    assert answered and answered <= on_b, (answered, on_b)  # v2 answered from node-b only
    assert load.versions["v1"] > 0, load.versions
    then.split_is({"v2": 10})
    promoted = mesh.http.get(URL).json()  # the primary on node-b, over mutual TLS
    assert promoted["headers"].get(PEER_HEADER) == MESH_PROXY_ID, promoted



def test_a_deployment_moved_between_joined_hosts_fails_no_request(
        mesh: Mesh, net: Network, tmp_path: Path) -> None:
    """Kubernetes' rolling update with maxUnavailable 0, across nodes: the only
    Deployment behind the Service runs on node-b, and its template is changed to name
    node-c; node-b's pod keeps serving until node-c's is ready, then stops, and a
    steady stream of requests through the mesh sees no failure, answered from both."""
    vm_group = group()
    vm_group["spec"]["metadata"]["labels"] = vm_group["spec"]["template"]["labels"] = {
        "app": "vm"}  # the hosts' own workload is no part of the Service
    mesh.apply(vm_group, myapp.service(), on_node(myapp.version("v2"), NODE))
    hosts = [net.add_host(), net.add_host()]
    for host, node, first in zip(hosts, (NODE, "node-c"), (17, 25), strict=True):
        join_as_node(mesh, host, tmp_path / node, pod_addresses(host, first), node)

    def ready_on(node: str) -> list[dict[str, Any]]:
        return [p for p in mesh.pods_of("myapp-v2", terminating=False)
                if p["status"]["ready"] and p["spec"]["nodeName"] == node]

    [old] = wait_for(lambda: ready_on(NODE), 60, lambda: f"no ready v2 pod on {NODE}: "
                     f"{mesh.pods_of('myapp-v2')}\n{read(tmp_path / NODE / 'agent.log')}")
    wait_for(lambda: f"{old['status']['podIP']}:8080" in mesh.endpoint_addresses(
        "mesh-proxy", "outbound|8080||myapp.default.svc.cluster.local"), 20,
        lambda: "the pod on node-b not in the mesh proxy's endpoints")

    answered: Counter[str] = Counter()
    failed: list[str] = []
    done = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            try:
                r = mesh.http.get(URL, timeout=10)
            except httpx.HTTPError as exc:
                failed.append(repr(exc))
                continue
            if r.status_code == 200:
                answered[r.json()["pod"]] += 1
            else:
                failed.append(f"{r.status_code} {r.text[:200]}")
            time.sleep(0.02)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        wait_for(lambda: answered[old["metadata"]["name"]] >= 5, 20,
                 lambda: f"no answer from node-b: {failed[:3]}")
        mesh.apply(on_node(myapp.version("v2"), "node-c"))
        [new] = wait_for(lambda: ready_on("node-c"), 60, lambda: f"no ready v2 pod on "
                         f"node-c: {mesh.pods_of('myapp-v2')}\n"
                         f"{read(tmp_path / 'node-c' / 'agent.log')}")
        wait_for(lambda: not mesh.pods_of("myapp-v2") or {
            p["spec"]["nodeName"] for p in mesh.pods_of("myapp-v2")} == {"node-c"}, 30,
                 lambda: f"node-b's pod not gone: {mesh.pods_of('myapp-v2')}")
        wait_for(lambda: answered[new["metadata"]["name"]] >= 5, 20,
                 lambda: f"no answer from node-c: {answered} {failed[:3]}")
    finally:
        done.set()
        worker.join(timeout=15)
    assert not failed, failed[:5]
    assert answered[old["metadata"]["name"]] >= 5 and answered[new["metadata"]["name"]] >= 5

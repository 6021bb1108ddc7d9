"""Crash-safe restarts: a control plane killed with SIGKILL leaves its data plane serving,
and the next one on the same state directory adopts it — the same pods, names, addresses
and processes, the same proxies — without a single failed request. A graceful stop still
stops everything.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from meshpilot.server.leftovers import find_leftovers
from tests.conftest import process_alive
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given, Then, When

PROXIES = {"mesh-proxy", "istio-ingressgateway"}  # beside the pods' sidecars


def _pod_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "pods").glob("*.json")}


def _pod_processes(records: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        name: (tuple(c["pid"] for c in r["containers"]), r["sidecar"]["pid"])
        for name, r in records.items()
    }


def _dynamic(mesh: Mesh, proxy: str, kind: str) -> list[dict[str, Any]]:
    """What the proxy holds, with Envoy's own last_updated: unchanged means not re-sent
    with a difference (Envoy ignores an identical resource)."""
    return sorted(mesh.proxy_config(proxy, kind), key=lambda i: json.dumps(i, sort_keys=True))


def test_a_restarted_control_plane_adopts_the_running_data_plane(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    # Given a mesh with traffic split 80/20 between two versions
    given.applied(myapp.version("v1", replicas=2), myapp.version("v2"), myapp.service(),
                  myapp.subsets(), myapp.split(v1=80, v2=20), *myapp.ingress("v1"))
    run_dir = mesh.cp.state_dir / "run"
    pods = {p["metadata"]["name"]: p for p in mesh.pods()}
    assert len(pods) == 3
    everyone = set(pods) | PROXIES
    mesh.wait_synced(everyone)
    client_pod = sorted(n for n in pods if n.startswith("myapp-v1-"))[0]
    sidecar = f"http://{pods[client_pod]['status']['podIP']}:15001"
    processes = set(find_leftovers(run_dir))  # every process of the mesh: 3 pods x 2 + 2
    assert len(processes) == 8, processes
    records = _pod_records(run_dir)
    assert set(records) == set(pods)
    held = {
        (p, k): _dynamic(mesh, p, k)
        for p in (client_pod, "mesh-proxy")
        for k in ("clusters", "listeners")
    }
    endpoints_before = mesh.cp_endpoints()

    # When the control plane is killed under steady load, stays down, and comes back
    with when.traffic(via=[mesh.mesh_proxy, sidecar], workers=1, rate=200) as load:
        when.time_passes(1.0).control_plane_killed()
        killed = time.time()
        when.time_passes(3.0)
        back = time.time()
        when.control_plane_started().converges()
        mesh.wait_synced(everyone)
        when.time_passes(1.0)
        done = time.time()

    # Then not one request failed, before, while down, or after
    then.no_request_failed(load)
    down = load.answered_via(killed, back)
    assert down[mesh.mesh_proxy] > 20 and down[sidecar] > 20, down
    after = load.answered_via(back, done)
    assert after[mesh.mesh_proxy] > 20 and after[sidecar] > 20, after

    # and the data plane was adopted: the same pods, names, addresses and processes,
    # no restarts, nothing started twice, the same ports
    again = {p["metadata"]["name"]: p for p in mesh.pods()}
    assert set(again) == set(pods)
    for name, pod in again.items():
        assert pod["status"]["podIP"] == pods[name]["status"]["podIP"]
        assert pod["status"]["restartCount"] == pods[name]["status"]["restartCount"] == 0
        assert pod["status"]["startedAt"] == pods[name]["status"]["startedAt"]
        assert pod["status"]["ready"] and pod["status"]["phase"] == "Running"
    assert set(find_leftovers(run_dir)) == processes
    assert _pod_processes(_pod_records(run_dir)) == _pod_processes(records)
    endpoints_after = mesh.cp_endpoints()
    for key in ("xds", "mesh_proxy", "ingress"):
        assert endpoints_after[key] == endpoints_before[key], key
    assert "adopted pod" in mesh.cp.log()

    # and every proxy re-synced to a snapshot identical to the one it held
    for (proxy, kind), items in held.items():
        assert _dynamic(mesh, proxy, kind) == items, (proxy, kind)

    # and the restarted control plane is in charge: a weight change takes effect
    when.apply(myapp.split(v1=0, v2=100))
    then.split_is({"v2": 20})
    with httpx.Client(proxy=sidecar, trust_env=False, timeout=10) as client:
        assert {client.get(URL).headers.get("x-version") for _ in range(20)} == {"v2"}
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert client.get(f"http://{pods[client_pod]['status']['podIP']}:8080/").status_code == 200
    assert mesh.from_ingress().headers["x-version"] == "v1"


def test_adopted_pods_are_supervised_and_rolled_and_a_graceful_stop_stops_all(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.version("v1"), myapp.service(), myapp.subsets("v1"))
    run_dir = mesh.cp.state_dir / "run"
    (old,) = mesh.pods()
    name = old["metadata"]["name"]
    when.control_plane_killed().control_plane_started().converges()
    assert [p["metadata"]["name"] for p in mesh.pods()] == [name]
    record = _pod_records(run_dir)[name]

    # An adopted app that dies is restarted, as one the runtime started itself would be
    os.kill(record["containers"][0]["pid"], signal.SIGKILL)
    when.until(
        lambda: (
            [(p["status"]["restartCount"], p["status"]["ready"]) for p in mesh.pods()]
            == [(1, True)]
        ),
        30,
        "the adopted app restarted",
    )
    when.converges()
    then.split_is({"v1": 10})
    assert _pod_records(run_dir)[name]["containers"][0]["pid"] != record["containers"][0]["pid"]

    # A new template replaces the adopted pod by the usual rolling update
    when.apply_nowait(myapp.version("v1", args="--latency-ms 1"))

    def rolled() -> str | None:
        pods = mesh.pods()
        if len(pods) == 1 and pods[0]["status"]["ready"] and pods[0]["metadata"]["name"] != name:
            return str(pods[0]["metadata"]["name"])
        return None

    new = when.until(rolled, 60, "the adopted pod replaced by the new template")
    when.converges()
    then.split_is({"v1": 10})

    # A graceful stop stops every pod and proxy, adopted or not, and leaves no record
    when.control_plane_killed().control_plane_started()
    assert f"adopted pod default/{new}" in mesh.cp.log()
    assert [p["metadata"]["name"] for p in mesh.pods()] == [new]
    assert mesh.cp.terminate() == 0
    assert find_leftovers(run_dir) == []
    assert not list((run_dir / "pods").glob("*.json"))


def test_when_the_xds_port_is_taken_the_old_data_plane_is_replaced(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.version("v1"), myapp.service(), myapp.subsets("v1"))
    run_dir = mesh.cp.state_dir / "run"
    old_names = {p["metadata"]["name"] for p in mesh.pods()}
    old_processes = set(find_leftovers(run_dir))
    host, _, port = mesh.cp_endpoints()["xds"].rpartition(":")
    when.control_plane_killed()
    with socket.socket() as blocker:  # something else took the xDS port meanwhile
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((host, int(port)))
        blocker.listen()
        when.control_plane_started().converges()
        # The old proxies could never reach the new xDS port: they were replaced
        assert mesh.cp_endpoints()["xds"] != f"{host}:{port}"
        assert not [pid for pid in old_processes if process_alive(pid)]
        new_names = {p["metadata"]["name"] for p in mesh.pods()}
        assert len(new_names) == 1 and not new_names & old_names
        assert not set(find_leftovers(run_dir)) & old_processes
        then.split_is({"v1": 10})

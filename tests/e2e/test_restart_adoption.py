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
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from meshpilot.server.leftovers import find_leftovers
from tests.e2e.conftest import Mesh, cp_endpoints, demo_deployment, service
from tests.e2e.test_proxy_status import GATEWAY, _alive, _wait_synced
from tests.e2e.traffic import destination_rule, wait_until

URL = "http://myapp:8080/"


def weights(v1: int, v2: int) -> str:
    return textwrap.dedent(f"""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: myapp}}
        spec:
          hosts: [myapp]
          http:
          - route:
            - {{destination: {{host: myapp, subset: v1}}, weight: {v1}}}
            - {{destination: {{host: myapp, subset: v2}}, weight: {v2}}}
        """)


class Load:
    """Requests to ``URL`` back to back through each of ``proxies``, one thread each,
    bounded by ``max_seconds``; every outcome is kept with its time."""

    def __init__(self, proxies: list[str], max_seconds: float = 90.0) -> None:
        self.ok: list[tuple[float, str, str]] = []  # (time, proxy, version)
        self.failures: list[tuple[float, str, str]] = []  # (time, proxy, what)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [
            threading.Thread(target=self._run, args=(p,), daemon=True) for p in proxies
        ]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def ok_between(self, t0: float, t1: float) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for t, proxy, _ in self.ok:
                if t0 <= t <= t1:
                    out[proxy] = out.get(proxy, 0) + 1
            return out

    def _run(self, proxy: str) -> None:
        with httpx.Client(proxy=proxy, trust_env=False, timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                now = time.time()
                try:
                    r = client.get(URL)
                except httpx.HTTPError as exc:
                    outcome = (now, proxy, f"{type(exc).__name__}: {exc}")
                    with self._lock:
                        self.failures.append(outcome)
                else:
                    with self._lock:
                        if r.status_code == 200:
                            self.ok.append((now, proxy, r.headers.get("x-version", "?")))
                        else:
                            self.failures.append((now, proxy, f"HTTP {r.status_code}"))
                time.sleep(0.01)


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


def test_a_restarted_control_plane_adopts_the_running_data_plane(mesh: Mesh) -> None:
    # Given a mesh with traffic split 80/20 between two versions
    mesh.apply(
        demo_deployment("myapp-v1", "v1", replicas=2),
        demo_deployment("myapp-v2", "v2"),
        service(),
        destination_rule(),
        weights(80, 20),
        GATEWAY,
    )
    mesh.converge()
    run_dir = mesh.cp.state_dir / "run"
    pods = {p["metadata"]["name"]: p for p in mesh.pods()}
    assert len(pods) == 3
    everyone = set(pods) | {"mesh-proxy", "istio-ingressgateway"}
    _wait_synced(mesh, everyone)
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
    endpoints_before = cp_endpoints(mesh.cp)

    # When the control plane is killed under steady load, stays down, and comes back
    with Load([mesh.mesh_proxy, sidecar]) as load:
        time.sleep(1.0)
        mesh.cp.kill()
        killed = time.time()
        time.sleep(3.0)
        back = time.time()
        mesh.cp.start()
        mesh.converge()
        _wait_synced(mesh, everyone)
        time.sleep(1.0)
        done = time.time()

    # Then not one request failed, before, while down, or after
    assert load.failures == [], load.failures[:10]
    down = load.ok_between(killed, back)
    assert down.get(mesh.mesh_proxy, 0) > 20 and down.get(sidecar, 0) > 20, down
    after = load.ok_between(back, done)
    assert after.get(mesh.mesh_proxy, 0) > 20 and after.get(sidecar, 0) > 20, after

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
    endpoints_after = cp_endpoints(mesh.cp)
    for key in ("xds", "mesh_proxy", "ingress"):
        assert endpoints_after[key] == endpoints_before[key], key
    assert "adopted pod" in mesh.cp.log()

    # and every proxy re-synced to a snapshot identical to the one it held
    for (proxy, kind), items in held.items():
        assert _dynamic(mesh, proxy, kind) == items, (proxy, kind)

    # and the restarted control plane is in charge: a weight change takes effect
    mesh.apply(weights(0, 100))
    mesh.converge()
    assert mesh.versions(URL, 20) == {"v2": 20}
    with httpx.Client(proxy=sidecar, trust_env=False, timeout=10) as client:
        assert {client.get(URL).headers.get("x-version") for _ in range(20)} == {"v2"}
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert client.get(f"http://{pods[client_pod]['status']['podIP']}:8080/").status_code == 200
        assert client.get(mesh.ingress + "/").headers["x-version"] == "v1"


def test_adopted_pods_are_supervised_and_rolled_and_a_graceful_stop_stops_all(mesh: Mesh) -> None:
    mesh.apply(demo_deployment("myapp-v1", "v1"), service(), destination_rule(versions=("v1",)))
    mesh.converge()
    run_dir = mesh.cp.state_dir / "run"
    (old,) = mesh.pods()
    name = old["metadata"]["name"]
    mesh.cp.kill()
    mesh.cp.start()
    mesh.converge()
    assert [p["metadata"]["name"] for p in mesh.pods()] == [name]
    record = _pod_records(run_dir)[name]

    # An adopted app that dies is restarted, as one the runtime started itself would be
    os.kill(record["containers"][0]["pid"], signal.SIGKILL)
    wait_until(
        lambda: (
            [(p["status"]["restartCount"], p["status"]["ready"]) for p in mesh.pods()]
            == [(1, True)]
        ),
        30,
        "the adopted app restarted",
    )
    mesh.converge()
    assert mesh.versions(URL, 10) == {"v1": 10}
    assert _pod_records(run_dir)[name]["containers"][0]["pid"] != record["containers"][0]["pid"]

    # A new template replaces the adopted pod by the usual rolling update
    mesh.apply(demo_deployment("myapp-v1", "v1", args="--latency-ms 1"))

    def rolled() -> str | None:
        pods = mesh.pods()
        if len(pods) == 1 and pods[0]["status"]["ready"] and pods[0]["metadata"]["name"] != name:
            return str(pods[0]["metadata"]["name"])
        return None

    new = wait_until(rolled, 60, "the adopted pod replaced by the new template")
    mesh.converge()
    assert mesh.versions(URL, 10) == {"v1": 10}

    # A graceful stop stops every pod and proxy, adopted or not, and leaves no record
    mesh.cp.kill()
    mesh.cp.start()
    assert f"adopted pod default/{new}" in mesh.cp.log()
    assert [p["metadata"]["name"] for p in mesh.pods()] == [new]
    assert mesh.cp.terminate() == 0
    assert find_leftovers(run_dir) == []
    assert not list((run_dir / "pods").glob("*.json"))


def test_when_the_xds_port_is_taken_the_old_data_plane_is_replaced(mesh: Mesh) -> None:
    mesh.apply(demo_deployment("myapp-v1", "v1"), service(), destination_rule(versions=("v1",)))
    mesh.converge()
    run_dir = mesh.cp.state_dir / "run"
    old_names = {p["metadata"]["name"] for p in mesh.pods()}
    old_processes = set(find_leftovers(run_dir))
    host, _, port = cp_endpoints(mesh.cp)["xds"].rpartition(":")
    mesh.cp.kill()
    with socket.socket() as blocker:  # something else took the xDS port meanwhile
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((host, int(port)))
        blocker.listen()
        mesh.cp.start()
        mesh.converge()
        # The old proxies could never reach the new xDS port: they were replaced
        assert cp_endpoints(mesh.cp)["xds"] != f"{host}:{port}"
        assert not [pid for pid in old_processes if _alive(pid)]
        new_names = {p["metadata"]["name"] for p in mesh.pods()}
        assert len(new_names) == 1 and not new_names & old_names
        assert not set(find_leftovers(run_dir)) & old_processes
        assert mesh.versions(URL, 10) == {"v1": 10}

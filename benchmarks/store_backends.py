"""The config store on etcd against SQLite, and how long a control-plane failover takes.

Starts a real single-member etcd (Debian's etcd-server) on loopback, in a temporary
directory, and measures in the same run:

  (1) store level, in this process: the latency of one-object commits (p50, p95) and the
      throughput of ``--batch``-object commits (objects/s), SqliteStore (a file with WAL
      and fsync on commit) against EtcdStore; the ratio etcd/SQLite.
  (2) API level: a control plane with ``--no-mesh`` on each store; the latency of
      one-object applies through its API (validation included; p50, p95) and the ratio.
  (3) failover: two ``--no-mesh`` replicas on the etcd; the leader is SIGKILLed and the
      time until the other says it leads, then until a change applied to it is
      committed (the next state change it makes), ``--failovers`` times.

What it cannot match, and says so: etcd here is one member on the same 2-vCPU machine
(a production cluster has three members on their own disks, and every commit waits for
a majority over the network), sharing the CPU with the client and the control plane.

Run:  .venv/bin/python benchmarks/store_backends.py [--singles 300] [--batch 100]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' etcd starter (tests/etcd_cluster.py)

from tests.etcd_cluster import Cluster, running  # noqa: E402

from meshpilot.store import ObjectKey, Put  # noqa: E402
from meshpilot.store.etcd import EtcdStore  # noqa: E402
from meshpilot.store.protocol import ConfigStore  # noqa: E402
from meshpilot.store.sqlite import SqliteStore  # noqa: E402

API = "/apis/meshpilot.io/v1"
LEADER = API + "/leader"


def body(name: str, revision: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}],
                     "revisionLabel": str(revision)}}


def key(name: str) -> ObjectKey:
    return ObjectKey("", "Service", "bench", name)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def store_level(store: ConfigStore, singles: int, batch: int, rounds: int) -> dict[str, float]:
    latencies = []
    for i in range(singles):
        started = time.perf_counter()
        store.commit([Put(body("one", i), key("one"))])
        latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    for r in range(rounds):
        store.commit([Put(body(f"b{i}", r), key(f"b{i}")) for i in range(batch)])
    elapsed = time.perf_counter() - started
    return {"p50": statistics.median(latencies), "p95": pct(latencies, 0.95),
            "throughput": batch * rounds / elapsed}


def service_yaml(name: str, revision: int) -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bench}}\n"
            f"spec:\n  selector: {{app: {name}, rev: r{revision}}}\n"
            "  ports: [{name: http, port: 8080}]\n")


def api_level(cp: ControlPlane, singles: int) -> dict[str, float]:
    latencies = []
    for i in range(singles):
        started = time.perf_counter()
        cp.apply(service_yaml("api", i))
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50": statistics.median(latencies), "p95": pct(latencies, 0.95)}


def wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout} s")
        time.sleep(0.02)


def failover(cluster: Cluster, base: Path, n: int) -> list[tuple[float, float]]:
    """(seconds to a new leader, seconds to its first committed change) per failover."""
    url = cluster.url + "/failover"
    args = ["--no-mesh", "--store", url]
    out = []
    replicas = [ControlPlane(_dir(base, f"r{i}"), server_args=args) for i in range(2)]
    try:
        for round_ in range(n):
            pair = list(replicas)
            wait(lambda pair=pair: any(r.api.get(LEADER).json()["leading"] for r in pair), 15)
            leader = next(r for r in replicas if r.api.get(LEADER).json()["leading"])
            other = next(r for r in replicas if r is not leader)
            killed = time.monotonic()
            leader.proc.kill()
            leader.proc.wait()
            wait(lambda other=other: other.api.get(LEADER).json()["leading"], 20)
            led = time.monotonic() - killed
            other.apply(service_yaml("after-failover", round_))
            out.append((led, time.monotonic() - killed))
            replicas = [other, ControlPlane(_dir(base, f"r{2 + round_}"), server_args=args)]
            leader.stop()
    finally:
        for r in replicas:
            r.stop()
    return out


def _dir(base: Path, name: str) -> Path:
    (base / name).mkdir()
    return base / name / "state"


def show(title: str, sqlite: dict[str, float], etcd: dict[str, float]) -> None:
    print(f"\n{title}")
    print(f"  {'':12} {'SQLite':>10} {'etcd':>10} {'etcd/SQLite':>12}")
    for name, value in sqlite.items():
        unit = "obj/s" if name == "throughput" else "ms"
        print(f"  {name + ' ' + unit:12} {value:10.2f} {etcd[name]:10.2f} "
              f"{etcd[name] / value:12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--api-singles", type=int, default=100)
    parser.add_argument("--failovers", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:
        with running(base / "etcd") as cluster:
            sqlite = SqliteStore(base / "bench.db")
            etcd = EtcdStore(cluster.endpoints, prefix="/bench/")
            try:
                show("(1) store commits", store_level(sqlite, args.singles, args.batch,
                                                      args.rounds),
                     store_level(etcd, args.singles, args.batch, args.rounds))
            finally:
                sqlite.close()
                etcd.close()
            results = []
            for name, extra in (("sqlite", []), ("etcd", ["--store", cluster.url + "/api"])):
                cp = ControlPlane(_dir(base, f"api-{name}"), server_args=["--no-mesh", *extra])
                try:
                    results.append(api_level(cp, args.api_singles))
                finally:
                    cp.stop()
            show("(2) one-object applies through the API", *results)
            times = failover(cluster, base, args.failovers)
            print("\n(3) failover, leader SIGKILLed (lease TTL 3 s):")
            for led, changed in times:
                print(f"  new leader after {led:.2f} s; its first change committed after "
                      f"{changed:.2f} s")
        print("\none etcd member on this machine, sharing its CPUs with the client and the "
              "control plane; a real cluster waits for a majority over the network")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

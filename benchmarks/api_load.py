"""API load: apply latency and throughput against the store's size, and how the API
answers a health poll while a large apply runs.

Starts the real control plane with ``--no-mesh`` (API, validation and the SQLite store;
no proxies, so what is measured is the config path a user's apply takes) and:

  (1) grows the store to 1, 1,000 and 10,000 objects (Services and VirtualServices of
      distinct hosts, applied in batches of ``--batch``); at each size, the latency of
      ``--singles`` one-object applies (p50, p95) and the throughput of one batch
      (objects/s). Ratios are to the first size, measured in the same run.
  (2) a ``--large``-object apply while a thread polls ``/healthz`` every 50 ms: the
      polls' latency during the apply against the same polls on an idle API.

Run:  .venv/bin/python benchmarks/api_load.py [--sizes 1,1000,10000] [--batch 500]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from harness import ControlPlane

API = "/apis/meshpilot.io/v1"


def objects(start: int, count: int, ns: str = "load") -> str:
    """``count`` Service + VirtualService pairs (2 objects each, hosts svc-N)."""
    docs = []
    for i in range(start, start + count // 2):
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  selector: {{app: svc-{i}}}
  ports: [{{name: http, port: 8080}}]
""")
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [svc-{i}]
  http:
  - timeout: 5s
    route: [{{destination: {{host: svc-{i}}}}}]
""")
    return "---\n".join(docs)


def timed_apply(cp: ControlPlane, text: str) -> float:
    began = time.perf_counter()
    cp.apply(text)
    return time.perf_counter() - began


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def polls_during(cp: ControlPlane, action: object, seconds: float | None = None
                 ) -> tuple[list[float], int]:
    """/healthz latencies (s) of polls every 50 ms while ``action()`` runs (or for
    ``seconds`` when there is none), and how many polls did not answer within 5 s."""
    latencies: list[float] = []
    missed = [0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            began = time.perf_counter()
            try:
                cp.api.get("/healthz", timeout=5.0)
                latencies.append(time.perf_counter() - began)
            except Exception:
                missed[0] += 1
            done.wait(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    if callable(action):
        action()
    else:
        time.sleep(seconds or 2.0)
    done.set()
    thread.join(timeout=10)
    return latencies, missed[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,1000,10000",
                        help="store sizes (objects) to measure at, ascending")
    parser.add_argument("--batch", type=int, default=500, help="objects per filling apply")
    parser.add_argument("--singles", type=int, default=20,
                        help="one-object applies timed at each size")
    parser.add_argument("--large", type=int, default=3000,
                        help="objects in the apply the health polls run beside")
    a = parser.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="meshpilot-bench-api-") as tmp:
        cp = ControlPlane(Path(tmp) / "state", server_args=["--no-mesh"])
        try:
            return run(cp, sizes, a)
        finally:
            cp.stop()


def run(cp: ControlPlane, sizes: list[int], a: argparse.Namespace) -> int:
    stored, next_host = 0, 0
    rows = []
    for size in sizes:
        while stored < size - 1:
            count = min(a.batch, size - 1 - stored)
            count += count % 2  # pairs
            cp.apply(objects(next_host, count))
            next_host += count // 2
            stored += count
        singles = []
        for i in range(a.singles):
            text = f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: probe-{size}-{i}, namespace: probes}}
data: {{n: "{i}"}}
"""
            singles.append(timed_apply(cp, text))
            stored += 1
        batch_s = timed_apply(cp, objects(next_host, a.batch))
        next_host += a.batch // 2
        stored += a.batch
        rows.append((size, statistics.median(singles), pct(singles, 0.95), a.batch / batch_s))
        print(f"  store ~{size:>6} objects: one-object apply p50 "
              f"{1000 * rows[-1][1]:7.1f} ms, p95 {1000 * rows[-1][2]:7.1f} ms; "
              f"batch of {a.batch}: {rows[-1][3]:7.0f} objects/s", flush=True)
    base = rows[0]
    print("\n(1) apply against the store's size (ratios to the first size, same run)")
    print("| store size | one-object apply p50 | p95 | ratio p50 | batch throughput | ratio |")
    print("|---|---|---|---|---|---|")
    for size, p50, p95, thr in rows:
        print(f"| {size:,} | {1000 * p50:.1f} ms | {1000 * p95:.1f} ms | {p50 / base[1]:.2f} x "
              f"| {thr:,.0f} obj/s | {thr / base[3]:.2f} x |")

    idle, idle_missed = polls_during(cp, None, seconds=2.0)
    big = objects(10_000_000, a.large)
    took: list[float] = []
    busy, busy_missed = polls_during(cp, lambda: took.append(timed_apply(cp, big)))
    print(f"\n(2) /healthz every 50 ms, idle vs during one {a.large}-object apply "
          f"({took[0]:.2f} s)")
    print("| | polls answered | p50 | p99 | max | not answered in 5 s |")
    print("|---|---|---|---|---|---|")
    for label, lat, missed in (("idle", idle, idle_missed), ("during the apply", busy,
                                                               busy_missed)):
        print(f"| {label} | {len(lat)} | {1000 * pct(lat, 0.5):.1f} ms | "
              f"{1000 * pct(lat, 0.99):.1f} ms | {1000 * max(lat):.1f} ms | {missed} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What one telemetry scrape of N proxies costs the control plane.

Run: ``.venv/bin/python benchmarks/scrape.py [--proxies 20] [--clusters 40] [--cycles 30]``

Starts ``--proxies`` real Envoys, each with ``--clusters`` static outbound clusters (so
its stats look like a sidecar's that calls that many services), then runs the control
plane's own scraper (:class:`meshpilot.telemetry.Scraper`) ``--cycles`` times over all
of them and prints the wall time of a cycle (median and worst) and the CPU and bytes of
one proxy read. No xDS server: the Envoys wait for one, their admin answers meanwhile.

``--baseline`` also starts as many Envoys again with their admin on a loopback TCP port
(how every proxy's admin listened before it moved to a Unix socket) and, between the
scraper's cycles, reads them the way the scraper did then (one shared keep-alive HTTP
client, same parse and relabel): both paths run in one process under the same load, so
the comparison holds on a busy machine. Only for this measurement: meshpilot never
starts an Envoy with a TCP admin.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from meshpilot.mesh.model import MeshSnapshot, ProxyNode
from meshpilot.proxy.bootstrap import bootstrap
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port
from meshpilot.telemetry import ProxyIdentity, Target
from meshpilot.telemetry.envoy_stats import STATS_PARAMS, STATS_PATH, parse_json
from meshpilot.telemetry.history import History
from meshpilot.telemetry.istio import relabel
from meshpilot.telemetry.scraper import Scraper
from meshpilot.telemetry.store import SeriesStore


def outbound_clusters(n: int) -> list[dict[str, Any]]:
    """``n`` static clusters named as the mesh names its outbound clusters."""
    out = []
    for i in range(n):
        name = f"outbound|8080||svc{i}.default.svc.cluster.local"
        out.append({"name": name, "type": "STATIC", "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {
                            "address": "127.0.0.1", "port_value": 9}}}}]}]}})
    return out


def start_proxies(work: Path, count: int, clusters: int, *, tcp_admin: bool = False
                  ) -> list[tuple[EnvoyProcess, ProxyNode, int]]:
    """``count`` Envoys, with their admin port (0: on its socket, as meshpilot runs them)."""
    xds_port = free_port()  # nothing listens there: the proxies keep waiting
    started = []
    for i in range(count):
        name = f"{'tcp' if tcp_admin else 'bench'}-{i}"
        node = ProxyNode(id=f"sidecar~127.0.0.1~{name}.default~default.svc.cluster.local",
                         kind="sidecar", namespace="default", ip="127.0.0.1",
                         workload="bench", name=name, labels={"app": "bench"})
        doc = bootstrap(node, xds_host="127.0.0.1", xds_port=xds_port)
        doc["static_resources"]["clusters"] += outbound_clusters(clusters)
        envoy = EnvoyProcess(doc, name=name, work_dir=work)
        port = free_port() if tcp_admin else 0
        if port:  # the baseline only: the admin as it listened before (see the module)
            envoy.bootstrap["admin"]["address"] = {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}
        started.append((envoy.start(wait=False), node, port))
    for envoy, _, port in started:
        if not (wait_tcp_admin(port) if port else envoy.wait_admin(30)):
            raise SystemExit(f"{envoy.name} did not start:\n{envoy.log_tail(20)}")
    return started


def wait_tcp_admin(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/ready", trust_env=False, timeout=1.0)
            return True
        except httpx.HTTPError:
            time.sleep(0.05)
    return False


class TcpBaseline:
    """The scraper's read as it was with TCP admin ports: one shared keep-alive client,
    the same parse and relabel, ``max_workers`` reads at a time."""

    def __init__(self, proxies: list[tuple[EnvoyProcess, ProxyNode, int]],
                 snapshot: MeshSnapshot) -> None:
        self.proxies = proxies
        self.snapshot = snapshot
        self.http = httpx.Client(trust_env=False, timeout=httpx.Timeout(1.0),
                                 limits=httpx.Limits(max_keepalive_connections=64))
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.caches: dict[str, dict[str, Any]] = {}
        self.cpu = 0.0
        self.reads = 0

    def _read(self, node: ProxyNode, port: int) -> float:
        cpu = time.thread_time()
        resp = self.http.get(f"http://127.0.0.1:{port}{STATS_PATH}", params=dict(STATS_PARAMS))
        resp.raise_for_status()
        raw = parse_json(resp.content)
        cache = self.caches.setdefault(node.name, {})
        list(relabel(ProxyIdentity.from_node(node), node, raw, self.snapshot, cache))
        return time.thread_time() - cpu

    def cycle(self) -> float:
        started = time.perf_counter()
        futures = [self.pool.submit(self._read, n, p) for _, n, p in self.proxies]
        for future in futures:
            self.cpu += future.result()
            self.reads += 1
        return time.perf_counter() - started

    def close(self) -> None:
        self.pool.shutdown()
        self.http.close()


def target(envoy: EnvoyProcess, node: ProxyNode) -> Target:
    assert envoy.pid is not None
    return Target(node.name, envoy.admin_socket, envoy.pid, ProxyIdentity.from_node(node), node)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--baseline", action="store_true",
                        help="also read as many TCP-admin Envoys the pre-socket way")
    args = parser.parse_args(argv)
    snapshot = MeshSnapshot(version=1, services={}, endpoints={})
    with tempfile.TemporaryDirectory(prefix="mp-scrape-") as tmp:
        proxies = start_proxies(Path(tmp), args.proxies, args.clusters)
        tcp = (start_proxies(Path(tmp), args.proxies, args.clusters, tcp_admin=True)
               if args.baseline else [])
        targets = [target(e, n) for e, n, _ in proxies]
        scraper = Scraper(lambda: targets, lambda: snapshot, SeriesStore(), History())
        baseline = TcpBaseline(tcp, snapshot) if tcp else None
        walls: list[float] = []
        tcp_walls: list[float] = []
        try:
            scraper.scrape_once()  # warm: connections open, caches filled
            if baseline is not None:
                baseline.cycle()
                baseline.cpu, baseline.reads = 0.0, 0
            cost0 = scraper.cost()
            for _ in range(args.cycles):
                started = time.perf_counter()
                scraper.scrape_once()
                walls.append(time.perf_counter() - started)
                if baseline is not None:
                    tcp_walls.append(baseline.cycle())
            cost = scraper.cost()
        finally:
            scraper.stop()
            if baseline is not None:
                baseline.close()
            for envoy, _, _ in [*proxies, *tcp]:
                envoy.stop(grace=2.0)
    if cost.errors:
        print(f"{cost.errors} reads failed", file=sys.stderr)
        return 1
    reads = max(1, cost.proxies_read - cost0.proxies_read)
    print(f"proxies: {args.proxies}, outbound clusters each: {args.clusters}, "
          f"cycles: {args.cycles}, bytes per read: {cost.bytes_read // max(1, cost.proxies_read)}")
    print(f"admin on a Unix socket: cycle median {1000 * statistics.median(walls):.1f} ms, "
          f"worst {1000 * max(walls):.1f} ms; "
          f"{1000 * (cost.cpu_seconds - cost0.cpu_seconds) / reads:.3f} ms CPU per read "
          f"(fetch + parse + relabel)")
    if baseline is not None:
        print(f"admin on TCP (before): cycle median {1000 * statistics.median(tcp_walls):.1f} ms, "
              f"worst {1000 * max(tcp_walls):.1f} ms; "
              f"{1000 * baseline.cpu / max(1, baseline.reads):.3f} ms CPU per read")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Added latency of the mesh data path at a fixed request rate.

Three paths to the same app process (a demo-app pod run by the real control plane,
1 kB responses), measured one after the other in the same run:

  (a) direct      load generator -> app
  (b) static      load generator -> Envoy (hand-written static config)
                                 -> Envoy (static) -> app          the physical floor
  (c) meshpilot   load generator -> mesh proxy (client sidecar, xDS)
                                 -> pod sidecar (xDS) -> app

The load generator is open-loop: request i is scheduled at t0 + i/rate and its latency
is measured from that scheduled time (no coordinated omission); requests go out over a
fixed pool of keep-alive connections (a request waits in a queue when every connection
is busy, and that wait counts). It is plain Python (threads, blocking sockets), so its own
overhead is in every figure; the *added* latency (path minus direct) cancels it out.

Run:  .venv/bin/python benchmarks/latency.py [--rate 1000] [--duration 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import gc
import os
import queue
import shutil
import socket
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import ControlPlane

from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port

ISTIO_P90_MS = 0.228
ISTIO_P99_MS = 0.298
ISTIO_NOTE = ("Istio 1.20 published: client+server sidecars add +0.228 ms p90, +0.298 ms p99 "
              "at 1000 req/s (1 kB, 16 connections, 2 proxy workers, mTLS, dedicated hosts)")


# --- open-loop load generator ----------------------------------------------------------


@dataclass
class LoadResult:
    name: str
    scheduled: int
    completed: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, from scheduled time
    service: list[float] = field(default_factory=list)  # seconds, from actual send
    send_lag: list[float] = field(default_factory=list)  # actual send - scheduled
    elapsed: float = 0.0
    achieved_rate: float = 0.0
    late_schedule: int = 0  # requests the scheduler itself put out > 1 ms late

    def pct(self, p: float, data: list[float] | None = None) -> float:
        values = sorted(self.latencies if data is None else data)
        if not values:
            return float("nan")
        k = min(len(values) - 1, max(0, round(p / 100.0 * len(values)) - 1))
        return values[k] * 1000.0


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bool]:
    """Read one HTTP/1.1 response (Content-Length framed); returns (status, close)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response headers")
        buf += chunk
    head = bytes(buf[:end]).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        lname = name.strip().lower()
        if lname == "content-length":
            length = int(value.strip())
        elif lname == "connection" and value.strip().lower() == "close":
            close = True
    total = end + 4 + length
    while len(buf) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        buf += chunk
    del buf[:total]
    return status, close


def run_load(name: str, addr: tuple[str, int], host_header: str, *, rate: float,
             duration: float, connections: int, warmup: float, timeout: float = 5.0,
             path: str = "/") -> LoadResult:
    """Open-loop load at ``rate`` for ``warmup + duration`` seconds; warm-up is dropped."""
    total = int(rate * (warmup + duration))
    skip = int(rate * warmup)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
               "User-Agent: meshpilot-bench\r\nAccept: */*\r\n\r\n").encode()
    lat: list[float | None] = [None] * total
    svc: list[float | None] = [None] * total
    lag: list[float | None] = [None] * total
    errors = [0]
    work: queue.SimpleQueue[tuple[int, float] | None] = queue.SimpleQueue()
    done_at = [0.0]
    lock = threading.Lock()

    def connect() -> socket.socket:
        sock = socket.create_connection(addr, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def worker() -> None:
        sock: socket.socket | None = None
        buf = bytearray()
        while True:
            item = work.get()
            if item is None:
                break
            i, sched = item
            try:
                if sock is None:
                    sock = connect()
                    buf.clear()
                sent = time.perf_counter()
                sock.sendall(request)
                status, close = _read_response(sock, buf)
                now = time.perf_counter()
                if status != 200:
                    raise ConnectionError(f"status {status}")
                lat[i], svc[i], lag[i] = now - sched, now - sent, sent - sched
                with lock:
                    done_at[0] = max(done_at[0], now)
                if close:
                    sock.close()
                    sock = None
            except (OSError, ValueError, IndexError):
                with lock:
                    errors[0] += 1
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    # A full garbage collection stalls every thread for milliseconds: not during the run.
    gc.collect()
    gc.disable()
    late = 0
    t0 = time.perf_counter() + 0.05
    hard_stop = t0 + (warmup + duration) * 1.5 + 5.0
    interval = 1.0 / rate
    issued = 0
    for i in range(total):
        target = t0 + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.001:
            late += 1
        if time.perf_counter() > hard_stop:
            break
        work.put((i, target))
        issued += 1
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join(timeout=max(1.0, hard_stop - time.perf_counter()) + timeout)
    gc.enable()
    measured = [x for x in lat[skip:issued] if x is not None]
    res = LoadResult(name=name, scheduled=issued - skip, completed=len(measured),
                     errors=errors[0], late_schedule=late)
    res.latencies = measured
    res.service = [x for x in svc[skip:issued] if x is not None]
    res.send_lag = [x for x in lag[skip:issued] if x is not None]
    start = t0 + skip * interval
    res.elapsed = max(1e-9, done_at[0] - start)
    res.achieved_rate = res.completed / res.elapsed
    return res


# --- the control plane and the static Envoys ------------------------------------------




def app_manifest(body_size: int) -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: bench-v1, namespace: default}}
        spec:
          replicas: 1
          selector: {{matchLabels: {{app: bench, version: v1}}}}
          template:
            metadata: {{labels: {{app: bench, version: v1}}}}
            spec:
              containers:
              - name: app
                command: [{sys.executable}, -m, meshpilot.demoapp]
                args: [--version, v1, --body-size, "{body_size}"]
                ports: [{{name: http, containerPort: 8080}}]
                readinessProbe:
                  httpGet: {{path: /healthz, port: http}}
                  periodSeconds: 1
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: bench, namespace: default}}
        spec:
          selector: {{app: bench}}
          ports: [{{name: http, port: 8080, targetPort: http}}]
        """)


def _static_cluster(name: str, host: str, port: int) -> dict[str, Any]:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host,
                                                         "port_value": port}}}}]}]},
    }


def static_envoy_bootstrap(listen_port: int, upstream: tuple[str, int]) -> dict[str, Any]:
    """The minimal Envoy: one HTTP listener, one route, one static cluster (HTTP/1.1)."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "AUTO",
        "route_config": {"name": "local", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "static_resources": {
            "listeners": [{
                "name": "in",
                "address": {"socket_address": {"address": "127.0.0.1",
                                               "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}],
            }],
            "clusters": [_static_cluster("upstream", *upstream)],
        },
    }


# --- reporting ----------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:8.3f}"


def report(results: list[LoadResult], args: argparse.Namespace) -> None:
    base = results[0]
    print()
    print(f"Open-loop load: {args.rate:g} req/s target, {args.duration:g} s measured per path "
          f"in {args.rounds} interleaved round(s) (+{args.warmup:g} s warm-up each), "
          f"{args.connections} keep-alive connections, "
          f"{args.body_size} B responses, Envoy concurrency {args.envoy_concurrency}")
    print("Latency in ms, from each request's scheduled send time.")
    print()
    head = (f"{'path':<34}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}"
            f"{'rate/s':>9}{'err':>5}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r.name:<34}{_fmt(r.pct(50))} {_fmt(r.pct(90))} {_fmt(r.pct(99))} "
              f"{_fmt(r.pct(99.9))} {_fmt(r.pct(100))} {r.achieved_rate:8.0f} {r.errors:4d}")
    print()
    head = f"{'added vs direct (ms)':<34}{'p50':>9}{'p90':>9}{'p99':>9}"
    print(head)
    print("-" * len(head))
    added: dict[str, dict[int, float]] = {}
    for r in results[1:]:
        added[r.name] = {p: r.pct(p) - base.pct(p) for p in (50, 90, 99)}
        a = added[r.name]
        print(f"{r.name:<34}{_fmt(a[50])} {_fmt(a[90])} {_fmt(a[99])}")
    print(f"{'Istio 1.20 (published, not run)':<34}{'':>9}{ISTIO_P90_MS:9.3f}{ISTIO_P99_MS:9.3f}")
    if len(results) == 3:
        s, m = added[results[1].name], added[results[2].name]
        print()
        print(f"{'ratio meshpilot / static':<34}"
              + "".join(f"{(m[p] / s[p] if s[p] > 0 else float('nan')):9.2f}"
                        for p in (50, 90, 99)))
        print(f"{'ratio meshpilot / Istio published':<34}{'':>9}"
              f"{m[90] / ISTIO_P90_MS:9.2f}{m[99] / ISTIO_P99_MS:9.2f}")
    print()
    print(f"Context: {ISTIO_NOTE}.")
    print("Here: everything (load generator, app, Envoys, control plane) shares one machine "
          f"with {os.cpu_count()} CPUs; plain HTTP/1.1, no mTLS.")
    print()
    print("Load generator health (same Python generator on every path):")
    for r in results:
        lag99 = r.pct(99, r.send_lag)
        svc50 = r.pct(50, r.service)
        print(f"  {r.name:<32} achieved {r.achieved_rate:7.1f} req/s of {args.rate:g} "
              f"({r.completed}/{r.scheduled} done, {r.errors} errors); send lag p99 "
              f"{lag99:.3f} ms; service time p50 {svc50:.3f} ms; "
              f"scheduler >1 ms late: {r.late_schedule}")
    short = [r for r in results if r.achieved_rate < 0.97 * args.rate or r.errors]
    if short:
        print("  WARNING: the Python load generator did not sustain the target rate on: "
              + ", ".join(r.name for r in short) + "; figures are at the achieved rate.")
    else:
        print(f"  The Python generator sustained {args.rate:g} req/s on every path.")
    tools = [t for t in ("wrk", "hey", "fortio") if shutil.which(t)]
    print(f"  External load tools installed: {', '.join(tools) if tools else 'none'} "
          "(wrk/hey/fortio not used).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s (default 1000)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per path, split over the rounds (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds, dropped")
    parser.add_argument("--connections", type=int, default=16,
                        help="keep-alive connections (default 16, as Istio's benchmark)")
    parser.add_argument("--body-size", type=int, default=1024, help="response bytes")
    parser.add_argument("--envoy-concurrency", type=int, default=1,
                        help="worker threads per Envoy, all paths (default 1, meshpilot's)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleave the paths in this many rounds (a, b, c, a, b, c...) "
                             "so slow drifts on a shared machine hit every path (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.connections < 1 or args.rounds < 1:
        parser.error("rate, duration, connections and rounds must be positive")

    tmp = Path(tempfile.mkdtemp(prefix="meshpilot-bench-latency-"))
    cp: ControlPlane | None = None
    envoys: list[EnvoyProcess] = []
    try:
        print(f"starting the control plane (state dir {tmp / 'state'}) ...", flush=True)
        cp = ControlPlane(tmp / "state", args.envoy_concurrency)
        cp.apply(app_manifest(args.body_size))
        cp.converge()
        pod = next(p for p in cp.pods() if p["status"]["ready"])
        app_ip = pod["status"]["podIP"]
        app_port = pod["status"]["ports"][0]["app_port"]
        print(f"app pod {pod['metadata']['name']} at {app_ip}:{app_port}; "
              f"mesh proxy {cp.endpoints['mesh_proxy']}", flush=True)

        server_port, client_port = free_port(), free_port()
        for name, port, upstream in (("static-server", server_port, (app_ip, app_port)),
                                     ("static-client", client_port, ("127.0.0.1", server_port))):
            proc = EnvoyProcess(static_envoy_bootstrap(port, upstream), name=name,
                                work_dir=tmp / "envoy", concurrency=args.envoy_concurrency)
            proc.start()
            envoys.append(proc)
            if not wait_port("127.0.0.1", port, timeout=15):
                raise RuntimeError(f"{name} did not listen; see {proc.log_path}")

        mesh_url = httpx.URL(cp.endpoints["mesh_proxy"])
        paths = [
            ("(a) direct to app", (app_ip, app_port)),
            ("(b) static Envoy x2 (floor)", ("127.0.0.1", client_port)),
            ("(c) meshpilot sidecars x2 (xDS)", (mesh_url.host, mesh_url.port or 80)),
        ]
        host_header = "bench:8080"
        # Check every path answers before measuring.
        for name, addr in paths:
            with httpx.Client(trust_env=False, timeout=10) as c:
                r = c.get(f"http://{addr[0]}:{addr[1]}/", headers={"Host": host_header})
                if r.status_code != 200 or r.headers.get("x-version") != "v1":
                    raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")

        runs: dict[str, list[LoadResult]] = {name: [] for name, _ in paths}
        for rnd in range(args.rounds):
            for name, addr in paths:
                print(f"round {rnd + 1}/{args.rounds}: {name} ...", flush=True)
                runs[name].append(run_load(
                    name, addr, host_header, rate=args.rate,
                    duration=args.duration / args.rounds,
                    connections=args.connections, warmup=args.warmup))
        merged: list[LoadResult] = []
        for name, rs in runs.items():
            m = LoadResult(name=name, scheduled=sum(r.scheduled for r in rs),
                           completed=sum(r.completed for r in rs),
                           errors=sum(r.errors for r in rs),
                           late_schedule=sum(r.late_schedule for r in rs))
            for r in rs:
                m.latencies += r.latencies
                m.service += r.service
                m.send_lag += r.send_lag
            m.elapsed = sum(r.elapsed for r in rs)
            m.achieved_rate = statistics.fmean(r.achieved_rate for r in rs)
            merged.append(m)
        report(merged, args)
        return 0
    finally:
        for proc in envoys:
            proc.stop(grace=2.0)
        if cp is not None:
            cp.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

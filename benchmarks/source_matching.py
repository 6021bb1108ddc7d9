"""Envoy's CPU per inbound request against the number of known callers.

Every inbound route configuration declares one virtual cluster per known source workload
(an exact match on ``x-meshpilot-source``, see ``meshpilot/xds/translate/telemetry.py``), so
the list grows with the mesh. This runs one Envoy (``--concurrency 1``) per list size
with a 1 kB direct response and that list, sends keep-alive requests whose source matches
the *last* virtual cluster (the worst case of a linear scan), and reads Envoy's CPU time
from ``/proc``. Baseline in the same run: the smallest list.

Run:  .venv/bin/python benchmarks/source_matching.py [--sources 2 2000] [--requests 20000]
          [--samples 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import process_cpu_seconds

from meshpilot.proxy.envoy import envoy_binary
from meshpilot.proxy.ports import free_port, wait_port

HEADER = "x-meshpilot-source"
BODY = 1000


def source(i: int) -> str:
    return f"caller{i}-v1|default|caller{i}|v1"


def bootstrap(port: int, sources: int) -> dict[str, Any]:
    vclusters = [{"name": f"caller{i}", "headers": [
        {"name": HEADER, "string_match": {"exact": source(i)}}]} for i in range(sources)]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "inbound",
        "route_config": {"name": "inbound", "virtual_hosts": [{
            "name": "inbound", "domains": ["*"], "virtual_clusters": vclusters,
            "routes": [{"match": {"prefix": "/"}, "direct_response": {
                "status": 200, "body": {"inline_string": "x" * BODY}}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": "inbound",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": hcm}]}]}]},
    }


def send(port: int, requests: int, caller: str) -> None:
    """``requests`` GETs on one keep-alive connection, each response read in full."""
    request = (f"GET / HTTP/1.1\r\nHost: inbound\r\n{HEADER}: {caller}\r\n"
               "user-agent: bench\r\naccept: */*\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        buf = b""
        for _ in range(requests):
            sock.sendall(request)
            while True:
                end = buf.find(b"\r\n\r\n")
                if end >= 0 and len(buf) >= end + 4 + BODY:
                    buf = buf[end + 4 + BODY:]
                    break
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("Envoy closed the connection")
                buf += chunk


def measure(sources: int, requests: int, samples: int, tmp: Path) -> list[float]:
    """Envoy's CPU microseconds per request, one figure per sample."""
    port = free_port()
    config = tmp / f"envoy-{sources}.json"
    config.write_text(json.dumps(bootstrap(port, sources)))
    proc = subprocess.Popen([envoy_binary(), "-c", str(config), "--concurrency", "1",
                             "-l", "error", "--base-id", str(os.getpid() % 10000 + sources)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port("127.0.0.1", port, timeout=30):
            raise SystemExit(f"Envoy with {sources} virtual clusters did not start")
        caller = source(sources - 1)
        send(port, requests // 10, caller)  # warm up
        out = []
        for _ in range(samples):
            before = process_cpu_seconds(proc.pid)
            send(port, requests, caller)
            out.append((process_cpu_seconds(proc.pid) - before) / requests * 1e6)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, nargs="+", default=[2, 2000],
                        help="virtual-cluster list sizes, the first is the baseline")
    parser.add_argument("--requests", type=int, default=20000, help="requests per sample")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args(argv)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / args.requests
    print(f"Envoy CPU per inbound request (us), the request matching the last virtual "
          f"cluster; {args.requests} requests per sample (resolution {tick_us:.1f} us)")
    with tempfile.TemporaryDirectory(prefix="meshpilot-bench-sources-") as tmp:
        results = []
        for n in args.sources:
            results.append((n, measure(n, args.requests, args.samples, Path(tmp))))
            time.sleep(0.5)
    base = statistics.median(results[0][1])
    for n, figures in results:
        med = statistics.median(figures)
        print(f"  {n:>6} sources: median {med:6.1f}  samples "
              + ", ".join(f"{f:.1f}" for f in figures) + f"   x{med / base:.2f} of the first")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

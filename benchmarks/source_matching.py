"""Envoy's work per inbound request against the number of known callers.

The inbound side counts every request by its caller (its counted source: see
``meshpilot/xds/translate/telemetry.py``), and the mesh may know thousands of callers.
This runs one inbound sidecar (one Envoy, ``--concurrency 1``, plaintext) in front of an
upstream Envoy answering 1 kB, per number N of known sources and per config:

- ``floor``: the translated inbound listener and its route, counting nothing;
- ``vclusters``: the design before 2026-12-07, one Envoy virtual cluster per counted source
  (claim + proof header matches, charged by the router), with its stats kept;
- ``meshpilot``: what the translation builds now (``listeners.inbound`` and
  ``inbound_route``: the lookup table of counted sources and the stats access logger).

Requests claim the *last* known source (the worst case of a linear scan), and go to the
upstream: a direct response would skip the router's virtual-cluster matching, which made
an earlier version of this benchmark measure nothing. The measure is Envoy's user-space
instructions per request under callgrind (load-independent, needs ``valgrind``) or, with
``--measure cpu``, its CPU time per request from ``/proc``.

Run:  .venv/bin/python benchmarks/source_matching.py [--sources 2 200 2000]
          [--configs floor vclusters meshpilot] [--requests 1000] [--measure instructions]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import json_format
from harness import process_cpu_seconds, stop_process

from meshpilot.mesh.model import InboundPort, ProxyNode
from meshpilot.mesh.sources import SOURCE_HEADER, counted_name
from meshpilot.proxy.bootstrap import regex_only_matcher
from meshpilot.proxy.envoy import envoy_binary
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.proxy.stats import stats_config
from meshpilot.security.policy import WorkloadAuthorization
from meshpilot.xds.translate import clusters, inbound_route, listeners
from meshpilot.xds.translate.tls import PEER_PRINCIPAL_HEADER
from meshpilot.xds.translate.workload_security import InboundSecurity

BODY = 1000
TD = "cluster.local"
VCLUSTER_STATS = r"^vhost\.[^.]+\.vcluster\..*\.upstream_rq_([0-9]{3}|[1-5]xx|time)$"
"""The stats the virtual-cluster design kept (its line of the inclusion list)."""


def source(i: int) -> str:
    return f"caller{i}-v1|default|caller{i}|v1|caller{i}"


def _dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _vclusters(n: int) -> list[rc.VirtualCluster]:
    """The previous design's virtual clusters: per source, proved by its certificate and
    in plaintext (the proof is the peer-principal header the listener writes)."""
    out = []
    for i in range(n):
        claim = rc.HeaderMatcher(name=SOURCE_HEADER, string_match={"exact": source(i)})
        proof = rc.HeaderMatcher(name=PEER_PRINCIPAL_HEADER, string_match={
            "exact": f"spiffe://{TD}/ns/default/sa/caller{i}"})
        absent = rc.HeaderMatcher(name=PEER_PRINCIPAL_HEADER, present_match=True,
                                  invert_match=True)
        out.append(rc.VirtualCluster(name=counted_name(source(i), True), headers=[claim, proof]))
        out.append(rc.VirtualCluster(name=counted_name(source(i), False),
                                     headers=[claim, absent]))
    return out


def bootstrap(config: str, n: int, port: int, app_port: int) -> dict[str, Any]:
    """The inbound side of a sidecar with ``n`` known sources, counting as ``config``."""
    node = ProxyNode(id="sidecar~127.0.0.1~bench-0.default~default.svc.cluster.local",
                     kind="sidecar", namespace="default", ip="127.0.0.1", workload="bench",
                     name="bench-0", labels={"app": "bench"},
                     inbound=(InboundPort(port, app_port),))
    security = InboundSecurity(TD, ((port, "DISABLE"),), WorkloadAuthorization())
    listener = listeners.inbound(node, node.inbound[0], security)
    route = inbound_route(port, [source(i) for i in range(n)], TD)
    if config != "meshpilot":
        route = listeners.inbound_route(port)
        if config == "vclusters":
            route.virtual_hosts[0].virtual_clusters.extend(_vclusters(n))
    (chain,) = listener.filter_chains
    manager = hcm.HttpConnectionManager()
    chain.filters[-1].typed_config.Unpack(manager)
    manager.ClearField("rds")
    manager.route_config.CopyFrom(route)
    if config != "meshpilot":  # the counting's listener part: the stats logger
        del manager.access_log[:]
    chain.filters[-1].typed_config.Pack(manager)
    stats = stats_config()
    if config == "vclusters":
        stats["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"].append(
            {"safe_regex": {"regex": VCLUSTER_STATS}})
    return {
        "static_resources": {"listeners": [_dict(listener)],
                             "clusters": [_dict(c) for c in clusters.inbound(node)]},
        **regex_only_matcher(stats),
    }


def upstream(port: int) -> dict[str, Any]:
    """The app: an Envoy answering every request with ``BODY`` bytes."""
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "app",
        "route_config": {"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [{
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": "x" * BODY}}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "static_resources": {"listeners": [{
            "name": "app",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": manager}]}]}]},
    }


def send(port: int, requests: int, caller: str) -> None:
    """``requests`` GETs on one keep-alive connection, each answered 200 and read in full."""
    request = (f"GET / HTTP/1.1\r\nHost: inbound\r\n{SOURCE_HEADER}: {caller}\r\n"
               "user-agent: bench\r\naccept: */*\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        buf = b""
        for _ in range(requests):
            sock.sendall(request)
            while True:
                end = buf.find(b"\r\n\r\n")
                if end >= 0 and len(buf) >= end + 4 + BODY:
                    if buf[9:12] != b"200":
                        raise RuntimeError(f"status {buf[:40]!r}")
                    buf = buf[end + 4 + BODY:]
                    break
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("Envoy closed the connection")
                buf += chunk


def _callgrind(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], capture_output=True,
                   timeout=60, check=False)


def _callgrind_total(out_dir: Path, pid: int) -> int:
    dumps = sorted(out_dir.glob(f"cg-{pid}.out.*"), key=lambda f: int(f.suffix[1:]))
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


def measure(config: str, n: int, app_port: int, args: argparse.Namespace, tmp: Path
            ) -> float:
    """Instructions (or CPU µs) of the inbound Envoy per request."""
    port = free_port()
    path = tmp / f"{config}-{n}.json"
    path.write_text(json.dumps(bootstrap(config, n, port, app_port)))
    out = tmp / f"cg-{config}-{n}"
    out.mkdir()
    command = [envoy_binary(), "-c", str(path), "--concurrency", "1", "-l", "error",
               "--disable-hot-restart"]
    if args.measure == "instructions":
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={out}/cg-%p.out", *command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port("127.0.0.1", port, timeout=180):
            raise SystemExit(f"the {config} Envoy with {n} sources did not start")
        caller = source(n - 1)
        send(port, 300, caller)  # warm up: connections, stats, route caches
        if args.measure == "cpu":
            before = process_cpu_seconds(proc.pid)
            send(port, args.requests, caller)
            return (process_cpu_seconds(proc.pid) - before) / args.requests * 1e6
        _callgrind(proc.pid, "-i", "on")
        _callgrind(proc.pid, "-z")
        send(port, args.requests, caller)
        _callgrind(proc.pid, "-d")
        time.sleep(0.5)
        return _callgrind_total(out, proc.pid) / args.requests
    finally:
        stop_process(proc, grace=30.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, nargs="+", default=[2, 200, 2000],
                        help="numbers of known sources")
    parser.add_argument("--configs", nargs="+", default=["floor", "vclusters", "meshpilot"],
                        choices=["floor", "vclusters", "meshpilot"])
    parser.add_argument("--requests", type=int, default=1000,
                        help="sequential keep-alive requests measured per figure")
    parser.add_argument("--measure", choices=["instructions", "cpu"], default="instructions")
    args = parser.parse_args(argv)
    if args.measure == "instructions" and shutil.which("valgrind") is None:
        parser.error("--measure instructions needs valgrind (Debian: apt-get install "
                     "valgrind); or use --measure cpu")
    unit = "instructions" if args.measure == "instructions" else "CPU us"
    print(f"Inbound Envoy, {unit} per request claiming the last of N known sources "
          f"({args.requests} sequential requests each):")
    print(f"  {'N':>6}" + "".join(f"{c:>14}" for c in args.configs))
    with tempfile.TemporaryDirectory(prefix="meshpilot-bench-sources-") as tmp_dir:
        tmp = Path(tmp_dir)
        app_port = free_port()
        (tmp / "app.json").write_text(json.dumps(upstream(app_port)))
        app = subprocess.Popen([envoy_binary(), "-c", str(tmp / "app.json"), "--concurrency",
                                "1", "-l", "error", "--disable-hot-restart",
                                "--base-id", str(os.getpid() % 10000)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_port("127.0.0.1", app_port, timeout=30):
                raise SystemExit("the upstream Envoy did not start")
            for n in args.sources:
                row = [measure(config, n, app_port, args, tmp) for config in args.configs]
                print(f"  {n:>6}" + "".join(f"{v:>14,.0f}" for v in row), flush=True)
        finally:
            stop_process(app)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Added latency of the mesh data path at a fixed request rate.

Four paths to the same app process (a pod run by the real control plane, 1 kB
responses), measured in interleaved rounds in the same run:

  (a) direct      load generator -> app
  (b) static      load generator -> Envoy (hand-written static config)
                                 -> Envoy (static) -> app          plaintext between them
  (t) static TLS  the same two static Envoys' configs, with mutual TLS between them:
                  the TLS meshpilot's sidecars speak (TLS 1.2-1.3, ECDSA P-256
                  certificates from meshpilot's CA code, Istio's ALPNs and suites)
  (c) meshpilot   load generator -> mesh proxy (client sidecar, xDS)
                                 -> pod sidecar (xDS) -> app   auto mTLS between them

(t) is the floor meshpilot's (c) is judged against: the same hops and the same TLS, none
of meshpilot's config. (t) against (b) is what TLS itself costs. ``--mesh-plaintext``
turns meshpilot's mTLS off (PeerAuthentication DISABLE), and (c) is judged against (b).
A check request first makes sure (c)'s hop really was mTLS (the sidecar vouched for the
caller's SPIFFE ID to the app) and (t)'s Envoys' ssl stats show what they negotiated.

Two load generators, so that neither one's own jitter is mistaken for the mesh's:

- ``python``: open-loop. Request i is due at t0 + i/rate and its latency counts from that
  due time (no coordinated omission); requests go out over a fixed pool of keep-alive
  connections, round robin, and a request that finds every connection busy waits, and
  that wait counts. One thread, non-blocking sockets and ``select`` (microsecond
  timeouts, 1 ns timer slack), GC off during a run: no thread hand-offs, no GIL, so the
  generator adds one wake-up per send and one per response and nothing else.
- ``wrk`` (Debian's ``wrk``, a C epoll client; ``apt-get install wrk``): closed loop with
  think time, each connection sends, waits for the answer, then sleeps so that all
  connections together make about the target rate. Latency counts from the actual send,
  so a stall longer than the think time is under-counted (coordinated omission); at
  this rate it is a cross-check of the Python figures, not a replacement.

``--app native`` replaces the demo app (Python, thread per connection) by an Envoy that
answers the same 1 kB with a direct response, so the proxies' own cost is not buried
under the app's jitter; the pod is still run, probed and routed to by the control plane.

Figures per round and path are percentiles of that round; a path's figure is the median
over rounds, with the [min-max] spread, and "added" is computed per round (path minus
direct in the same round) before the median is taken. The machine may be shared: the CPU
that other processes use during each run is measured (ForeignCpu), each round waits a
while for a quiet machine, and runs that were not quiet are left out of the figures
(the report says how many were kept). CPU and run-queue wait per request of every
process on the path are read from /proc, as a second view of what each hop costs.

``--instructions N`` measures something else, for the same paths: instructions per
request of (b)'s, (t)'s and (c)'s Envoys under callgrind. That count does not depend on the
machine's load, so it can tell whether meshpilot's configuration costs more than the
static floor when the latency figures are too noisy to.

Run:  .venv/bin/python benchmarks/latency.py [--rate 1000] [--rounds 5] [--round-seconds 4]
      .venv/bin/python benchmarks/latency.py --app native --instructions 1000
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import itertools
import json
import os
import re
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import ControlPlane, keep_or_remove

from meshpilot.proxy.admin import AdminClient
from meshpilot.proxy.envoy import EnvoyProcess, envoy_binary
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.security import DEFAULT_TRUST_DOMAIN, load_or_create_self_signed_ca
from meshpilot.security.files import write_private
from meshpilot.security.workload_certs import CredentialSubject, WorkloadCertificates
from meshpilot.xds.translate.tls import (
    DOWNSTREAM_ALPNS,
    ISTIO_ALPNS,
    ISTIO_CIPHER_SUITES,
    PEER_PRINCIPAL_HEADER,
)

ISTIO_P90_MS = 0.228
ISTIO_P99_MS = 0.298
ISTIO_NOTE = ("Istio 1.20 published: client+server sidecars add +0.228 ms p90, +0.298 ms p99 "
              "at 1000 req/s (1 kB, 16 connections, 2 proxy workers, mTLS, dedicated hosts)")
ISTIO_CONDITIONS: tuple[tuple[str, float], ...] = (
    ("rate", 1000.0), ("connections", 16), ("body_size", 1024), ("envoy_concurrency", 2))
"""The conditions of Istio's published figures that are options here (also: HTTP/1.1 and
mTLS on, which the defaults give)."""
ISTIO_GAPS = (
    "one shared machine for the generator, the app, the Envoys and the control plane "
    "(Istio: dedicated nodes, a network between them); our own load generator (Istio: "
    "fortio); meshpilot's telemetry in the sidecars (Istio: its stats and "
    "metadata-exchange filters)")
"""Where this script cannot match the conditions of Istio's published figures."""
MESH_PLAINTEXT = """---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: DISABLE}}
"""
"""Applied with --mesh-plaintext: no mTLS to or from the namespace's sidecars."""
FLOOR_MARGIN = 1.05  # the target: meshpilot's added latency within 5% of the static floor's
PCTS: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)
HOST_HEADER = "bench:8080"
CHECK_PATH = "/bench-check"
CHECK_HEADER = "x-bench-peer-principal"
DIRECT = "(a) direct to app"
STATIC = "(b) static Envoy x2, plaintext"
STATIC_TLS = "(t) static Envoy x2, mTLS"
MESH = "(c) meshpilot sidecars x2 (xDS)"
PATH_NAMES = (DIRECT, STATIC, STATIC_TLS, MESH)
RATIOS = ((MESH, STATIC_TLS, "(c)/(t)"), (MESH, STATIC, "(c)/(b)"),
          (STATIC_TLS, STATIC, "(t)/(b)"))
"""Pairs of paths whose added figures are printed as ratios: meshpilot against the static
pair that speaks the same TLS (the like-for-like floor while meshpilot's sidecars speak
mTLS, their default), meshpilot against the plaintext pair, and what TLS itself costs."""


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (seconds) in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100.0 * len(ordered)) - 1))
    return ordered[k] * 1000.0


@dataclass
class RoundResult:
    """One generator on one path for one round."""

    path: str
    generator: str
    pct: dict[float, float]  # ms
    max_ms: float
    scheduled: int
    completed: int
    errors: int
    achieved_rate: float
    send_lag_p99: float = float("nan")  # ms, python generator only
    service_p50: float = float("nan")  # ms, from the actual send
    cpu_s: dict[str, tuple[float, ...]] = field(default_factory=dict)  # user, system, wait s
    mean_ms: float = float("nan")
    load: float = 0.0  # 1-minute load average when the round ended
    foreign: float = float("nan")  # CPUs used by processes not ours (and steal) meanwhile
    quiet: bool = True  # foreign <= the --quiet threshold


# --- the Python open-loop generator ---------------------------------------------------


def _low_timer_slack() -> None:
    """Ask the kernel to wake this process on time (PR_SET_TIMERSLACK = 29, 1 ns).

    The default slack (50 us) lets the kernel delay our select() timeouts to batch
    wake-ups; that lateness would be counted as latency on every path. Children started
    afterwards (wrk) inherit it; the mesh processes were started before and keep theirs.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)


class _Conn:
    __slots__ = ("buf", "due", "index", "need", "sent", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.index = -1
        self.due = 0.0
        self.sent = 0.0
        self.need = -1


def _connect(addr: tuple[str, int], timeout: float) -> _Conn:
    sock = socket.create_connection(addr, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return _Conn(sock)


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def _complete(c: _Conn) -> bool:
    """Whether ``c.buf`` holds one whole Content-Length framed response (no pipelining)."""
    if c.need < 0:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        m = _CONTENT_LENGTH.search(c.buf, 0, end + 2)
        c.need = end + 4 + (int(m.group(1)) if m else 0)
    return len(c.buf) >= c.need


def run_open_loop(name: str, addr: tuple[str, int], *, rate: float, duration: float,
                  warmup: float, connections: int, timeout: float = 5.0,
                  on_measure: Callable[[], None] | None = None,
                  on_done: Callable[[], None] | None = None) -> RoundResult:
    """Open-loop load at ``rate`` for ``warmup + duration`` seconds; warm-up is dropped.

    ``on_measure`` is called once, when the first measured request is due (after the
    warm-up, on the same warm connections): the caller starts its CPU accounting there;
    ``on_done`` after the last response, before the connections close (so that the
    app's per-connection threads are still there to be counted).

    Everything happens on this one thread: sends at their due times (select's timeout is
    the time to the next one), responses as select reports them. Connections are used
    round robin (free ones queue FIFO) as a per-connection-paced client would use them.
    """
    total = int(rate * (warmup + duration))
    skip = int(rate * warmup)
    request = (f"GET / HTTP/1.1\r\nHost: {HOST_HEADER}\r\n"
               "User-Agent: meshpilot-bench\r\nAccept: */*\r\n\r\n").encode()
    lat: list[float] = [-1.0] * total
    svc: list[float] = [-1.0] * total
    lag: list[float] = [-1.0] * total
    errors = 0
    free: deque[_Conn] = deque(_connect(addr, timeout) for _ in range(connections))
    busy: dict[int, _Conn] = {}
    pending: deque[int] = deque()
    interval = 1.0 / rate
    perf = time.perf_counter
    gc.collect()
    gc.disable()  # a full collection would stall the only thread for milliseconds
    t0 = perf() + 0.05
    hard_stop = t0 + (warmup + duration) * 1.5 + timeout
    last_done = t0
    next_i = 0
    try:
        while True:
            now = perf()
            if now > hard_stop:
                break
            while next_i < total and t0 + next_i * interval <= now:
                if next_i == skip and on_measure is not None:
                    on_measure()
                pending.append(next_i)
                next_i += 1
            while pending and free:
                i = pending.popleft()
                c = free.popleft()
                c.index, c.due, c.need = i, t0 + i * interval, -1
                c.buf.clear()
                c.sent = perf()
                try:
                    if c.sock.send(request) != len(request):
                        raise OSError("short send")
                except OSError:
                    errors += 1
                    c.sock.close()
                    free.append(_connect(addr, timeout))
                    continue
                busy[c.sock.fileno()] = c
            if next_i >= total and not busy and not pending:
                break
            wait = t0 + next_i * interval - perf() if next_i < total else 0.05
            wait = min(max(wait, 0.0), 0.05)
            if not busy:
                if wait > 0:
                    time.sleep(wait)
                continue
            readable, _, _ = select.select(list(busy), [], [], wait)
            for fd in readable:
                c = busy[fd]
                try:
                    chunk = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:  # closed: count it, replace the connection
                    errors += 1
                    del busy[fd]
                    c.sock.close()
                    free.append(_connect(addr, timeout))
                    continue
                c.buf += chunk
                if not _complete(c):
                    continue
                done = perf()
                del busy[fd]
                if c.buf[9:12] == b"200":
                    i = c.index
                    lat[i], svc[i], lag[i] = done - c.due, done - c.sent, c.sent - c.due
                    last_done = done
                else:
                    errors += 1
                free.append(c)
            stale = [fd for fd, c in busy.items() if perf() - c.sent > timeout]
            for fd in stale:
                errors += 1
                busy.pop(fd).sock.close()
                free.append(_connect(addr, timeout))
    finally:
        gc.enable()
        if on_done is not None:
            on_done()
        for c in [*free, *busy.values()]:
            c.sock.close()
    measured = [x for x in lat[skip:next_i] if x >= 0]
    elapsed = max(1e-9, last_done - (t0 + skip * interval))
    return RoundResult(
        path=name, generator="python", pct={p: percentile(measured, p) for p in PCTS},
        mean_ms=statistics.fmean(measured) * 1000.0 if measured else float("nan"),
        max_ms=percentile(measured, 100.0), scheduled=next_i - skip, completed=len(measured),
        errors=errors, achieved_rate=len(measured) / elapsed,
        send_lag_p99=percentile([x for x in lag[skip:next_i] if x >= 0], 99.0),
        service_p50=percentile([x for x in svc[skip:next_i] if x >= 0], 50.0))


# --- wrk, the cross-check -------------------------------------------------------------

# Think time before each request (mean `think` ms, see run_wrk for how it is chosen);
# done() prints wrk's own latency percentiles (it keeps microseconds).
WRK_SCRIPT = textwrap.dedent("""\
    local think = 0
    function init(args)
      think = tonumber(args[1])
      math.randomseed(tonumber(args[2]))
    end
    function delay()
      -- uniform in [0, 2 x think]: the connections drift out of phase instead of
      -- sending in bursts of `connections` at a time; wrk takes whole milliseconds
      return math.floor(math.random() * 2 * think + 0.5)
    end
    function done(summary, latency, requests)
      local e = summary.errors
      io.write(string.format("MESHPILOT requests %d duration_us %d errors %d\\n",
        summary.requests, summary.duration,
        e.connect + e.read + e.write + e.status + e.timeout))
      for _, p in ipairs({50, 90, 99, 99.9}) do
        io.write(string.format("MESHPILOT p %g %d\\n", p, latency:percentile(p)))
      end
      io.write(string.format("MESHPILOT max %d mean %d\\n", latency.max, latency.mean))
    end
    """)



def run_wrk(name: str, addr: tuple[str, int], script: Path, *, think_ms: float,
            seconds: int, connections: int, seed: int = 1) -> RoundResult:
    """One wrk run (one thread, ``connections`` keep-alive connections, mean think time
    ``think_ms`` before each request)."""
    url = f"http://{addr[0]}:{addr[1]}/"
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
           "-H", f"Host: {HOST_HEADER}", "-s", str(script), url, "--",
           f"{think_ms:.3f}", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                         stdin=subprocess.DEVNULL)
    pct: dict[float, float] = {}
    requests = errs = 0
    duration_us = 1
    max_ms = mean_ms = float("nan")
    for line in out.stdout.splitlines():
        parts = line.split()
        if not parts or parts[0] != "MESHPILOT":
            continue
        if parts[1] == "requests":
            requests, duration_us, errs = int(parts[2]), int(parts[4]), int(parts[6])
        elif parts[1] == "p":
            pct[float(parts[2])] = int(parts[3]) / 1000.0
        elif parts[1] == "max":
            max_ms, mean_ms = int(parts[2]) / 1000.0, int(parts[4]) / 1000.0
    if out.returncode != 0 or not pct:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout} {out.stderr}")
    return RoundResult(path=name, generator="wrk", pct=pct, max_ms=max_ms, mean_ms=mean_ms,
                       scheduled=requests, completed=requests - errs, errors=errs,
                       achieved_rate=requests / (duration_us / 1e6))


# --- the app, the static Envoys -------------------------------------------------------


def app_manifest(body_size: int, app: str, work_dir: Path) -> str:
    if app == "native":
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-native-app",
                str(work_dir), "--body-size", str(body_size)]
    else:
        argv = [sys.executable, "-m", "meshpilot.demoapp", "--version", "v1",
                "--body-size", str(body_size)]
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
                command: {json.dumps(argv)}
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


def _hcm(route_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "AUTO",
        "route_config": route_config,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }


def _listener(host: str, port: int, route_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "in",
        "address": {"socket_address": {"address": host, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": _hcm(route_config)}]}],
    }


def static_envoy_bootstrap(listen_port: int, upstream: tuple[str, int], *,
                           downstream_tls: dict[str, Any] | None = None,
                           upstream_tls: dict[str, Any] | None = None) -> dict[str, Any]:
    """The minimal Envoy: one HTTP listener, one route, one static cluster (HTTP/1.1);
    with ``downstream_tls`` its listener terminates that TLS, with ``upstream_tls`` its
    cluster originates it (transport sockets from :func:`static_mtls_sockets`)."""
    route = {"name": "local", "virtual_hosts": [{
        "name": "all", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]}
    listener = _listener("127.0.0.1", listen_port, route)
    if downstream_tls is not None:
        listener["filter_chains"][0]["transport_socket"] = downstream_tls
    cluster: dict[str, Any] = {
        "name": "upstream", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "upstream", "endpoints": [{
            "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": upstream[0], "port_value": upstream[1]}}}}]}]},
    }
    if upstream_tls is not None:
        cluster["transport_socket"] = upstream_tls
    return {"static_resources": {"listeners": [listener], "clusters": [cluster]}}


# --- the static mTLS pair: the same TLS as meshpilot's sidecars, from files -----------

STATIC_SNI = "outbound|8080||bench.default.svc.cluster.local"
"""What the static client sends as SNI: a cluster name, as meshpilot's auto mTLS does."""
TLS_SOCKET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."


@dataclass(frozen=True)
class TlsFiles:
    """One static Envoy's credential as files: its chain, its key (mode 0600) and the
    roots it verifies its peer against, and the SPIFFE ID its certificate carries."""

    chain: Path
    key: Path
    roots: Path
    identity: str


def static_tls_files(directory: Path) -> tuple[TlsFiles, TlsFiles]:
    """(client, server) credentials for the static mTLS pair, issued by meshpilot's own CA
    code (a self-signed ECDSA P-256 root made in ``directory``, workload certificates for
    two service accounts), so both pairs present certificates of the same kind and size.

    Every file is private (0600, in a 0700 directory): the keys are real keys, if only
    for a benchmark's lifetime.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = load_or_create_self_signed_ca(directory / "ca")
    subjects = [CredentialSubject(f"static-{role}", "default", f"static-{role}")
                for role in ("client", "server")]
    issued = WorkloadCertificates(ca).current(subjects)
    out = []
    for subject in subjects:
        cred = issued[subject.node_id]
        files = TlsFiles(directory / f"{subject.node_id}-chain.pem",
                         directory / f"{subject.node_id}-key.pem",
                         directory / f"{subject.node_id}-roots.pem", cred.identity.uri)
        for path, data in ((files.chain, cred.chain_pem), (files.key, cred.key_pem),
                           (files.roots, cred.roots_pem)):
            write_private(path, data)
        out.append(files)
    return out[0], out[1]


def _common_tls(own: TlsFiles, alpns: Sequence[str], peer: dict[str, Any],
                ciphers: Sequence[str] = ()) -> dict[str, Any]:
    params: dict[str, Any] = {"tls_minimum_protocol_version": "TLSv1_2",
                              "tls_maximum_protocol_version": "TLSv1_3"}
    if ciphers:
        params["cipher_suites"] = list(ciphers)
    return {
        "tls_params": params,
        "alpn_protocols": list(alpns),
        "tls_certificates": [{"certificate_chain": {"filename": str(own.chain)},
                              "private_key": {"filename": str(own.key)}}],
        "validation_context": {"trusted_ca": {"filename": str(own.roots)},
                               "match_typed_subject_alt_names": [
                                   {"san_type": "URI", "matcher": peer}]},
    }


def static_mtls_sockets(client: TlsFiles, server: TlsFiles
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the client's upstream socket, the server's downstream socket) of the static mTLS
    pair: what meshpilot's sidecars negotiate (``xds/translate/tls.py``), written by hand
    with files instead of SDS. TLS 1.2 to 1.3; the client offers Istio's mesh ALPNs and a
    cluster name as SNI and accepts only the server's SPIFFE ID; the server offers h2 and
    http/1.1, Istio's TLS 1.2 suites, and requires a client certificate with a SPIFFE ID
    of the trust domain. Left out on purpose: the TLS inspector and the plaintext chain of
    meshpilot's PERMISSIVE inbound port (they cost per connection, and these connections
    are kept alive), and every HTTP filter: the floor is TLS and routing, nothing else."""
    upstream = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": TLS_SOCKET_TYPE + "UpstreamTlsContext", "sni": STATIC_SNI,
        "common_tls_context": _common_tls(client, ISTIO_ALPNS, {"exact": server.identity})}}
    downstream = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": TLS_SOCKET_TYPE + "DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": _common_tls(
            server, DOWNSTREAM_ALPNS, {"prefix": f"spiffe://{DEFAULT_TRUST_DOMAIN}/"},
            ISTIO_CIPHER_SUITES)}}
    return upstream, downstream


def native_app_bootstrap(host: str, port: int, body_size: int) -> dict[str, Any]:
    """An Envoy that answers every request with ``body_size`` bytes, as the demo app
    would (200, ``x-version: v1``), but with no interpreter in the way."""
    answer = {"status": 200, "body": {"inline_string": "x" * body_size}}
    route = {"name": "app", "virtual_hosts": [{
        "name": "app", "domains": ["*"],
        "routes": [
            # The path check's request only: says which peer identity the pod's sidecar
            # vouched for (meshpilot's mTLS chain sets the header), so a run shows that
            # (c) really spoke mTLS. Measured requests take the next route and get the
            # same bytes on every path.
            {"match": {"path": CHECK_PATH}, "direct_response": answer,
             "response_headers_to_add": [{"header": {
                 "key": CHECK_HEADER, "value": f"%REQ({PEER_PRINCIPAL_HEADER})%"}}]},
            {"match": {"prefix": "/"}, "direct_response": answer}],
        "response_headers_to_add": [
            {"header": {"key": "x-version", "value": "v1"}},
            {"header": {"key": "content-type", "value": "application/json"}}],
    }]}
    return {"static_resources": {"listeners": [_listener(host, port, route)]}}


def serve_native_app(work_dir: Path, body_size: int) -> int:
    """The pod's container with ``--app native``: become an Envoy on $POD_IP:$PORT."""
    host, port = os.environ.get("POD_IP", "127.0.0.1"), int(os.environ["PORT"])
    config = work_dir / f"native-app-{port}.json"
    config.write_text(json.dumps(native_app_bootstrap(host, port, body_size)))
    binary = envoy_binary()
    os.execv(binary, [binary, "-c", str(config), "--disable-hot-restart", "--concurrency", "1",
                      "-l", "warning"])
    return 1  # not reached


# --- processes: who listens where, CPU they use, what config they hold ----------------


def listening_pid(ip: str, port: int) -> int | None:
    """The pid of the process with a listening TCP socket on ``ip:port`` (from /proc)."""
    want = f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == want and cols[3] == "0A":
            inodes.add(f"socket:[{cols[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(user, system, run-queue wait) seconds of ``pid``.

    User and system cover all its threads, dead ones included (/proc/<pid>/stat). They
    are kept apart because on this kind of machine the kernel's share (context switches,
    wake-ups, loopback TCP) is a large part of a proxy's cost and is the same whatever
    its configuration, while what a filter or a stat costs shows in user time. The wait is
    the time its threads were runnable but not running (schedstat, live threads only):
    time a request spent queued for a CPU, which is what a busy machine adds to latency.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan"), float("nan"), float("nan")
    fields = stat[stat.rindex(")") + 2:].split()
    wait = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            wait += int(task.read_text().split()[1])
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK, wait / 1e9


def _busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine, steal included (/proc/stat)."""
    with open("/proc/stat") as fh:
        cols = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = cols
    return (user + nice + system + irq + softirq + steal) / _TICK


def _tree_seconds(root: int) -> float:
    """CPU seconds of ``root`` and every descendant (plus what its reaped children used)."""
    parent: dict[int, int] = {}
    spent: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(proc.name)
        parent[pid] = int(fields[1])
        spent[pid] = (int(fields[11]) + int(fields[12])) / _TICK
        if pid == root:
            spent[pid] += (int(fields[13]) + int(fields[14])) / _TICK
    ours = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return sum(spent.get(pid, 0.0) for pid in ours)


class ForeignCpu:
    """CPU used meanwhile by processes that are not this benchmark's (its own process,
    the control plane, the pods, the Envoys, wrk), steal time included, in CPUs.

    The machine may be shared (another engineer's test suite): a run during which others
    used the CPUs is not a measurement of the mesh, and is set apart in the report.
    """

    def __init__(self) -> None:
        self.root = os.getpid()
        self.t = time.monotonic()
        self.busy = _busy_seconds()
        self.tree = _tree_seconds(self.root)

    def cpus(self) -> float:
        wall = max(1e-3, time.monotonic() - self.t)
        busy, tree = _busy_seconds() - self.busy, _tree_seconds(self.root) - self.tree
        return max(0.0, busy - tree) / wall


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Sample others' CPU over 1 s until it is at most ``threshold`` or ``max_wait``
    seconds have passed; returns the last sample."""
    deadline = time.monotonic() + max_wait
    while True:
        probe = ForeignCpu()
        time.sleep(1.0)
        used = probe.cpus()
        if used <= threshold or time.monotonic() >= deadline:
            return used
        print(f"  others use {used:.2f} CPUs; waiting for a quiet machine ...", flush=True)
        time.sleep(2.0)


def admin_of(pid: int) -> AdminClient | None:
    """A client for an Envoy's admin socket, named in the bootstrap its ``-c`` reads."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for flag, value in itertools.pairwise(argv):
        if flag == b"-c":
            try:
                doc = json.loads(Path(value.decode()).read_text())
                return AdminClient(doc["admin"]["address"]["pipe"]["path"], timeout=10)
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None


def http_filters(config_dump: dict[str, Any]) -> list[str]:
    """``listener: filter, filter, ...`` for every HTTP connection manager in a dump."""
    out = []
    for section in config_dump.get("configs", []):
        for key in ("static_listeners", "dynamic_listeners"):
            for item in section.get(key, []):
                listener = (item.get("active_state") or item).get("listener", {})
                for chain in listener.get("filter_chains", []):
                    for f in chain.get("filters", []):
                        hcm = f.get("typed_config", {})
                        if "http_filters" in hcm:
                            names = [h["name"].rsplit(".", 1)[-1] for h in hcm["http_filters"]]
                            out.append(f"{listener.get('name')}: {', '.join(names)}")
    return out


def upstream_connections(pid: int) -> dict[str, int]:
    """Connections each Envoy has opened so far to its upstream (the next hop), per
    cluster, and requests it sent there: a pool that reconnects per request would show
    here long before it shows in latency."""
    admin = admin_of(pid)
    if admin is None:
        return {}
    with admin:
        stats = admin.stats(r"^cluster\..*\.upstream_(cx|rq)_total$", "json")
    out: dict[str, int] = {}
    for item in stats.get("stats", []):
        name = str(item.get("name", ""))
        if "xds-grpc" in name or "value" not in item:
            continue
        key = "connections" if name.endswith("upstream_cx_total") else "requests"
        out[key] = out.get(key, 0) + int(item["value"])
    return out


def check_paths(addrs: dict[str, tuple[str, int]], *, mesh_mtls: bool) -> None:
    """Every path answers 200 from our app, and the hop into the pod was what the
    comparison assumes: mTLS on (c) (the sidecar vouched for a SPIFFE ID) unless meshpilot's
    mTLS is turned off, and no meshpilot identity on the other paths. A run whose (c)
    silently fell back to plaintext would compare the wrong things, so it stops here.
    (``PEER_PRINCIPAL_HEADER`` is what a sidecar's inbound mTLS chain sets to the caller's
    SPIFFE ID: the app seeing it proves the hop was mTLS.)"""
    for name, addr in addrs.items():
        with httpx.Client(trust_env=False, timeout=10) as c:
            r = c.get(f"http://{addr[0]}:{addr[1]}{CHECK_PATH}", headers={"Host": HOST_HEADER})
        if r.status_code != 200 or r.headers.get("x-version") != "v1":
            raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")
        peer = r.headers.get(CHECK_HEADER, "")  # the native app says it in a header ...
        if not peer and r.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError, AttributeError):  # ... the demo app in JSON
                peer = r.json().get("headers", {}).get(PEER_PRINCIPAL_HEADER, "")
        peer = "" if peer == "-" else peer
        if (name == MESH and mesh_mtls) != peer.startswith("spiffe://"):
            raise RuntimeError(f"{name}: the app saw peer identity {peer or 'none'!r}; "
                               f"expected {'one' if name == MESH and mesh_mtls else 'none'}")
        print(f"  {name}: 200 from the app; peer identity seen by the app: {peer or 'none'}",
              flush=True)


def print_tls_stats(envoys: dict[str, int | None]) -> None:
    """What the static mTLS pair negotiated, from its Envoys' ``ssl`` stats: handshakes,
    version, cipher, curve, signature algorithm. (meshpilot's Envoys keep a short stats
    list without these; their TLS is configured with the same parameters.)"""
    for label, pid in envoys.items():
        admin = admin_of(pid) if pid else None
        if admin is None:
            continue
        with admin:
            stats = admin.stats(r"\.ssl\.", "json")
        seen: dict[str, int] = {}
        for item in stats.get("stats", []):
            name, value = str(item.get("name", "")), item.get("value")
            if not isinstance(value, int) or not value or "admin" in name:
                continue
            key = name.split(".ssl.", 1)[1]
            seen[key] = seen.get(key, 0) + value
        kinds = [k for k in seen if k.split(".")[0] in ("versions", "ciphers", "curves",
                                                        "sigalgs")]
        errors = {k: v for k, v in seen.items() if "fail" in k or "error" in k}
        print(f"  {label}: {seen.get('handshake', 0)} TLS handshakes; "
              + ", ".join(k.split(".", 1)[1] for k in sorted(kinds))
              + (f"; errors {errors}" if errors else ""), flush=True)


def dump_configs(envoys: dict[str, int], out_dir: Path) -> None:
    """Write each Envoy's /config_dump (with EDS) and its stats count to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for label, pid in envoys.items():
        admin = admin_of(pid)
        if admin is None:
            print(f"  {label}: no admin socket found", flush=True)
            continue
        with admin:
            dump = admin.config_dump(include_eds=True)
            stats = admin.stats(None, "json").get("stats", [])
        (out_dir / f"{label}.json").write_text(json.dumps(dump, indent=1))
        print(f"  {label} (pid {pid}): {len(stats)} stats; "
              + "; ".join(http_filters(dump)), flush=True)


# --- instructions per request (callgrind), the load-independent cross-check -----------

VALGRIND_WRAPPER = """#!/bin/sh
# Envoy under callgrind, instrumentation off until the benchmark turns it on (so that
# start-up stays within the control plane's timeouts); the gateway and a native app
# run as they are.
case "$*" in
  *ingressgateway*|*native-app*) exec {envoy} "$@" ;;
esac
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file={out}/cg-%p.out \\
  {envoy} "$@"
"""


def valgrind_wrapper(work_dir: Path) -> Path:
    """A script to use as the Envoy binary ($MESHPILOT_ENVOY) that runs it under callgrind."""
    out = work_dir / "callgrind"
    out.mkdir(parents=True, exist_ok=True)
    path = work_dir / "envoy-callgrind.sh"
    path.write_text(VALGRIND_WRAPPER.format(envoy=envoy_binary(), out=out))
    path.chmod(0o755)
    return path


def sequential(addr: tuple[str, int], n: int) -> None:
    """``n`` requests one after the other on one keep-alive connection (all must be 200)."""
    request = f"GET / HTTP/1.1\r\nHost: {HOST_HEADER}\r\n\r\n".encode()
    with socket.create_connection(addr, timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = _Conn(sock)
        sock.setblocking(True)
        for _ in range(n):
            c.buf.clear()
            c.need = -1
            sock.sendall(request)
            while not _complete(c):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed mid-response")
                c.buf += chunk
            if c.buf[9:12] != b"200":
                raise RuntimeError(f"status {bytes(c.buf[:40])!r}")


def _callgrind(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], capture_output=True, timeout=60,
                   check=False)


def _callgrind_total(out_dir: Path, pid: int) -> int:
    dumps = sorted(out_dir.glob(f"cg-{pid}.out.*"), key=lambda f: int(f.suffix[1:]))
    for line in dumps[-1].read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


def measure_instructions(addrs: dict[str, tuple[str, int]], pids: dict[str, tuple[int, int]],
                         out_dir: Path, requests: int, rounds: int, floor: str) -> None:
    """Instructions per request of each path's two Envoys, under callgrind.

    For each path: 300 requests to warm up, then the counters of both Envoys are zeroed,
    ``requests`` sequential requests sent, and the counters dumped. ``floor`` is the
    static path meshpilot's is judged against (the one speaking the same TLS, or none).
    The connection is kept alive, so a TLS path's handshakes (one per connection) fall in
    the warm-up and the count is the per-request cost: records encrypted and decrypted
    on top of the plaintext work. Instruction counts do
    not depend on what else the machine is doing, so this judges what a configuration
    costs where the latency figures cannot (their run-to-run spread is larger than the
    difference sought). It counts user-space work only: the kernel's share (TCP over
    loopback, wake-ups) is the same for any configuration.
    """
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
    for rnd in range(rounds):
        for name, (client, server) in pids.items():
            sequential(addrs[name], 300)
            for pid in (client, server):
                _callgrind(pid, "-i", "on")
                _callgrind(pid, "-z")
            sequential(addrs[name], requests)
            for pid in (client, server):
                _callgrind(pid, "-d")
            time.sleep(0.5)
            per = tuple(_callgrind_total(out_dir, pid) / requests for pid in (client, server))
            results[name].append((per[0], per[1]))
            print(f"round {rnd + 1}/{rounds}: {name:<33} client {per[0]:9.0f}  server "
                  f"{per[1]:9.0f} instructions/request", flush=True)
    print()
    print(f"Instructions per request (callgrind, {requests} sequential keep-alive requests "
          f"per round, median of {rounds} rounds):")
    print(f"  {'path':<33}{'client envoy':>14}{'server envoy':>14}{'both':>10}")
    both = {}
    for name, rs in results.items():
        c, s = _med([r[0] for r in rs]), _med([r[1] for r in rs])
        both[name] = c + s
        print(f"  {name:<33}{c:14.0f}{s:14.0f}{c + s:10.0f}")
    for over, under, label in RATIOS:
        if over in both and under in both:
            ratio = both[over] / both[under]
            verdict = ""
            if over == MESH and under == floor:
                verdict = (f" ({'within' if ratio <= FLOOR_MARGIN else 'NOT within'} 5% of "
                           "the like-for-like floor in instructions)")
            print(f"  ratio {label}: {ratio:.3f}{verdict}")
    print("  Telemetry scrapes are off in this mode (MESHPILOT_TELEMETRY_INTERVAL=3600): one "
          "scrape costs an Envoy about 0.4 ms of CPU, once a second.")


# --- reporting -----------------------------------------------------------------------


def _med(values: Sequence[float]) -> float:
    ok = [v for v in values if v == v]
    return statistics.median(ok) if ok else float("nan")


def _cell(values: Sequence[float], width: int = 21) -> str:
    """``median [min-max]`` of per-round figures."""
    ok = [v for v in values if v == v]
    if not ok:
        return f"{'n/a':>{width}}"
    text = f"{_med(ok):.3f} [{min(ok):.2f}-{max(ok):.2f}]" if len(ok) > 1 else f"{ok[0]:.3f}"
    return f"{text:>{width}}"


def _quiet_or_all(runs: list[list[RoundResult]]) -> tuple[list[list[RoundResult]], str]:
    """The groups (a run, or the runs of one round compared with each other) in which
    every run was quiet; all groups, flagged, if none was."""
    quiet = [g for g in runs if all(r.quiet for r in g)]
    if quiet:
        return quiet, f"{len(quiet)}/{len(runs)}"
    return runs, f"0/{len(runs)} quiet, all used!"


def report_generator(gen: str, rounds: list[dict[str, RoundResult]],
                     args: argparse.Namespace) -> dict[float, dict[str, float]]:
    """One generator's table; returns the median added latency per percentile and path.

    Only quiet runs count (see ForeignCpu); an added figure compares a path with the
    direct path of the same round, so both must be quiet.
    """
    print()
    if gen == "python":
        print("Python open-loop generator: latency from each request's scheduled time (ms);")
    else:
        print("wrk (closed loop with think time): latency from each request's actual send (ms);")
    print(f"median over quiet rounds [min-max]; 'kept' = quiet rounds used / rounds "
          f"(quiet: others used <= {args.quiet:g} CPUs during the run).")
    head = f"{'path':<33}" + "".join(f"{'p' + format(p, 'g'):>22}" for p in PCTS) + \
        f"{'max':>9}{'req/s':>8}{'err':>5}  kept"
    print(head)
    print("-" * len(head))
    direct = PATH_NAMES[0]
    for name in PATH_NAMES:
        groups, kept = _quiet_or_all([[r[name]] for r in rounds if name in r])
        rs = [g[0] for g in groups]
        print(f"{name:<33}" + "".join(" " + _cell([x.pct[p] for x in rs]) for p in PCTS)
              + f"{_med([x.max_ms for x in rs]):9.2f}"
              + f"{statistics.fmean(x.achieved_rate for x in rs):8.0f}"
              + f"{sum(x.errors for x in rs):5d}  {kept}")
    added: dict[float, dict[str, float]] = {p: {} for p in PCTS}
    print()
    head = f"{'added vs direct (ms)':<33}" + "".join(f"{'p' + format(p, 'g'):>22}" for p in PCTS)
    print(head)
    print("-" * len(head))
    for name in PATH_NAMES[1:]:
        groups, kept = _quiet_or_all([[r[name], r[direct]] for r in rounds
                                      if name in r and direct in r])
        per_p = {p: [x.pct[p] - d.pct[p] for x, d in groups] for p in PCTS}
        for p in PCTS:
            added[p][name] = _med(per_p[p])
        print(f"{name:<33}" + "".join(" " + _cell(per_p[p]) for p in PCTS) + f"  {kept}")
    print(f"{'Istio 1.20 (published, not run)':<33}{'':>22}{ISTIO_P90_MS:>22.3f}"
          f"{ISTIO_P99_MS:>22.3f}")
    for over, under, label in RATIOS:
        triples, kept = _quiet_or_all([[r[direct], r[under], r[over]] for r in rounds
                                       if all(n in r for n in (direct, under, over))])
        ratios = {p: [(c.pct[p] - d.pct[p]) / (b.pct[p] - d.pct[p]) for d, b, c in triples
                      if b.pct[p] - d.pct[p] > 0] for p in PCTS}
        print(f"{'ratio ' + label + ', of the medians':<33}" + "".join(
            f"{(added[p][over] / added[p][under] if added[p][under] > 0 else float('nan')):22.2f}"
            for p in PCTS))
        print(f"{'ratio ' + label + ', per round':<33}" + "".join(
            " " + _cell(ratios[p]) for p in PCTS) + f"  {kept}")
    print(f"{'ratio (c) / Istio published':<33}{'':>22}{added[90.0][MESH] / ISTIO_P90_MS:22.2f}"
          f"{added[99.0][MESH] / ISTIO_P99_MS:22.2f}")
    if gen == "python":
        print()
        print("Generator health (quiet rounds): send lag = actual send - scheduled time, the "
              "generator's own lateness.")
        for name in PATH_NAMES:
            groups, _ = _quiet_or_all([[r[name]] for r in rounds if name in r])
            rs = [g[0] for g in groups]
            print(f"  {name:<33} send lag p99 {_med([x.send_lag_p99 for x in rs]):.3f} ms; "
                  f"service p50 {_med([x.service_p50 for x in rs]):.3f} ms; "
                  f"{sum(x.completed for x in rs)}/{sum(x.scheduled for x in rs)} done")
    # the Python generator is open loop: it must hold the rate. wrk's rate is steered
    # through its think time, so only a rough match is expected of it.
    slack = 0.05 if gen == "python" else 0.15
    short = sorted({n for r in rounds for n in PATH_NAMES if n in r and (
        abs(r[n].achieved_rate / args.rate - 1) > slack or r[n].errors)})
    if short:
        print(f"  WARNING: {gen}: rate off the target by more than {slack:.0%}, or errors, "
              "in some round on: " + ", ".join(short))
    return added


def report_cpu(rounds: list[dict[str, RoundResult]], gen: str) -> None:
    """CPU and run-queue wait, microseconds per request, of each process on each path."""
    print()
    print(f"Per request, {gen} quiet rounds (us): CPU user+system (/proc, 10 ms ticks summed "
          "over rounds) / run-queue wait (schedstat):")
    roles = ["generator", "client envoy", "server envoy", "app", "control plane"]
    print(f"  {'path':<33}" + "".join(f"{r:>17}" for r in roles) + f"{'mean ms':>9}")
    for name in PATH_NAMES:
        groups, _ = _quiet_or_all([[r[name]] for r in rounds if name in r])
        rs = [g[0] for g in groups]
        done = sum(x.completed for x in rs) or 1
        cells = []
        for role in roles:
            vals = [x.cpu_s[role] for x in rs if role in x.cpu_s]
            if len(vals) != len(rs):
                cells.append(f"{'':>17}")
                continue
            user, system, wait = (sum(v[i] for v in vals) / done * 1e6 for i in range(3))
            text = f"{user:.0f}+{system:.0f}" + ("" if wait != wait else f"/{wait:.0f}")
            cells.append(f"{text:>17}")
        print(f"  {name:<33}" + "".join(cells) + f"{_med([x.mean_ms for x in rs]):9.3f}")


def verdict(added: dict[float, dict[str, float]], floor: str) -> None:
    """meshpilot's added latency against ``floor`` (the static pair speaking the same
    TLS as meshpilot's pair in this run) and against Istio's published figures."""
    print()
    print(f"Against the targets (python generator, medians of rounds; floor: {floor}):")
    for p in (50.0, 90.0, 99.0):
        ok = added[p][MESH] <= added[p][floor] * FLOOR_MARGIN
        print(f"  p{p:g}: meshpilot +{added[p][MESH]:.3f} ms vs static +{added[p][floor]:.3f} "
              f"ms: {'within' if ok else 'NOT within'} 5% of the floor")
    for p, istio in ((90.0, ISTIO_P90_MS), (99.0, ISTIO_P99_MS)):
        ok = added[p][MESH] <= istio
        print(f"  p{p:g}: meshpilot +{added[p][MESH]:.3f} ms vs Istio +{istio:.3f} ms: "
              f"{'at or under' if ok else 'OVER'} Istio's published figure")


# --- main ----------------------------------------------------------------------------


def _load() -> float:
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s (default 1000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds (a, b, c, a, b, c, ...) so that a slow drift "
                             "or a neighbour's burst hits every path (default 5)")
    parser.add_argument("--round-seconds", type=int, default=4,
                        help="measured seconds per path per round and generator (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="warm-up seconds before each measured run, dropped (default 1)")
    parser.add_argument("--connections", type=int, default=16,
                        help="keep-alive connections (default 16, as Istio's benchmark)")
    parser.add_argument("--body-size", type=int, default=1024, help="response bytes")
    parser.add_argument("--envoy-concurrency", type=int, default=1,
                        help="worker threads per Envoy on (b) and (c) (default 1, meshpilot's; "
                             "Istio's published figures use 2)")
    parser.add_argument("--app", choices=("demo", "native"), default="demo",
                        help="the pod's app: meshpilot's demo app (Python) or an Envoy "
                             "answering the same bytes (default demo)")
    parser.add_argument("--generator", choices=("python", "wrk", "both"), default="both",
                        help="load generator(s); 'both' falls back to python without wrk")
    parser.add_argument("--dump-config", type=Path, default=None,
                        help="write the four Envoys' /config_dump here and list their filters")
    parser.add_argument("--quiet", type=float, default=0.1,
                        help="a run is quiet if other processes (and steal) used at most this "
                             "many CPUs meanwhile; only quiet runs make the figures, if any "
                             "(default 0.1)")
    parser.add_argument("--max-wait", type=float, default=30.0,
                        help="before each round, wait up to this many seconds for a quiet "
                             "machine (default 30; 0: do not wait)")
    parser.add_argument("--instructions", type=int, default=0, metavar="N",
                        help="instead of latency: run (b), (t) and (c)'s Envoys under callgrind "
                             "(Debian: apt-get install valgrind) and count instructions per "
                             "request over N sequential requests (e.g. 1000)")
    parser.add_argument("--access-log", choices=("on", "off"), default="on",
                        help="the sidecars' Istio-format access logs (meshpilot's default: on)")
    parser.add_argument("--mesh-plaintext", action="store_true",
                        help="turn meshpilot's mTLS off (a PeerAuthentication DISABLE for "
                             "namespace default): (c) is then judged against the plaintext "
                             "static pair (b) instead of the mTLS one (t)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--serve-native-app", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_native_app is not None:
        return serve_native_app(args.serve_native_app, args.body_size)
    if (args.rate <= 0 or args.round_seconds < 1 or args.connections < 1 or args.rounds < 1
            or args.rounds * args.round_seconds > 120):
        parser.error("rate, round seconds, connections and rounds must be positive; "
                     "rounds x round-seconds at most 120")
    if args.instructions and (shutil.which("valgrind") is None
                              or shutil.which("callgrind_control") is None):
        parser.error("--instructions needs valgrind (Debian: apt-get install valgrind)")
    gens = ["python", "wrk"] if args.generator == "both" else [args.generator]
    if "wrk" in gens and shutil.which("wrk") is None:
        if args.generator == "wrk":
            parser.error("wrk is not installed (Debian: apt-get install wrk)")
        print("wrk not installed (Debian: apt-get install wrk): Python generator only")
        gens.remove("wrk")

    tmp = Path(tempfile.mkdtemp(prefix="meshpilot-bench-latency-"))
    cp: ControlPlane | None = None
    envoys: list[EnvoyProcess] = []
    start_load = os.getloadavg()
    try:
        print(f"load average {start_load[0]:.2f} {start_load[1]:.2f} {start_load[2]:.2f}; "
              f"starting the control plane (state dir {tmp / 'state'}) ...", flush=True)
        binary: str | None = None
        if args.instructions:  # every Envoy of (b) and (c) under callgrind, no scrapes
            binary = str(valgrind_wrapper(tmp))
            os.environ["MESHPILOT_ENVOY"] = binary
            os.environ["MESHPILOT_TELEMETRY_INTERVAL"] = "3600"
        cp = ControlPlane(tmp / "state", args.envoy_concurrency,
                          ["--access-log", args.access_log])
        manifest = app_manifest(args.body_size, args.app, tmp)
        if args.mesh_plaintext:
            manifest += MESH_PLAINTEXT
        cp.apply(manifest)
        cp.converge()
        pod = next(p for p in cp.pods() if p["status"]["ready"])
        app_ip = pod["status"]["podIP"]
        app_port = pod["status"]["ports"][0]["app_port"]
        mesh_url = httpx.URL(cp.endpoints["mesh_proxy"])
        mesh_addr = (mesh_url.host, mesh_url.port or 80)
        print(f"app pod {pod['metadata']['name']} ({args.app}) at {app_ip}:{app_port}; "
              f"mesh proxy {cp.endpoints['mesh_proxy']}", flush=True)

        # Two static pairs to the same app: (b) plaintext between its Envoys, (t) mutual
        # TLS between them with the TLS meshpilot's sidecars speak.
        client_tls, server_tls = static_tls_files(tmp / "static-tls")
        upstream_tls, downstream_tls = static_mtls_sockets(client_tls, server_tls)
        ports = {key: free_port() for key in ("static-server", "static-client",
                                              "tls-server", "tls-client")}
        static_envoys = (
            ("static-server", (app_ip, app_port), {}),
            ("static-client", ("127.0.0.1", ports["static-server"]), {}),
            ("tls-server", (app_ip, app_port), {"downstream_tls": downstream_tls}),
            ("tls-client", ("127.0.0.1", ports["tls-server"]), {"upstream_tls": upstream_tls}),
        )
        static_pids: dict[str, int | None] = {}
        for name, upstream, tls in static_envoys:
            proc = EnvoyProcess(static_envoy_bootstrap(ports[name], upstream, **tls), name=name,
                                work_dir=tmp / "envoy", concurrency=args.envoy_concurrency,
                                binary=binary)
            proc.start(timeout=60.0)
            envoys.append(proc)
            static_pids[name] = proc.pid
            if not wait_port("127.0.0.1", ports[name], timeout=15):
                raise RuntimeError(f"{name} did not listen; see {proc.log_path}")

        addrs = {DIRECT: (app_ip, app_port), STATIC: ("127.0.0.1", ports["static-client"]),
                 STATIC_TLS: ("127.0.0.1", ports["tls-client"]), MESH: mesh_addr}
        pids: dict[str, int | None] = {
            "app": listening_pid(app_ip, app_port),
            **static_pids,
            "mesh-proxy": listening_pid(*mesh_addr),
            "sidecar": listening_pid(app_ip, 8080),
            "control plane": cp.proc.pid,
        }
        pairs = {STATIC: ("static-client", "static-server"),
                 STATIC_TLS: ("tls-client", "tls-server"), MESH: ("mesh-proxy", "sidecar")}
        roles_by_path = {DIRECT: {"app": "app", "control plane": "control plane"}}
        for name, (client, server) in pairs.items():
            roles_by_path[name] = {"client envoy": client, "server envoy": server,
                                   "app": "app", "control plane": "control plane"}
        floor = STATIC if args.mesh_plaintext else STATIC_TLS
        check_paths(addrs, mesh_mtls=not args.mesh_plaintext)
        print_tls_stats({k: pids[k] for k in ("tls-client", "tls-server")})
        if args.dump_config is not None:
            print(f"config dumps -> {args.dump_config}", flush=True)
            dump_configs({k: v for pair in pairs.values() for k in pair
                          if (v := pids[k]) is not None}, args.dump_config)

        if args.instructions:
            envoy_pids = {name: (pids[c], pids[s]) for name, (c, s) in pairs.items()}
            if any(p is None for pair in envoy_pids.values() for p in pair):
                raise RuntimeError(f"an Envoy was not found: {envoy_pids}")
            measure_instructions(addrs, envoy_pids,  # type: ignore[arg-type]
                                 tmp / "callgrind", args.instructions, rounds=2, floor=floor)
            return 0

        script = tmp / "rate.lua"
        script.write_text(WRK_SCRIPT)
        _low_timer_slack()
        results: dict[str, list[dict[str, RoundResult]]] = {g: [] for g in gens}
        # wrk's think time, per path: calibrated so that the measured runs make about
        # --rate. The cycle per connection is think + latency + wrk's own timer lateness,
        # and that lateness grows with the number of connections waiting on timers (with
        # 16 connections and a constant 10 ms think time: 16.7 ms per cycle, not 10.8), so
        # the think time is found by measuring: 2 s runs, think scaled by achieved/target,
        # until within 7% (at most 6 tries), then adjusted again on every warm-up.
        nominal = args.connections * 1000.0 / args.rate
        think = {name: nominal for name in PATH_NAMES}

        def calibrate(name: str, warm: RoundResult) -> None:
            ratio = warm.achieved_rate / args.rate
            think[name] = min(2 * nominal, max(0.05 * nominal, think[name] * ratio))

        if "wrk" in gens:
            for name in PATH_NAMES:
                for _ in range(6):
                    warm = run_wrk(name, addrs[name], script, think_ms=think[name], seconds=2,
                                   connections=args.connections)
                    if abs(warm.achieved_rate / args.rate - 1) <= 0.07:
                        break
                    calibrate(name, warm)
                print(f"wrk think time for {name}: {think[name]:.2f} ms "
                      f"({warm.achieved_rate:.0f} req/s)", flush=True)
        for rnd in range(args.rounds):
            if args.max_wait > 0:
                wait_quiet(args.quiet, args.max_wait)
            for gen in gens:
                results[gen].append({})
            for name in PATH_NAMES:
                pid_of = {role: pids[key] for role, key in roles_by_path[name].items()}
                for gen in gens:
                    addr = addrs[name]
                    before: dict[str, tuple[float, ...]] = {}
                    after: dict[str, tuple[float, ...]] = {}

                    def snapshot(into: dict[str, tuple[float, ...]], gen: str = gen,
                                 pid_of: dict[str, int | None] = pid_of) -> None:
                        into.update({r: cpu_seconds(p) for r, p in pid_of.items() if p})
                        into["generator"] = _own_cpu() if gen == "python" else _children_cpu()

                    others = ForeignCpu()
                    if gen == "python":
                        res = run_open_loop(name, addr, rate=args.rate,
                                            duration=args.round_seconds, warmup=args.warmup,
                                            connections=args.connections,
                                            on_measure=lambda b=before: snapshot(b),
                                            on_done=lambda a=after: snapshot(a))
                    else:
                        warm = run_wrk(name, addr, script, think_ms=think[name],
                                       seconds=max(1, round(args.warmup)),
                                       connections=args.connections, seed=rnd + 1)
                        if 0.7 <= warm.achieved_rate / args.rate <= 1.3:  # not a stall
                            calibrate(name, warm)
                        snapshot(before)
                        res = run_wrk(name, addr, script, think_ms=think[name],
                                      seconds=args.round_seconds, connections=args.connections,
                                      seed=100 + rnd)
                        snapshot(after)
                    res.cpu_s = {role: _minus(after[role], before[role]) for role in before}
                    res.foreign = others.cpus()
                    res.quiet = res.foreign <= args.quiet
                    res.load = _load()
                    results[gen][rnd][name] = res
                    print(f"round {rnd + 1}/{args.rounds} {gen:>6}: {name:<33} p50 "
                          f"{res.pct[50.0]:.3f} p90 {res.pct[90.0]:.3f} p99 {res.pct[99.0]:.3f} "
                          f"ms; {res.achieved_rate:.0f} req/s; others {res.foreign:.2f} CPUs"
                          f"{'' if res.quiet else ' (NOT QUIET)'}; load {res.load:.2f}",
                          flush=True)

        end_load = os.getloadavg()
        print()
        print("The static mTLS pair's TLS, over the whole run:")
        print_tls_stats({k: pids[k] for k in ("tls-client", "tls-server")})
        print()
        print("Upstream connections opened / requests sent, over the whole run (warm-ups, the "
              "check and wrk included):")
        for key in (k for pair in pairs.values() for k in pair):
            pid = pids[key]
            got = upstream_connections(pid) if pid else {}
            print(f"  {key:<14} {got.get('connections', '?')} connections / "
                  f"{got.get('requests', '?')} requests")
        print()
        print(f"Load: {args.rate:g} req/s target, {args.rounds} interleaved rounds of "
              f"{args.round_seconds} s per path and generator (+{args.warmup:g} s warm-up), "
              f"{args.connections} keep-alive connections, {args.body_size} B responses, "
              f"app {args.app}, Envoy concurrency {args.envoy_concurrency}.")
        print(f"Load average (1/5/15 min): {start_load[0]:.2f}/{start_load[1]:.2f}/"
              f"{start_load[2]:.2f} at start, {end_load[0]:.2f}/{end_load[1]:.2f}/"
              f"{end_load[2]:.2f} at end; 1-min during rounds "
              f"{min(r.load for g in gens for rr in results[g] for r in rr.values()):.2f}-"
              f"{max(r.load for g in gens for rr in results[g] for r in rr.values()):.2f}.")
        added_by_gen = {}
        for gen in gens:
            added_by_gen[gen] = report_generator(gen, results[gen], args)
            report_cpu(results[gen], gen)
        print()
        print(f"Context: {ISTIO_NOTE}.")
        print("Here: everything (generator, app, six Envoys, control plane) shares one machine "
              f"with {os.cpu_count()} CPUs; HTTP/1.1; between the two Envoys of (t) mutual TLS, "
              f"of (b) plaintext, of (c) {'plaintext' if args.mesh_plaintext else 'mutual TLS'}.")
        options = [f"--{k.replace('_', '-')} {getattr(args, k):g} (Istio: {v:g})"
                   for k, v in ISTIO_CONDITIONS if getattr(args, k) != v]
        if args.mesh_plaintext:
            options.append("--mesh-plaintext (Istio: mTLS on)")
        print(f"Istio's conditions not matched here: {ISTIO_GAPS}"
              + "".join(f"; {o}" for o in options) + ".")
        if "python" in added_by_gen:
            verdict(added_by_gen["python"], floor)
        return 0
    finally:
        for proc in envoys:
            proc.stop(grace=2.0)
        if cp is not None:
            cp.stop()
        keep_or_remove(tmp, args.keep)


def _children_cpu() -> tuple[float, ...]:
    """CPU of reaped children (the wrk runs: nothing else exits meanwhile); no wait."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime, float("nan")


def _own_cpu() -> tuple[float, ...]:
    return cpu_seconds(os.getpid())


def _minus(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(x - y for x, y in zip(a, b, strict=True))


if __name__ == "__main__":
    raise SystemExit(main())

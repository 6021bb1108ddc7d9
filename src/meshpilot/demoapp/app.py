"""The demo workload served by every example pod.

Each instance says who it is (version, pod) so traffic splits can be observed, and can be
told to misbehave (an error rate, added latency) so rollouts have something to react to.

Endpoints:

- ``GET /healthz``: always 200 ``ok``; no injected errors or latency (readiness probe).
- ``GET /status/<code>``: answers ``<code>`` (retry / outlier-detection tests).
- ``GET /delay/<ms>``: sleeps ``<ms>`` then answers 200 (timeout tests).
- ``GET /burn/<ms>``: keeps a CPU busy for ``<ms>`` (at most 1000) of CPU time, then
  answers 200 (autoscaling on CPU).
- ``GET /call?url=<url>``: calls ``url`` through the proxy in ``HTTP_PROXY`` (the pod's
  sidecar) and returns the upstream status, headers and body as JSON. Optional query
  parameters: ``method``, ``header=Name:Value`` (repeatable), ``timeout`` (seconds).
  Trace headers (``x-request-id``, ``x-b3-*``, ``traceparent``...) are propagated.
- ``POST``/``PUT`` anything else: echo the body length.
- anything else: 200 JSON describing the request and the instance.

Injected errors (``error_rate``) and latency (``latency_ms``) apply to every endpoint except
``/healthz``, ``/status/``, ``/delay/`` and ``/burn/``.

SIGTERM (or SIGINT) stops accepting, lets in-flight requests finish (up to a bound), and
exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DemoConfig", "DemoServer", "main", "make_server", "run"]

PROPAGATED_HEADERS = (
    "x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled",
    "x-b3-flags", "b3", "traceparent", "tracestate", "x-ot-span-context",
)
SHUTDOWN_DRAIN_S = 10.0


@dataclass(frozen=True)
class DemoConfig:
    version: str = "v1"
    error_rate: float = 0.0
    latency_ms: float = 0.0
    pod_name: str = ""
    namespace: str = "default"
    body_size: int | None = None


class DemoServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that counts in-flight requests so shutdown can wait for them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], config: DemoConfig) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, DemoHandler)
        self.config = config
        self.stopping = threading.Event()
        self._inflight = 0
        self._cond = threading.Condition()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def request_started(self) -> None:
        with self._cond:
            self._inflight += 1

    def request_finished(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; False after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout=timeout)


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DemoServer
    timeout = 120  # idle keep-alive connections do not live forever
    # Headers and body are separate writes: without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pods log to files, benchmarks do not want a line per request

    # --- dispatch ------------------------------------------------------------------------
    def _handle(self) -> None:
        """Every method takes one path: ``_route`` decides by path and method."""
        self.server.request_started()
        try:
            body = self._read_body()
            if self.server.stopping.is_set():
                self.close_connection = True
            self._route(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server.request_finished()

    # BaseHTTPRequestHandler looks up ``do_<METHOD>``.
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def _route(self, body: bytes) -> None:
        cfg = self.server.config
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        if path == "/healthz":
            self._send(200, b"ok", "text/plain")
            return
        if path.startswith("/status/"):
            code = _int(_tail(path, "/status/"), 0)
            if not 200 <= code <= 599:
                self._json(400, {"error": f"bad status code {path!r}", "version": cfg.version})
            else:
                self._json(code, self._describe(parsed, {"status": code}))
            return
        if path.startswith("/burn/"):
            ms = _float(_tail(path, "/burn/"), -1.0)
            if not 0 <= ms <= MAX_BURN_MS:
                self._json(400, {"error": f"bad burn {path!r}: 0 to {MAX_BURN_MS:g} ms of CPU",
                                 "version": cfg.version})
                return
            self._json(200, self._describe(parsed, {"burned_ms": _burn(ms / 1000.0)}))
            return
        if path.startswith("/delay/"):
            ms = _float(_tail(path, "/delay/"), -1.0)
            if ms < 0:
                self._json(400, {"error": f"bad delay {path!r}", "version": cfg.version})
                return
            time.sleep(ms / 1000.0)
            self._json(200, self._describe(parsed, {"delay_ms": ms}))
            return

        if cfg.latency_ms > 0:
            time.sleep(cfg.latency_ms / 1000.0)
        if cfg.error_rate > 0 and random.random() < cfg.error_rate:
            self._json(500, {"error": "injected", "version": cfg.version, "pod": cfg.pod_name})
            return
        if path == "/call" and self.command == "GET":
            self._call(parsed)
            return
        if self.command in ("POST", "PUT"):
            self._json(200, self._describe(parsed, {"received_bytes": len(body)}))
            return
        self._json(200, self._describe(parsed))

    # --- endpoints -----------------------------------------------------------------------
    def _describe(self, parsed: urllib.parse.SplitResult,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = self.server.config
        doc: dict[str, Any] = {
            "version": cfg.version,
            "pod": cfg.pod_name,
            "namespace": cfg.namespace,
            "host": self.headers.get("Host", ""),
            "path": self.path,
            "method": self.command,
            "headers": self._request_headers(),
        }
        if extra:
            doc.update(extra)
        return doc

    def _request_headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    def _call(self, parsed: urllib.parse.SplitResult) -> None:
        cfg = self.server.config
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        url = (query.get("url") or [""])[0]
        if not url:
            self._json(400, {"error": "missing ?url=", "version": cfg.version})
            return
        if "://" not in url:
            url = "http://" + url
        method = (query.get("method") or ["GET"])[0].upper()
        timeout = _float((query.get("timeout") or ["10"])[0], 10.0)
        headers = {k: v for k, v in self._request_headers().items() if k in PROPAGATED_HEADERS}
        for item in query.get("header", []):
            name, sep, value = item.partition(":")
            if sep and name.strip():
                headers[name.strip()] = value.strip()
        proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or ""
        # The sidecar is always used: NO_PROXY does not apply (urllib's ProxyHandler would
        # honour it), and no other proxy variable is read.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if proxy:
            handlers.append(_SidecarProxy(proxy))
        opener = urllib.request.build_opener(*handlers)
        request = urllib.request.Request(url, method=method, headers=headers)
        result: dict[str, Any] = {"url": url, "proxy": proxy or None, "version": cfg.version,
                                  "pod": cfg.pod_name}
        started = time.monotonic()
        try:
            with opener.open(request, timeout=timeout) as resp:
                status, resp_headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, resp_headers, raw = err.code, err.headers, err.read()
        except (OSError, ValueError) as exc:
            result.update(status=None, error=f"{type(exc).__name__}: {exc}",
                          elapsed_ms=round((time.monotonic() - started) * 1000, 3))
            self._json(502, result)
            return
        text = raw.decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        hdrs: dict[str, str] = {}
        for name, value in resp_headers.items():
            key = name.lower()
            hdrs[key] = f"{hdrs[key]}, {value}" if key in hdrs else value
        result.update(status=status, headers=hdrs, body=body,
                      elapsed_ms=round((time.monotonic() - started) * 1000, 3))
        self._json(200, result)

    # --- plumbing ------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = _int(self.headers.get("Content-Length", "0"), 0)
        return self.rfile.read(length) if length > 0 else b""

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        size = self.server.config.body_size
        if size:
            doc["padding"] = ""
            missing = size - len(json.dumps(doc).encode())
            if missing > 0:
                doc["padding"] = "x" * missing
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        cfg = self.server.config
        self.send_response(status)
        if status < 200 or status in (204, 304):
            body = b""  # these statuses carry no body (and 1xx/204 no Content-Length)
        else:
            self.send_header("Content-Type", content_type)
        if status >= 200 and status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Version", cfg.version)
        self.send_header("X-Pod", cfg.pod_name)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _SidecarProxy(urllib.request.BaseHandler):
    """Send every plain-HTTP request to ``proxy_url`` (absolute-form request line)."""

    handler_order = 100  # before HTTPHandler

    def __init__(self, proxy_url: str) -> None:
        if "://" not in proxy_url:
            proxy_url = "http://" + proxy_url
        self.hostport = urllib.parse.urlsplit(proxy_url).netloc.rpartition("@")[2]

    def http_open(self, req: urllib.request.Request) -> None:
        req.set_proxy(self.hostport, "http")
        return None  # let HTTPHandler send it, now addressed to the proxy


MAX_BURN_MS = 1000.0
BURN_GRACE_S = 2.0


def _burn(seconds: float) -> float:
    """Keep a CPU busy for ``seconds`` of this thread's CPU time (what an autoscaler on
    CPU sees), giving up on a crowded host after ten times as long on the wall clock
    plus :data:`BURN_GRACE_S` (a short burn gets its share even when two cores run a
    dozen busy processes); returns the milliseconds burned."""
    start = time.thread_time()
    deadline = time.monotonic() + BURN_GRACE_S + 10 * seconds
    while time.thread_time() - start < seconds and time.monotonic() < deadline:
        sum(range(1000))
    return round((time.thread_time() - start) * 1000.0, 1)


def _tail(path: str, prefix: str) -> str:
    """The argument of ``/prefix/<arg>``: what follows the prefix, without slashes."""
    return path[len(prefix):].strip("/")


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _float(text: str, default: float) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def _default_pod_name() -> str:
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


def make_server(
    version: str = "v1",
    error_rate: float = 0.0,
    latency_ms: float = 0.0,
    host: str | None = None,
    port: int | None = None,
    pod_name: str | None = None,
    body_size: int | None = None,
) -> DemoServer:
    """Bind (but do not serve) a demo server; ``port`` 0 picks a free port (``.port``)."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be within [0, 1], got {error_rate}")
    host = host or os.environ.get("POD_IP") or "127.0.0.1"
    if port is None:
        port = _int(os.environ.get("PORT") or "8080", 8080)
    config = DemoConfig(
        version=version, error_rate=error_rate, latency_ms=max(0.0, latency_ms),
        pod_name=pod_name or _default_pod_name(),
        namespace=os.environ.get("POD_NAMESPACE") or "default",
        body_size=body_size,
    )
    return DemoServer((host, port), config)


def run(server: DemoServer) -> int:
    """Serve ``server`` (from :func:`make_server`) until SIGTERM/SIGINT; then finish
    in-flight requests and return 0."""

    def on_signal(signum: int, frame: Any) -> None:
        if not server.stopping.is_set():
            server.stopping.set()
            # shutdown() blocks until serve_forever returns: never call it on this thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host_shown, port_shown = server.server_address[:2]
    print(f"demo-app {server.config.version} pod={server.config.pod_name} "
          f"listening on http://{host_shown}:{port_shown}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.wait_idle(SHUTDOWN_DRAIN_S)
        server.server_close()
    print("demo-app stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (``python -m meshpilot.demoapp``, ``meshpilot demo-app``)."""
    parser = argparse.ArgumentParser(prog="meshpilot demo-app",
                                     description="The meshpilot demo workload.")
    parser.add_argument("--version", default=os.environ.get("VERSION", "v1"),
                        help="version reported in responses and X-Version (default v1)")
    parser.add_argument("--error-rate", type=float, default=0.0,
                        help="fraction of requests answered 500, 0..1 (default 0)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay added before answering (default 0)")
    parser.add_argument("--host", default=None, help="bind address (default $POD_IP or "
                        "127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="port (default $PORT or 8080; 0 picks a free one)")
    parser.add_argument("--body-size", type=int, default=None,
                        help="pad JSON responses to about this many bytes")
    parser.add_argument("--pod-name", default=None,
                        help="pod name reported (default $POD_NAME or the hostname)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate must be within [0, 1]")
    try:
        return run(make_server(version=args.version, error_rate=args.error_rate,
                               latency_ms=args.latency_ms, host=args.host, port=args.port,
                               pod_name=args.pod_name, body_size=args.body_size))
    except OSError as exc:
        print(f"demo-app: cannot listen: {exc}", file=sys.stderr)
        return 1

"""Prometheus text exposition of the Istio series, on its own loopback port.

``GET /metrics``: every series of the store, one ``pod`` label added (the proxy: pod
name, ``mesh-proxy``, ``istio-ingressgateway``, as Prometheus' Kubernetes discovery
would), plus the scraper's own cost as ``meshpilot_telemetry_*``.
``GET /http_sd``: a Prometheus ``http_sd_configs`` target list naming this endpoint.

Written by hand rather than with prometheus-client: the series are computed elsewhere
(the store) and only need formatting, which is a few lines.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from meshpilot.telemetry.history import _fmt
from meshpilot.telemetry.istio import METRICS, HistValue, Labels
from meshpilot.telemetry.scraper import Cost
from meshpilot.telemetry.store import SeriesStore

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if v != int(v) else str(int(v))


def render(store: SeriesStore, cost: Cost | None = None) -> str:
    lines: list[str] = []
    current = None
    for proxy, metric, labels, value in store.series():
        if metric != current:
            kind, help_text, _ = METRICS[metric]
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
            current = metric
        full = (*labels, ("pod", proxy))
        if isinstance(value, HistValue):
            les = [_fmt(b) for b in METRICS[metric][2]] + ["+Inf"]
            for le, count in zip(les, value.buckets, strict=True):
                lines.append(f"{metric}_bucket{_labels((*full, ('le', le)))} {_num(count)}")
            lines.append(f"{metric}_sum{_labels(full)} {_num(value.sum)}")
            lines.append(f"{metric}_count{_labels(full)} {_num(value.count)}")
        else:
            lines.append(f"{metric}{_labels(full)} {_num(value)}")
    if cost is not None:
        own = [
            ("meshpilot_telemetry_scrape_cycles_total", "counter", cost.cycles,
             "Scrape cycles over every proxy."),
            ("meshpilot_telemetry_proxy_reads_total", "counter", cost.proxies_read,
             "Successful reads of a proxy's admin stats."),
            ("meshpilot_telemetry_proxy_read_errors_total", "counter", cost.errors,
             "Failed reads of a proxy's admin stats."),
            ("meshpilot_telemetry_cpu_seconds_total", "counter", cost.cpu_seconds,
             "CPU seconds spent reading, parsing and relabelling proxy stats."),
            ("meshpilot_telemetry_read_bytes_total", "counter", cost.bytes_read,
             "Bytes read from proxies' admin stats."),
            ("meshpilot_telemetry_last_cycle_seconds", "gauge", cost.last_cycle_seconds,
             "Wall time of the last scrape cycle."),
            ("meshpilot_telemetry_targets", "gauge", cost.last_targets,
             "Proxies in the last scrape cycle."),
        ]
        for name, kind, value, help_text in own:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
                      f"{name} {_num(float(value))}"]
    return "\n".join(lines) + "\n"


class MetricsServer:
    """A small HTTP server: ``/metrics``, ``/http_sd``, ``/-/healthy``."""

    def __init__(self, render_metrics: Callable[[], str], host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.render_metrics = render_metrics
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    try:
                        body = outer.render_metrics().encode()
                    except Exception as exc:  # say why rather than hang up
                        log.exception("rendering /metrics failed")
                        self._send(500, f"error: {exc}\n".encode(), "text/plain")
                        return
                    self._send(200, body, CONTENT_TYPE)
                elif path == "/http_sd":
                    doc = [{"targets": [f"{outer.host}:{outer.port}"],
                            "labels": {"job": "meshpilot", "__metrics_path__": "/metrics"}}]
                    self._send(200, json.dumps(doc).encode(), "application/json")
                elif path in ("/-/healthy", "/"):
                    self._send(200, b"ok\n", "text/plain")
                else:
                    self._send(404, b"not found; try /metrics or /http_sd\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="telemetry-metrics", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

"""Telemetry as the control plane runs it: scraper + store + history + /metrics."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from meshpilot.mesh.model import MeshSnapshot
from meshpilot.telemetry.exposition import MetricsServer, render
from meshpilot.telemetry.history import History
from meshpilot.telemetry.persist import CounterFile
from meshpilot.telemetry.query import Query
from meshpilot.telemetry.scraper import DEFAULT_INTERVAL, Scraper, Target
from meshpilot.telemetry.store import RETENTION_SECONDS, SeriesStore

HISTORY_SECONDS = 600.0
INTERVAL_ENV = "MESHPILOT_TELEMETRY_INTERVAL"
"""Seconds between two reads of every proxy (default 1)."""


class MeshTelemetry:
    def __init__(
        self,
        targets: Callable[[], list[Target]],
        snapshot: Callable[[], MeshSnapshot],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval: float | None = None,
        retention: float = RETENTION_SECONDS,
        history_seconds: float = HISTORY_SECONDS,
        state_file: Path | None = None,
        own_metrics: Callable[[], str] | None = None,
    ) -> None:
        """``state_file``: where the series are kept across restarts of the control
        plane (see :mod:`meshpilot.telemetry.persist`); None keeps them in memory only.
        ``own_metrics``: more of the control plane's own series (Prometheus text) for
        /metrics, e.g. the failure reports' counts."""
        if interval is None:
            interval = float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL)
        self.interval = interval
        self.store = SeriesStore(retention=retention)
        self.counters = CounterFile(state_file, self.store) if state_file else None
        if self.counters is not None:
            self.counters.load()
        self.history = History(capacity=max(2, int(history_seconds / interval)))
        self.scraper = Scraper(targets, snapshot, self.store, self.history, interval=interval,
                               after_cycle=self.counters.save if self.counters else None)
        self.query = Query(self.history)
        self._own_metrics = own_metrics
        self.server = MetricsServer(self.render, host=host, port=port)

    def render(self) -> str:
        text = render(self.store, self.scraper.cost())
        return text + self._own_metrics() if self._own_metrics is not None else text

    def start(self) -> dict[str, str]:
        """Start scraping and serving; returns the endpoints.json entries."""
        self.server.start()
        self.scraper.start()
        base = f"http://{self.server.host}:{self.server.port}"
        return {"metrics": f"{base}/metrics", "metrics_http_sd": f"{base}/http_sd"}

    def stop(self) -> None:
        self.scraper.stop()
        self.server.stop()
        if self.counters is not None:
            self.counters.save(now=True)

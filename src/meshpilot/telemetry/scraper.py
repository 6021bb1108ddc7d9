"""Reads every proxy's admin stats on a timer and feeds the store and the history.

One thread wakes every ``interval`` seconds (1 s by default) and reads all proxies in
parallel (at most ``max_workers`` at a time, each read bounded by ``timeout``), so a
proxy that hangs delays nothing but its own series. It measures its own cost: wall time
per cycle, CPU seconds (fetch + parse + relabel, per worker thread) and bytes read, per
proxy; :meth:`Scraper.cost` reports them.

Each proxy is read through its admin Unix socket (:class:`~meshpilot.proxy.admin.
AdminClient`), one kept-alive client per socket while the proxy is a target, so a cycle
opens no connection in the steady state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from meshpilot.mesh.model import MeshSnapshot, ProxyNode
from meshpilot.proxy.admin import AdminClient
from meshpilot.telemetry.envoy_stats import STATS_PARAMS, parse_json
from meshpilot.telemetry.history import KEPT, History, HistoryKey, flatten
from meshpilot.telemetry.istio import METRICS, Point, ProxyIdentity, relabel
from meshpilot.telemetry.store import SeriesStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 1.0


@dataclass(frozen=True)
class Target:
    """One proxy to read: where its admin listens and who it is."""

    name: str
    admin_socket: str  # the proxy's admin Unix socket
    epoch: object  # changes when the proxy process is replaced (its pid)
    identity: ProxyIdentity
    node: ProxyNode
    read: Callable[[], bytes] | None = None
    """The /stats JSON when it is not read from a socket here (a joined host's sidecar,
    whose agent reports it)."""


@dataclass
class Cost:
    cycles: int = 0
    proxies_read: int = 0
    errors: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    bytes_read: int = 0
    last_cycle_seconds: float = 0.0
    last_targets: int = 0
    per_proxy_cpu_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        n = max(1, self.proxies_read)
        return {
            "cycles": self.cycles, "proxiesRead": self.proxies_read, "errors": self.errors,
            "cpuSecondsTotal": round(self.cpu_seconds, 6),
            "cpuMsPerProxyRead": round(1000 * self.cpu_seconds / n, 3),
            "bytesPerProxyRead": round(self.bytes_read / n),
            "lastCycleSeconds": round(self.last_cycle_seconds, 6),
            "lastTargets": self.last_targets,
        }


class Scraper:
    def __init__(
        self,
        targets: Callable[[], list[Target]],
        snapshot: Callable[[], MeshSnapshot],
        store: SeriesStore,
        history: History,
        *,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = 1.0,
        max_workers: int = 8,
        clock: Callable[[], float] = time.time,
        after_cycle: Callable[[], object] | None = None,
    ) -> None:
        self.targets = targets
        self.after_cycle = after_cycle  # e.g. write the series to disk
        self.snapshot = snapshot
        self.store = store
        self.history = history
        self.interval = interval
        self.clock = clock
        self.timeout = timeout
        self._admins: dict[str, AdminClient] = {}  # by socket path
        self._pool = ThreadPoolExecutor(max_workers=max_workers,
                                        thread_name_prefix="telemetry-scrape")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cost = Cost()
        self._caches: dict[str, tuple[int, dict]] = {}

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="telemetry-scraper",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            admins, self._admins = self._admins, {}
        for admin in admins.values():
            admin.close()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.scrape_once()
            except Exception:  # never let one bad cycle stop telemetry
                log.exception("telemetry scrape failed")
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow cycle: skip the missed ticks rather than bunch up
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    # --- one cycle ------------------------------------------------------------------------
    def _read(self, target: Target, snapshot: MeshSnapshot) -> tuple[list[Point], int, float]:
        cpu = time.thread_time()
        body = (target.read() if target.read is not None
                else self._admin(target.admin_socket).stats_bytes(STATS_PARAMS))
        raw = parse_json(body)
        version, cache = self._caches.get(target.name, (-1, {}))
        if version != snapshot.version:
            cache = {}
            self._caches[target.name] = (snapshot.version, cache)
        points = list(relabel(target.identity, target.node, raw, snapshot, cache))
        return points, len(body), time.thread_time() - cpu

    def _admin(self, socket_path: str) -> AdminClient:
        """The kept client of the proxy at ``socket_path`` (made on its first read)."""
        with self._lock:
            admin = self._admins.get(socket_path)
            if admin is None:
                admin = self._admins[socket_path] = AdminClient(socket_path,
                                                                timeout=self.timeout)
            return admin

    def _forget_admins(self, targets: list[Target]) -> None:
        """Close the clients of proxies that are no longer targets."""
        live = {t.admin_socket for t in targets}
        with self._lock:
            gone = [self._admins.pop(path) for path in list(self._admins) if path not in live]
        for admin in gone:
            admin.close()

    def read_now(self, wanted: Callable[[Target], bool]) -> list[Point] | None:
        """The points of the proxies ``wanted`` picks, read now and not stored: for a
        judgement that cannot wait for the next cycle (fail-fast reads a canary's
        sidecars this way). None when no proxy is picked or one of them does not answer:
        a sum over some of them would read as counters set back, and a proxy that has
        served nothing yet (no request counters at all) must still read as zero."""
        snapshot = self.snapshot()
        futures = [self._pool.submit(self._read, t, snapshot)
                   for t in self.targets() if wanted(t)]
        if not futures:
            return None
        points: list[Point] = []
        for future in futures:
            try:
                points.extend(future.result()[0])
            except Exception as exc:
                log.debug("telemetry: a live read did not answer: %s", exc)
                return None
        return points

    def scrape_once(self) -> None:
        started = time.monotonic()
        now = self.clock()
        snapshot = self.snapshot()
        targets = self.targets()
        futures = {t.name: (t, self._pool.submit(self._read, t, snapshot)) for t in targets}
        cpu_total, nbytes, read, errors = 0.0, 0, 0, 0
        per_proxy: dict[str, float] = {}
        for name, (target, future) in futures.items():
            try:
                points, size, cpu = future.result()
            except Exception as exc:
                errors += 1
                log.debug("telemetry: %s did not answer: %s", name, exc)
                continue
            self.store.update(name, target.epoch, points, now)
            cpu_total += cpu
            nbytes += size
            read += 1
            per_proxy[name] = cpu * 1000
        live = {t.name for t in targets}
        self._forget_admins(targets)
        for name in self.store.expire(now):
            self._caches.pop(name, None)
        for name in list(self._caches):
            if name not in live and name not in self.store.proxies():
                self._caches.pop(name, None)
        self.history.record(now, self._history_samples())
        if self.after_cycle is not None:
            try:
                self.after_cycle()
            except OSError:
                log.exception("telemetry: the step after a scrape cycle failed")
        elapsed = time.monotonic() - started
        with self._lock:
            c = self._cost
            c.cycles += 1
            c.proxies_read += read
            c.errors += errors
            c.cpu_seconds += cpu_total
            c.wall_seconds += elapsed
            c.bytes_read += nbytes
            c.last_cycle_seconds = elapsed
            c.last_targets = len(targets)
            c.per_proxy_cpu_ms = per_proxy

    def _history_samples(self) -> dict[HistoryKey, float]:
        out: dict[HistoryKey, float] = {}
        for proxy, metric, labels, value in self.store.series():
            if metric in KEPT:
                out.update(flatten(proxy, metric, labels, value, METRICS[metric][2]))
        return out

    def cost(self) -> Cost:
        with self._lock:
            c = self._cost
            return Cost(c.cycles, c.proxies_read, c.errors, c.cpu_seconds, c.wall_seconds,
                        c.bytes_read, c.last_cycle_seconds, c.last_targets,
                        dict(c.per_proxy_cpu_ms))

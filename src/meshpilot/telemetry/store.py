"""Cumulative Istio series per proxy that never go backwards.

Envoy's counters restart from zero when a proxy restarts, and a stat vanishes when its
cluster is removed. The store keeps, per (proxy, Envoy stat), the last raw value it saw,
and adds only *increments* to the Istio series: a raw value lower than the last one (or
a new process id for the proxy) means a restart, and the new raw value is the
increment. A stat that disappears simply stops adding, so its series keeps its value.

A proxy that goes away (its pod stopped) keeps its series for ``retention`` seconds
(Prometheus' default staleness/look-back is 5 minutes), then they are dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from meshpilot.telemetry.istio import HistValue, Labels, Point

RETENTION_SECONDS = 300.0

SeriesKey = tuple[str, Labels]  # (metric, labels)


@dataclass
class _Acc:
    value: float = 0.0
    buckets: list[float] | None = None
    sum: float = 0.0


@dataclass
class _Proxy:
    epoch: object
    last_seen: float
    last: dict[str, float | HistValue]
    acc: dict[SeriesKey, _Acc]


class SeriesStore:
    def __init__(self, retention: float = RETENTION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.retention = retention
        self.clock = clock
        self._lock = threading.Lock()
        self._proxies: dict[str, _Proxy] = {}
        self.resets = 0  # restarts detected (per proxy or per stat)

    def update(self, proxy: str, epoch: object, points: Iterable[Point],
               now: float | None = None) -> None:
        """Fold one scrape of ``proxy`` (whose process is ``epoch``) into the series."""
        now = self.clock() if now is None else now
        with self._lock:
            state = self._proxies.get(proxy)
            if state is None:
                state = self._proxies[proxy] = _Proxy(epoch, now, {}, {})
            elif state.epoch != epoch:
                state.epoch = epoch
                state.last = {}  # a new process: every stat starts again from zero
                self.resets += 1
            state.last_seen = now
            for p in points:
                prev = state.last.get(p.raw)
                acc = state.acc.get((p.metric, p.labels))
                if acc is None:
                    acc = state.acc[(p.metric, p.labels)] = _Acc()
                if p.hist is None:
                    cur = float(p.value)
                    if isinstance(prev, float) and cur >= prev:
                        acc.value += cur - prev
                    else:
                        if isinstance(prev, float):
                            self.resets += 1
                        acc.value += cur
                    state.last[p.raw] = cur
                    continue
                hist = p.hist
                if acc.buckets is None:
                    acc.buckets = [0.0] * len(hist.buckets)
                if isinstance(prev, HistValue) and hist.count >= prev.count:
                    deltas = [max(0.0, a - b) for a, b in zip(hist.buckets, prev.buckets,
                                                               strict=True)]
                    dsum = max(0.0, hist.sum - prev.sum)
                else:
                    if isinstance(prev, HistValue):
                        self.resets += 1
                    deltas, dsum = list(hist.buckets), hist.sum
                for i, d in enumerate(deltas):
                    acc.buckets[i] += d
                # keep the buckets cumulative even if Envoy's approximation wobbles
                for i in range(1, len(acc.buckets)):
                    acc.buckets[i] = max(acc.buckets[i], acc.buckets[i - 1])
                acc.sum += dsum
                state.last[p.raw] = hist

    def expire(self, now: float | None = None) -> list[str]:
        """Drop proxies not seen for ``retention`` seconds; returns their names."""
        now = self.clock() if now is None else now
        with self._lock:
            gone = [n for n, s in self._proxies.items() if now - s.last_seen > self.retention]
            for n in gone:
                del self._proxies[n]
        return gone

    def proxies(self) -> list[str]:
        with self._lock:
            return sorted(self._proxies)

    def series(self) -> Iterator[tuple[str, str, Labels, float | HistValue]]:
        """(proxy, metric, labels, value or histogram) for every series."""
        with self._lock:
            items = [(name, key, acc.value, list(acc.buckets) if acc.buckets else None,
                      acc.sum)
                     for name, state in self._proxies.items()
                     for key, acc in state.acc.items()]
        for name, (metric, labels), value, buckets, total in sorted(
                items, key=lambda i: (i[1][0], i[0], i[1][1])):
            if buckets is not None:
                yield name, metric, labels, HistValue(tuple(buckets), total)
            else:
                yield name, metric, labels, value

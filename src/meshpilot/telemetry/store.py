"""Cumulative Istio series per proxy that never go backwards.

Envoy's counters restart from zero when a proxy restarts, and a stat vanishes when its
cluster is removed. The store keeps, per (proxy, Envoy stat), the last raw value it saw,
and adds only *increments* to the Istio series: a raw value lower than the last one (or
a new process id for the proxy) means a restart, and the new raw value is the
increment. A stat that disappears simply stops adding, so its series keeps its value.

A proxy that goes away (its pod stopped) keeps its series for ``retention`` seconds
(Prometheus' default staleness/look-back is 5 minutes), then they are dropped.

:meth:`SeriesStore.export` and :meth:`SeriesStore.restore` turn the whole state (every
series' value and every stat's last raw value, with the process it came from) into plain
JSON data and back, so that a restarted control plane continues each series where the
previous one left it (:mod:`meshpilot.telemetry.persist`) rather than from what the
proxies' counters happen to say.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

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
        self.changes = 0  # bumped by every update or expiry that changed something

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
                self.changes += 1
            state.last_seen = now
            for p in points:
                prev = state.last.get(p.raw)
                acc = state.acc.get((p.metric, p.labels))
                if acc is None:
                    acc = state.acc[(p.metric, p.labels)] = _Acc()
                    self.changes += 1
                if p.hist is None:
                    state.last[p.raw] = self._add_counter(acc, prev, float(p.value))
                else:
                    state.last[p.raw] = self._add_histogram(acc, prev, p.hist)

    def _add_counter(self, acc: _Acc, prev: float | HistValue | None, cur: float) -> float:
        """Add a counter's increment since ``prev`` (all of ``cur`` after a reset)."""
        if isinstance(prev, float) and cur >= prev:
            acc.value += cur - prev
            self.changes += cur != prev
            return cur
        if isinstance(prev, float):
            self.resets += 1
        acc.value += cur
        self.changes += 1
        return cur

    def _add_histogram(self, acc: _Acc, prev: float | HistValue | None,
                       hist: HistValue) -> HistValue:
        """Add a histogram's increments since ``prev`` (all of ``hist`` after a reset)."""
        if acc.buckets is None:
            acc.buckets = [0.0] * len(hist.buckets)
        if isinstance(prev, HistValue) and hist.count >= prev.count:
            deltas = [max(0.0, a - b) for a, b in zip(hist.buckets, prev.buckets, strict=True)]
            dsum = max(0.0, hist.sum - prev.sum)
            self.changes += hist != prev
        else:
            if isinstance(prev, HistValue):
                self.resets += 1
            deltas, dsum = list(hist.buckets), hist.sum
            self.changes += 1
        for i, d in enumerate(deltas):
            acc.buckets[i] += d
        # keep the buckets cumulative even if Envoy's approximation wobbles
        for i in range(1, len(acc.buckets)):
            acc.buckets[i] = max(acc.buckets[i], acc.buckets[i - 1])
        acc.sum += dsum
        return hist

    def expire(self, now: float | None = None) -> list[str]:
        """Drop proxies not seen for ``retention`` seconds; returns their names."""
        now = self.clock() if now is None else now
        with self._lock:
            gone = [n for n, s in self._proxies.items() if now - s.last_seen > self.retention]
            for n in gone:
                del self._proxies[n]
            self.changes += bool(gone)
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

    # --- persistence ------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """The whole state as JSON data (see :meth:`restore`)."""
        with self._lock:
            return {name: {"epoch": _plain_epoch(state.epoch), "lastSeen": state.last_seen,
                           "last": {raw: _plain(v) for raw, v in state.last.items()},
                           "series": [[metric, [list(kv) for kv in labels], _plain_acc(acc)]
                                      for (metric, labels), acc in state.acc.items()]}
                    for name, state in self._proxies.items()}

    def restore(self, doc: Mapping[str, Any]) -> None:
        """Take back a state :meth:`export` gave, replacing this store's: a proxy whose
        process is the same continues from its last raw values, one whose process changed
        adds its new values on top (as :meth:`update` does for any restart)."""
        proxies: dict[str, _Proxy] = {}
        for name, item in doc.items():
            acc = {(metric, tuple((str(k), str(v)) for k, v in labels)): _acc(value)
                   for metric, labels, value in item["series"]}
            last = {raw: _value(v) for raw, v in item["last"].items()}
            proxies[name] = _Proxy(item["epoch"], float(item["lastSeen"]), last, acc)
        with self._lock:
            self._proxies = proxies
            self.changes += 1


def _plain_epoch(epoch: object) -> object:
    """A process id as is; anything else by its text (compared as such after a restore)."""
    return epoch if isinstance(epoch, int | str) else repr(epoch)


def _plain(value: float | HistValue) -> object:
    if isinstance(value, HistValue):
        return {"buckets": list(value.buckets), "sum": value.sum}
    return value


def _value(doc: Any) -> float | HistValue:
    if isinstance(doc, Mapping):
        return HistValue(tuple(float(b) for b in doc["buckets"]), float(doc["sum"]))
    return float(doc)


def _plain_acc(acc: _Acc) -> object:
    if acc.buckets is not None:
        return {"buckets": list(acc.buckets), "sum": acc.sum}
    return acc.value


def _acc(doc: Any) -> _Acc:
    if isinstance(doc, Mapping):
        return _Acc(buckets=[float(b) for b in doc["buckets"]], sum=float(doc["sum"]))
    return _Acc(value=float(doc))

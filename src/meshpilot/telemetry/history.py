"""A short in-memory history of the Istio series, fed by every scrape.

A ring of ``capacity`` scrapes: one timestamp array, and per series one array of values
(NaN where the series was absent), so ten minutes at one scrape a second costs about
8 bytes x 600 per series. Only what the embedded queries read is kept:
``istio_requests_total`` and the ``istio_request_duration_milliseconds`` buckets and count.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Callable, Iterable, Mapping

from meshpilot.telemetry.istio import REQUEST_DURATION, REQUESTS_TOTAL, HistValue, Labels

HistoryKey = tuple[str, Labels]  # (sample name e.g. istio_requests_total, labels incl. pod)
NAN = float("nan")

KEPT = frozenset({REQUESTS_TOTAL, REQUEST_DURATION})


def flatten(proxy: str, metric: str, labels: Labels, value: float | HistValue,
            bounds: tuple[float, ...]) -> Iterable[tuple[HistoryKey, float]]:
    """Prometheus sample names for one series (``_bucket`` with ``le``, ``_count``)."""
    full = (*labels, ("pod", proxy))
    if isinstance(value, HistValue):
        les = [_fmt(b) for b in bounds] + ["+Inf"]
        for le, count in zip(les, value.buckets, strict=True):
            yield (metric + "_bucket", (*full, ("le", le))), count
        yield (metric + "_count", full), value.count
        yield (metric + "_sum", full), value.sum
    else:
        yield (metric, full), value


def _fmt(bound: float) -> str:
    """``le`` as Envoy's Prometheus output writes it (``0.5``, ``25``, ``3600000``)."""
    if bound == math.inf:
        return "+Inf"
    return str(int(bound)) if bound == int(bound) else repr(bound)


class History:
    def __init__(self, capacity: int = 600) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._times = array("d", [NAN] * capacity)
        self._values: dict[HistoryKey, array] = {}
        self._n = 0  # scrapes recorded

    def record(self, t: float, samples: Mapping[HistoryKey, float]) -> None:
        with self._lock:
            i = self._n % self.capacity
            self._times[i] = t
            for key, arr in self._values.items():
                if key not in samples:
                    arr[i] = NAN
            for key, v in samples.items():
                arr = self._values.get(key)
                if arr is None:
                    arr = self._values[key] = array("d", [NAN] * self.capacity)
                arr[i] = v
            self._n += 1
            if self._n % self.capacity == 0:  # forget series absent for a whole ring
                for key in [k for k, a in self._values.items() if all(map(math.isnan, a))]:
                    del self._values[key]

    def latest_time(self) -> float | None:
        with self._lock:
            return None if self._n == 0 else self._times[(self._n - 1) % self.capacity]

    def times(self, start: float, end: float) -> list[float]:
        with self._lock:
            return [t for t in self._times if start <= t <= end]

    def select(self, name: str, predicate: Callable[[Labels], bool],
               start: float, end: float) -> dict[Labels, list[tuple[float, float]]]:
        """Samples with ``start <= t <= end`` of every series ``name`` that matches."""
        with self._lock:
            count = min(self._n, self.capacity)
            order = [(self._n - count + k) % self.capacity for k in range(count)]
            times = [(i, self._times[i]) for i in order if start <= self._times[i] <= end]
            out: dict[Labels, list[tuple[float, float]]] = {}
            for (sample_name, labels), arr in self._values.items():
                if sample_name != name or not predicate(labels):
                    continue
                points = [(t, arr[i]) for i, t in times if not math.isnan(arr[i])]
                if points:
                    out[labels] = points
            return out

    def __len__(self) -> int:
        return len(self._values)

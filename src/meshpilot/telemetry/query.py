"""Embedded queries over the history, computed exactly as Prometheus computes them.

``rate()`` is Prometheus' ``extrapolatedRate`` (v2.42: samples in ``[t - range, t]``,
counter resets, extrapolation to the range boundaries — at most half an average sample
interval beyond the first/last sample, and never below zero); ``histogram_quantile`` is
Prometheus' ``bucketQuantile`` (linear interpolation inside the bucket; the highest
finite bound when the rank falls in ``+Inf``). So an embedded answer agrees with what a
Prometheus scraping the same series computes, up to the scrape timing.

Every answer says what it rests on: ``requests`` (the increase of the request counter
over the window, without extrapolation) and ``samples`` (scrapes in the window).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from meshpilot.telemetry.history import History
from meshpilot.telemetry.istio import REQUEST_DURATION, REQUESTS_TOTAL, Labels

NAN = float("nan")
Samples = Sequence[tuple[float, float]]


def extrapolated_rate(samples: Samples, range_start: float, range_end: float,
                      *, is_counter: bool = True, is_rate: bool = True) -> float | None:
    """Prometheus' ``rate()``/``increase()`` of one series; None with < 2 samples."""
    if len(samples) < 2:
        return None
    first_t, first_v = samples[0]
    last_t, last_v = samples[-1]
    result = last_v - first_v
    if is_counter:
        last = 0.0
        for _, v in samples:
            if v < last:
                result += last
            last = v
    duration_to_start = first_t - range_start
    duration_to_end = range_end - last_t
    sampled = last_t - first_t
    if sampled <= 0:
        return None
    average = sampled / (len(samples) - 1)
    if is_counter and result > 0 and first_v >= 0:
        duration_to_zero = sampled * (first_v / result)
        duration_to_start = min(duration_to_start, duration_to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += duration_to_start if duration_to_start < threshold else average / 2
    interval += duration_to_end if duration_to_end < threshold else average / 2
    result *= interval / sampled
    if is_rate:
        result /= range_end - range_start
    return result


def raw_increase(samples: Samples) -> float:
    """The increase between the first and last sample (resets handled), no
    extrapolation: how many events the answer rests on."""
    total, last = 0.0, None
    for _, v in samples:
        if last is not None:
            total += v - last if v >= last else v
        last = v
    return total


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus' ``bucketQuantile`` over (upper bound, cumulative count) pairs."""
    if math.isnan(q):
        return NAN
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for le, count in buckets:
        merged[le] = merged.get(le, 0.0) + count
    ordered = sorted(merged.items())
    if not ordered or not math.isinf(ordered[-1][0]):
        return NAN
    # ensureMonotonic
    fixed: list[tuple[float, float]] = []
    peak = -math.inf
    for le, count in ordered:
        peak = max(peak, count)
        fixed.append((le, peak))
    if len(fixed) < 2:
        return NAN
    observations = fixed[-1][1]
    if observations == 0:
        return NAN
    rank = q * observations
    b = next((i for i in range(len(fixed) - 1) if fixed[i][1] >= rank), len(fixed) - 1)
    if b == len(fixed) - 1:
        return fixed[-2][0]
    if b == 0 and fixed[0][0] <= 0:
        return fixed[0][0]
    start, end, count = 0.0, fixed[b][0], fixed[b][1]
    if b > 0:
        start = fixed[b - 1][0]
        count -= fixed[b - 1][1]
        rank -= fixed[b - 1][1]
    return start + (end - start) * (rank / count)


# --- label matchers -------------------------------------------------------------------

@dataclass(frozen=True)
class Matcher:
    """A PromQL label matcher: ``=``, ``!=``, ``=~``, ``!~`` (regexes fully anchored)."""

    name: str
    op: str
    value: str

    def __call__(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit

    @staticmethod
    def parse(text: str) -> Matcher:
        m = re.fullmatch(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"?(.*?)\"?\s*", text)
        if m is None:
            raise ValueError(f"bad label matcher {text!r}; use name=value, name!=value, "
                             "name=~regex or name!~regex")
        if m.group(2) in ("=~", "!~"):
            re.compile(m.group(3))
        return Matcher(m.group(1), m.group(2), m.group(3))


def _predicate(matchers: Sequence[Matcher]) -> Callable[[Labels], bool]:
    def match(labels: Labels) -> bool:
        d = dict(labels)
        return all(m(d) for m in matchers)
    return match


# --- the query engine -----------------------------------------------------------------

Group = tuple[str, ...]


class Query:
    """PromQL-like aggregations over a :class:`History`."""

    def __init__(self, history: History) -> None:
        self.history = history

    def _window(self, window: float, at: float | None) -> tuple[float, float]:
        end = at if at is not None else (self.history.latest_time() or 0.0)
        return end - window, end

    def rate_by(self, name: str, matchers: Sequence[Matcher], by: Sequence[str],
                window: float, at: float | None = None) -> dict[Group, float]:
        """``sum by (by) (rate(name{matchers}[window]))``."""
        start, end = self._window(window, at)
        out: dict[Group, float] = {}
        for labels, samples in self.history.select(name, _predicate(matchers),
                                                   start, end).items():
            r = extrapolated_rate(samples, start, end)
            if r is None:
                continue
            d = dict(labels)
            key = tuple(d.get(b, "") for b in by)
            out[key] = out.get(key, 0.0) + r
        return out

    def increase_by(self, name: str, matchers: Sequence[Matcher], by: Sequence[str],
                    window: float, at: float | None = None) -> dict[Group, float]:
        """Events counted in the window, without extrapolation. A series born inside
        the window (absent from earlier scrapes the history holds) started from zero,
        so its first value counts too."""
        start, end = self._window(window, at)
        recorded = self.history.times(-math.inf, end)
        out: dict[Group, float] = {}
        for labels, samples in self.history.select(name, _predicate(matchers),
                                                   -math.inf, end).items():
            inside = [(t, v) for t, v in samples if t >= start]
            if not inside:
                continue
            value = raw_increase(inside)
            if len(inside) == len(samples) and any(t < inside[0][0] for t in recorded):
                value += inside[0][1]
            d = dict(labels)
            key = tuple(d.get(b, "") for b in by)
            out[key] = out.get(key, 0.0) + value
        return out

    def samples_in(self, window: float, at: float | None = None) -> int:
        """Scrapes recorded in the window."""
        start, end = self._window(window, at)
        return len(self.history.times(start, end))

    def summary(self, matchers: Sequence[Matcher], by: Sequence[str] = (),
                window: float = 60.0, quantiles: Sequence[float] = (0.5, 0.9, 0.99),
                at: float | None = None) -> list[dict[str, object]]:
        """Per group: request rate (req/s), success rate (% non-5xx), latency quantiles
        (ms) and the number of requests they rest on."""
        by = tuple(by)
        total = self.rate_by(REQUESTS_TOTAL, matchers, by, window, at)
        errors = self.rate_by(REQUESTS_TOTAL, [*matchers, Matcher("response_code", "=~",
                                                                  "5..")], by, window, at)
        requests = self.increase_by(REQUESTS_TOTAL, matchers, by, window, at)
        failed = self.increase_by(REQUESTS_TOTAL, [*matchers, Matcher(
            "response_code", "=~", "5..")], by, window, at)
        buckets = self.rate_by(REQUEST_DURATION + "_bucket", matchers, (*by, "le"), window, at)
        per_group: dict[Group, list[tuple[float, float]]] = {}
        for key, value in buckets.items():
            per_group.setdefault(key[:-1], []).append((float(key[-1]), value))
        rows = []
        for key in sorted(set(total) | set(requests)):
            rate = total.get(key, 0.0)
            row: dict[str, object] = dict(zip(by, key, strict=True))
            row["requestRate"] = rate
            row["successRate"] = (100.0 * (1.0 - errors.get(key, 0.0) / rate)
                                  if rate > 0 else None)
            row["requests"] = round(requests.get(key, 0.0))
            row["errors"] = round(failed.get(key, 0.0))
            latency = {}
            for q in quantiles:
                v = histogram_quantile(q, per_group.get(key, []))
                latency[f"p{q * 100:g}"] = None if math.isnan(v) else v
            row["latencyMs"] = latency
            rows.append(row)
        return rows

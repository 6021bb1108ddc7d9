"""Embedded queries compute what Prometheus computes (rate, histogram_quantile)."""

from __future__ import annotations

import math

import pytest

from meshpilot.telemetry.history import History
from meshpilot.telemetry.query import (
    Matcher,
    Query,
    extrapolated_rate,
    histogram_quantile,
    raw_increase,
)


def test_rate_without_extrapolation_needed() -> None:
    # samples every 10 s exactly covering [0, 60]: rate = increase / 60
    samples = [(t, t * 2.0) for t in range(0, 61, 10)]
    assert extrapolated_rate(samples, 0, 60) == pytest.approx(2.0)


def test_rate_extrapolates_like_prometheus() -> None:
    # Prometheus: range [0, 60], samples at 15..45 (every 10 s) of 10, 20, 30, 40
    samples = [(15.0, 10.0), (25.0, 20.0), (35.0, 30.0), (45.0, 40.0)]
    # result 30 over 30 s sampled; to start 15 s > 11 s threshold: +5; end 15 s: +5
    # durationToZero = 30 * 10/30 = 10 s < 15 → start = 10 s, still >= 11? no: 10 < 11
    # → extrapolate 10 s at the start, 5 s at the end: 30 * 45/30 = 45 → /60
    assert extrapolated_rate(samples, 0, 60) == pytest.approx(45 / 60)
    assert extrapolated_rate(samples[:1], 0, 60) is None


def test_rate_handles_counter_resets() -> None:
    samples = [(0.0, 5.0), (10.0, 10.0), (20.0, 2.0), (30.0, 6.0)]
    # increase: 5 + (10 reset → +10) + ... = 6 - 5 + 10 = 11 over 30 s exactly covered
    assert extrapolated_rate(samples, 0, 30, is_rate=False) == pytest.approx(11.0)
    assert raw_increase(samples) == 11.0


def test_histogram_quantile_is_prometheus_bucket_quantile() -> None:
    buckets = [(50.0, 0.0), (100.0, 10.0), (250.0, 10.0), (math.inf, 10.0)]
    assert histogram_quantile(0.99, buckets) == pytest.approx(99.5)
    assert histogram_quantile(0.5, buckets) == pytest.approx(75.0)
    # first bucket interpolates from 0
    assert histogram_quantile(0.5, [(10.0, 4.0), (math.inf, 4.0)]) == pytest.approx(5.0)
    # rank in +Inf: the highest finite bound
    assert histogram_quantile(0.99, [(10.0, 1.0), (math.inf, 4.0)]) == 10.0
    assert math.isnan(histogram_quantile(0.5, [(10.0, 0.0), (math.inf, 0.0)]))
    assert math.isnan(histogram_quantile(0.5, [(10.0, 1.0)]))  # no +Inf bucket
    assert histogram_quantile(1.5, buckets) == math.inf
    # non-monotonic input is made monotonic; duplicate bounds are merged
    assert histogram_quantile(0.5, [(10.0, 4.0), (20.0, 3.0), (math.inf, 4.0)]) == \
        pytest.approx(5.0)


def test_matchers() -> None:
    labels = {"destination_workload": "myapp-v2", "response_code": "503"}
    assert Matcher.parse('destination_workload=~"myapp-.*"')(labels)
    assert not Matcher.parse("response_code!~5.*")(labels)
    assert Matcher.parse("response_code!=200")(labels)
    with pytest.raises(ValueError):
        Matcher.parse("nonsense")


def _series(code: str, version: str) -> tuple[tuple[str, str], ...]:
    return (("reporter", "destination"), ("destination_workload", f"myapp-{version}"),
            ("destination_version", version), ("response_code", code), ("pod", "p"))


def test_summary_rate_success_quantiles_and_request_count() -> None:
    history = History(capacity=100)
    le = ["50", "100", "+Inf"]
    for t in range(0, 61):
        ok, bad = 9.0 * t, 1.0 * t  # 10 req/s, 10% errors
        samples = {("istio_requests_total", _series("200", "v2")): ok,
                   ("istio_requests_total", _series("500", "v2")): bad}
        for bound, share in zip(le, (0.0, 1.0, 1.0), strict=True):
            key = ("istio_request_duration_milliseconds_bucket",
                   (*_series("unknown", "v2"), ("le", bound)))
            samples[key] = share * 10.0 * t
        history.record(float(t), samples)
    (row,) = Query(history).summary([Matcher("destination_workload", "=", "myapp-v2")],
                                    window=60, quantiles=(0.5, 0.99))
    assert row["requestRate"] == pytest.approx(10.0)
    assert row["successRate"] == pytest.approx(90.0)
    assert row["requests"] == 600 and row["errors"] == 60
    assert row["latencyMs"] == {"p50": pytest.approx(75.0), "p99": pytest.approx(99.5)}
    assert Query(history).samples_in(10) == 11


def test_series_born_inside_the_window_count_from_zero() -> None:
    history = History(capacity=100)
    for t in range(0, 11):
        samples = {}
        if t >= 5:
            samples[("istio_requests_total", _series("200", "v1"))] = 3.0 + (t - 5)
        history.record(float(t), samples)
    (row,) = Query(history).summary([], window=8)
    assert row["requests"] == 8  # 3 before its first scrape, then 5 more

"""The series state on disk: a restarted control plane continues every series where the
previous one left it (Prometheus counters must not go backwards: its "counter" type)."""

from __future__ import annotations

import stat
from pathlib import Path

from meshpilot.telemetry.istio import HistValue, Point
from meshpilot.telemetry.persist import CounterFile
from meshpilot.telemetry.store import SeriesStore

LABELS = (("reporter", "destination"), ("response_code", "200"))


def _counter(raw: str, value: float) -> Point:
    return Point("istio_requests_total", LABELS, raw, value=value)


def _hist(raw: str, buckets: tuple[float, ...], total: float) -> Point:
    return Point("istio_request_duration_milliseconds", LABELS, raw,
                 hist=HistValue(buckets, total))


def _values(store: SeriesStore) -> dict[tuple[str, str], float | HistValue]:
    return {(proxy, metric): v for proxy, metric, _, v in store.series()}


def _restarted(path: Path) -> SeriesStore:
    store = SeriesStore()
    assert CounterFile(path, store).load()
    return store


def test_a_restart_continues_from_the_saved_series(tmp_path: Path) -> None:
    """Given a proxy that restarted once (its series 15 while its own counter says 5),
    when the control plane restarts and the same proxy process is read again, the
    series continues from 15 by the increment, not from the proxy's 5."""
    path = tmp_path / "series.json"
    store = SeriesStore()
    store.update("p", 100, [_counter("a", 10), _hist("h", (1, 3), 4.0)], now=0)
    store.update("p", 200, [_counter("a", 5), _hist("h", (0, 1), 2.0)], now=1)  # restarted
    assert CounterFile(path, store).save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = _restarted(path)
    assert _values(again) == _values(store)
    again.update("p", 200, [_counter("a", 7), _hist("h", (0, 2), 3.0)], now=2)  # same process
    values = _values(again)
    assert values["p", "istio_requests_total"] == 17
    hist = values["p", "istio_request_duration_milliseconds"]
    assert isinstance(hist, HistValue) and hist.buckets == (1, 5) and hist.sum == 7.0


def test_a_proxy_that_is_a_new_process_adds_on_top(tmp_path: Path) -> None:
    """A proxy restarted while the control plane was down reports from zero: its counts
    are added to the saved series (as after any proxy restart)."""
    path = tmp_path / "series.json"
    store = SeriesStore()
    store.update("p", 100, [_counter("a", 10)], now=0)
    CounterFile(path, store).save()
    again = _restarted(path)
    again.update("p", 300, [_counter("a", 2)], now=5)
    assert _values(again)["p", "istio_requests_total"] == 12


def test_saved_only_when_something_changed_and_spaced_by_its_cost(tmp_path: Path) -> None:
    """A write waits SPACING times the last write's duration: it never takes more than a
    small share of a CPU, whatever the number of series; on stop it is written anyway."""
    path = tmp_path / "series.json"
    store = SeriesStore()
    ticks = iter([0.0, 0.5,   # the first write, which took 0.5 s: none before 10.5
                  1.0, 10.6, 10.7, 12.0, 12.0])
    counters = CounterFile(path, store, clock=lambda: next(ticks))
    store.update("p", 1, [_counter("a", 1)], now=0)
    assert counters.save()
    store.update("p", 1, [_counter("a", 1)], now=1)  # read again, nothing new
    assert not counters.save()
    store.update("p", 1, [_counter("a", 2)], now=2)
    assert not counters.save()  # at 1.0: too soon after a write of 0.5 s
    assert counters.save()  # at 10.6: written (10.6 to 10.7, next at 12.7)
    store.update("p", 1, [_counter("a", 3)], now=3)
    assert counters.save(now=True)  # on stop: whatever the spacing


def test_a_missing_or_broken_file_starts_afresh(tmp_path: Path) -> None:
    store = SeriesStore()
    assert not CounterFile(tmp_path / "none.json", store).load()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert not CounterFile(broken, store).load()
    other = tmp_path / "other.json"
    other.write_text('{"format": 99, "proxies": {}}')
    assert not CounterFile(other, store).load()
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"format": 1, "proxies": {"p": {"epoch": 1}}}')
    assert not CounterFile(malformed, store).load()
    assert list(store.series()) == []

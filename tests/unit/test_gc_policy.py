"""Full garbage collections wait for a quiet control plane (and still happen)."""

from __future__ import annotations

import gc
import time

from meshpilot.gc_policy import NEVER, QuietCollector


def test_full_collections_only_when_quiet_and_thresholds_restored() -> None:
    before = gc.get_threshold()
    idle = {"s": 0.0}
    collector = QuietCollector(lambda: idle["s"], quiet=0.2, every=0.1, longest=60).start()
    try:
        assert gc.get_threshold()[2] == NEVER  # no automatic full collection
        time.sleep(0.6)
        assert collector.collections == 0  # busy all along
        idle["s"] = 5.0
        deadline = time.monotonic() + 5
        while collector.collections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.collections >= 1  # quiet: collected
    finally:
        collector.stop()
    assert gc.get_threshold() == before


def test_a_never_idle_control_plane_is_still_collected_at_twice_the_longest() -> None:
    collector = QuietCollector(lambda: 0.0, quiet=10, every=0.1, longest=0.15).start()
    try:
        deadline = time.monotonic() + 5
        while collector.collections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.collections >= 1
    finally:
        collector.stop()


def test_an_overdue_collection_waits_for_a_lull_between_pushes() -> None:
    """The policy itself, without the thread's timing (a loaded machine may hold a thread
    back for seconds): before ``longest`` only a quiet control plane is collected; past it
    a lull between pushes will do, never the inside of a push; past twice it, anything."""
    idle = {"s": 0.0}
    collector = QuietCollector(lambda: idle["s"], quiet=10, every=0.1, longest=2.0,
                               lull=0.05)
    assert not collector.due(2.1)  # overdue, but a push is in flight (no lull yet)
    idle["s"] = 0.06  # the last push was ACKed 60 ms ago: short of quiet, a lull
    assert not collector.due(1.9)  # not overdue: a lull is not quiet enough
    assert collector.due(2.1)  # overdue: the lull is taken
    idle["s"] = 0.0
    assert collector.due(4.0)  # twice the longest: collected inside a push all the same
    idle["s"] = 10.0
    assert collector.due(0.2)  # quiet, past ``every``
    assert not collector.due(0.05)  # quiet, but collected less than ``every`` ago


def test_the_collector_takes_a_lull_once_overdue() -> None:
    """The thread acts on it: overdue and in a lull, it collects as a lull, not as the
    forced collection (longest of 1 s: overdue at 1 s, forced at 2 s; a lull from the
    start, so only a thread held back for a whole second would be forced)."""
    collector = QuietCollector(lambda: 0.06, quiet=10, every=0.1, longest=1.0,
                               lull=0.05).start()
    started = time.monotonic()
    try:
        while collector.collections == 0 and time.monotonic() < started + 5:
            time.sleep(0.02)
        assert collector.collections >= 1
        assert collector.last_reason == "lull"
    finally:
        collector.stop()

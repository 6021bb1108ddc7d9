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
    idle = {"s": 0.0}
    started = time.monotonic()
    # overdue after 2 s, forced after 4 s: the lull must be taken well before (a loaded
    # machine may hold the collector's thread back for a while, not for 1.5 s)
    collector = QuietCollector(lambda: idle["s"], quiet=10, every=0.1, longest=2.0,
                               lull=0.05).start()
    try:
        time.sleep(2.1)  # overdue, but a push is in flight (no lull yet)
        assert collector.collections == 0
        idle["s"] = 0.06  # the last push was ACKed 60 ms ago: short of quiet, a lull
        forced_at = started + 4.0  # what would collect anyway, lull or not
        while collector.collections == 0 and time.monotonic() < forced_at - 0.4:
            time.sleep(0.02)
        assert collector.collections >= 1  # the lull, before the forced one was due
    finally:
        collector.stop()

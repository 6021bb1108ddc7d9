"""The mesh rebuild's pacing: a rollout's status write and its route write, a few
milliseconds apart, are both rebuilt at once; a longer burst is held to one rebuild per
interval on average, as the fixed gap did."""

from __future__ import annotations

import pytest

from meshpilot.server.pacing import RebuildPacer


def test_two_changes_in_quick_succession_go_out_at_once() -> None:
    pacer = RebuildPacer(0.05, burst=2)
    assert pacer.wait(100.0) == 0.0
    pacer.take(100.0)
    assert pacer.wait(100.005) == 0.0  # the route write right after the status write
    pacer.take(100.005)
    assert pacer.wait(100.006) == pytest.approx(0.044)  # a third waits: 0.12 tokens left


def test_a_long_burst_is_held_to_the_interval_on_average() -> None:
    pacer = RebuildPacer(0.05, burst=2)
    now, starts = 0.0, []
    for _ in range(22):  # as the rebuild loop: wait as told, then take
        now += pacer.wait(now)
        pacer.take(now)
        starts.append(now)
    assert starts[1] == 0.0
    assert starts[-1] == pytest.approx(20 * 0.05)  # two at once, then one per interval


def test_after_a_quiet_spell_the_bucket_is_full_again() -> None:
    pacer = RebuildPacer(0.05, burst=2)
    for t in (0.0, 0.0, 0.05):
        pacer.wait(t)
        pacer.take(t)
    assert pacer.wait(0.06) > 0
    assert pacer.wait(1.0) == 0.0
    pacer.take(1.0)
    assert pacer.wait(1.0) == 0.0

"""Crash-loop back-off of a pod's processes."""

from __future__ import annotations

from meshpilot.runtime.pod import BACKOFF_MAX_SECONDS, BACKOFF_RESET_SECONDS, _Backoff


def test_quick_exits_double_the_wait_up_to_the_cap() -> None:
    backoff = _Backoff()
    waits = [backoff.after_exit(ran_for=0.5) for _ in range(7)]
    assert waits == [1, 2, 4, 8, 16, BACKOFF_MAX_SECONDS, BACKOFF_MAX_SECONDS]


def test_a_long_run_starts_the_wait_over() -> None:
    backoff = _Backoff()
    for _ in range(4):
        backoff.after_exit(ran_for=0.5)
    assert backoff.after_exit(ran_for=BACKOFF_RESET_SECONDS) == 1
    assert backoff.after_exit(ran_for=BACKOFF_RESET_SECONDS - 1) == 2


def test_failed_starts_never_start_the_wait_over() -> None:
    backoff = _Backoff()
    assert [backoff.after_failed_start() for _ in range(3)] == [1, 2, 4]
    assert backoff.after_exit(ran_for=0.0) == 8

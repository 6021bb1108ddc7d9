"""One RollingUpdate step: surge one pod, never drop below the ready replicas."""

from __future__ import annotations

from meshpilot.runtime.runtime import _rolling_step


def test_a_rollout_starts_by_surging_one_new_pod() -> None:
    assert _rolling_step(2, new=0, old=2, ready=2) == (0, 1)


def test_an_old_pod_waits_until_the_new_one_is_ready() -> None:
    assert _rolling_step(2, new=1, old=2, ready=2) == (0, 0)


def test_a_ready_new_pod_replaces_one_old_pod_and_surges_the_next() -> None:
    assert _rolling_step(2, new=1, old=2, ready=3) == (1, 1)


def test_the_last_old_pod_goes_once_the_new_revision_is_ready() -> None:
    assert _rolling_step(2, new=2, old=1, ready=3) == (1, 0)


def test_old_pods_are_not_stopped_while_too_few_are_ready() -> None:
    # Two old pods ready, the replica count raised to three mid-rollout.
    assert _rolling_step(3, new=0, old=2, ready=2) == (0, 2)

"""One lock per (namespace, name): what keeps a Canary's or a Rollout's steps serial
while different objects step at the same time."""

from __future__ import annotations

import threading


class KeyedLocks:
    """A lock per key, made on first use and never removed, so two threads can never
    hold different locks for the same object."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def of(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

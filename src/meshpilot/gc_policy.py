"""When Python's cycle collector may run in the control plane: not in the middle of a push.

A full (oldest-generation) collection walks every tracked object: with a mesh of 1,000
services that is a million objects and a pause of hundreds of milliseconds, which, if it
falls inside a push, is what a thousand proxies wait for. So the control plane keeps the
young collections (less often than Python's default) and runs full ones itself, when the
xDS server has been quiet for a moment (or, at the latest, every ``longest`` seconds, so
cyclic garbage stays bounded whatever the load). Objects that survive the start-up are frozen (never
scanned again), as they live as long as the process.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

NEVER = 1 << 30
"""A gen-2 threshold that automatic collection never reaches."""
YOUNG = 10_000
"""Allocations between young collections (Python's default: 700). A push to a thousand
proxies allocates some 30,000 short-lived objects; at the default, the forty-odd young
collections it triggered cost as much as the push's own work (measured: ~165 vs ~100 us
per proxy), at 10,000 they cost next to nothing."""


class QuietCollector:
    """Full collections only while ``idle()`` (seconds without xDS activity) ≥ ``quiet``,
    at most every ``every`` seconds, and at least every ``longest`` seconds."""

    def __init__(
        self, idle: Callable[[], float], *, quiet: float = 2.0, every: float = 10.0,
        longest: float = 120.0,
    ) -> None:
        self._idle = idle
        self._quiet = quiet
        self._every = every
        self._longest = longest
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: tuple[int, int, int] | None = None
        self.collections = 0
        self.last_pause = 0.0

    def start(self) -> QuietCollector:
        gc.collect()
        gc.freeze()  # what start-up made lives as long as the process: never scan it again
        self._saved = gc.get_threshold()
        gc.set_threshold(YOUNG, self._saved[1], NEVER)
        self._thread = threading.Thread(target=self._run, name="gc-when-quiet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(min(self._quiet, self._every) / 2):
            since = time.monotonic() - last
            if since >= self._longest or (since >= self._every and self._idle() >= self._quiet):
                t0 = time.perf_counter()
                gc.collect()
                self.last_pause = time.perf_counter() - t0
                self.collections += 1
                last = time.monotonic()
                log.debug("full collection: %.0f ms", self.last_pause * 1000)

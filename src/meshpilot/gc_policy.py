"""When Python's cycle collector may run in the control plane: not in the middle of a push.

A full (oldest-generation) collection walks every tracked object: with a mesh of 1,000
services that is a million objects and a pause of hundreds of milliseconds, which, if it
falls inside a push, is what a thousand proxies wait for. So the control plane keeps the
young collections (less often than Python's default) and runs full ones itself, when the
xDS server has been quiet for a moment. Under steady churn it never is: past ``longest``
seconds the collection is overdue and takes the first lull between pushes (``lull``
seconds without xDS activity: the last push ACKed), and past twice that it runs whatever
the load, so cyclic garbage stays bounded. Objects that survive the start-up are frozen
(never scanned again), as they live as long as the process.
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
proxies allocates some 30,000 short-lived objects: young collections must stay a small
share of a push's work (``benchmarks/stream_work.py`` and ``convergence.py`` run with this
policy, as the control plane does)."""


class QuietCollector:
    """Full collections only while ``idle()`` (seconds without xDS activity) ≥ ``quiet``,
    at most every ``every`` seconds; overdue after ``longest`` seconds (then a lull of
    ``lull`` seconds will do), forced after ``2 * longest``."""

    def __init__(
        self, idle: Callable[[], float], *, quiet: float = 2.0, every: float = 10.0,
        longest: float = 120.0, lull: float = 0.05,
    ) -> None:
        self._idle = idle
        self._quiet = quiet
        self._every = every
        self._longest = longest
        self._lull = lull
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: tuple[int, int, int] | None = None
        self.collections = 0
        self.last_pause = 0.0
        self.last_reason = ""
        """Why the last full collection ran: ``quiet``, ``lull`` (overdue) or ``forced``."""

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

    def due(self, since: float) -> bool:
        """Whether to collect now, ``since`` seconds after the last full collection."""
        if since >= 2 * self._longest:
            return True
        idle = self._idle()
        if since >= self._longest:
            return idle >= self._lull  # overdue: between two pushes, not inside one
        return since >= self._every and idle >= self._quiet

    def _reason(self, since: float) -> str:
        if since >= 2 * self._longest:
            return "forced"
        return "lull" if since >= self._longest else "quiet"

    def _run(self) -> None:
        last = time.monotonic()
        relaxed = min(self._quiet, self._every) / 2
        while not self._stop.wait(
                relaxed if time.monotonic() - last < self._longest else self._lull / 2):
            since = time.monotonic() - last
            if self.due(since):
                t0 = time.perf_counter()
                gc.collect()
                self.last_pause = time.perf_counter() - t0
                self.last_reason = self._reason(since)
                self.collections += 1
                last = time.monotonic()
                log.debug("full collection (%s): %.0f ms", self.last_reason,
                          self.last_pause * 1000)

"""One worker thread per Canary, so that one Canary's slow tick never delays another's.

Flagger runs each Canary's analysis on its own goroutine and ticker (``CanaryJob`` in
``pkg/controller/job.go``, started by ``scheduleCanaries``): a webhook that takes its
whole timeout holds up that Canary only. ``CanaryWorkers`` does the same with threads.

Invariants: a Canary's jobs run on its one thread, in order, so never two at once; tick
requests that arrive while a tick runs are merged into one more tick (a slow Canary
catches up once, not once per missed request); no job starts after ``stop``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name) of a Canary."""
Tick = Callable[[str, str], object]
Job = Callable[[], object]


class _Worker:
    """The thread that runs one Canary's ticks and jobs."""

    def __init__(self, key: Key, tick: Tick, name: str) -> None:
        self.key = key
        self._tick = tick
        self._cond = threading.Condition()
        self._tick_due = False
        self._jobs: deque[Job] = deque()
        self._busy = False
        self._closed = False
        self.thread = threading.Thread(target=self._run, name=f"{name} {key[0]}/{key[1]}",
                                       daemon=True)

    def kick(self) -> None:
        with self._cond:
            self._tick_due = True
            self._cond.notify()

    def submit(self, job: Job) -> None:
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()

    def close(self) -> None:
        """Run nothing more; a job already running finishes."""
        with self._cond:
            self._closed = True
            self._tick_due = False
            self._jobs.clear()
            self._cond.notify()

    def close_if_idle(self) -> bool:
        """Close when nothing runs or waits to run; True when closed."""
        with self._cond:
            if self._busy or self._tick_due or self._jobs:
                return False
            self._closed = True
            self._cond.notify()
            return True

    def _next(self) -> Job | None:
        with self._cond:
            while not (self._closed or self._tick_due or self._jobs):
                self._cond.wait()
            if self._closed:
                return None
            self._busy = True
            if self._jobs:
                return self._jobs.popleft()
            self._tick_due = False
            return self._run_tick

    def _run_tick(self) -> None:
        self._tick(*self.key)

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                job()
            except Exception:  # one failed tick must not end the Canary's worker
                log.exception("delivery work for %s/%s failed", *self.key)
            finally:
                with self._cond:
                    self._busy = False


class CanaryWorkers:
    """Runs ``tick(namespace, name)`` for each Canary on that Canary's own thread."""

    def __init__(self, tick: Tick, name: str = "delivery") -> None:
        self._tick = tick
        self._name = name
        self._lock = threading.Lock()
        self._workers: dict[Key, _Worker] = {}
        self._stopped = False

    def kick(self, namespace: str, name: str) -> None:
        """Ask for one tick of this Canary soon; merged with one already waiting."""
        worker = self._worker((namespace, name))
        if worker is not None:
            worker.kick()

    def submit(self, namespace: str, name: str, job: Job) -> None:
        """Run ``job`` on this Canary's thread, after the work already queued there."""
        worker = self._worker((namespace, name))
        if worker is not None:
            worker.submit(job)

    def retire_others(self, keep: Iterable[Key]) -> None:
        """End the idle workers of Canaries not in ``keep`` (deleted ones); a worker
        with queued work stays until that is done."""
        wanted = set(keep)
        with self._lock:
            for key in [k for k in self._workers if k not in wanted]:
                if self._workers[key].close_if_idle():
                    del self._workers[key]

    def keys(self) -> list[Key]:
        with self._lock:
            return sorted(self._workers)

    def stop(self, timeout: float) -> bool:
        """Start nothing more and wait up to ``timeout`` seconds in all for the running
        ticks to end; False when one still runs (e.g. a webhook longer than that)."""
        with self._lock:
            self._stopped = True
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.close()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        running = [w.key for w in workers if w.thread.is_alive()]
        if running:
            log.warning("delivery ticks still running at shutdown: %s", running)
        return not running

    def _worker(self, key: Key) -> _Worker | None:
        with self._lock:
            if self._stopped:
                return None
            worker = self._workers.get(key)
            if worker is None:
                worker = self._workers[key] = _Worker(key, self._tick, self._name)
                worker.thread.start()
            return worker

"""In-process watch subscriptions of the store.

Each Watch owns a queue. The store pushes events into it while it still holds its
commit lock, right after the SQLite transaction commits, so every watcher sees commits
in revision order, whichever thread made them. A watch given a ``limit`` (an API
client's) holds at most that many undelivered events: a reader that falls further
behind is cut off (``overflowed``) rather than let the server's memory grow with every
write; it resumes from the last revision it saw, as a Kubernetes client does after
410 Gone. The control plane's own watches have no limit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

from meshpilot.store.model import WatchEvent

_CLOSED = object()


class Watch:
    """A stream of WatchEvents; iterate (blocking) or poll with ``get(timeout)``.

    Iteration ends when the watch is closed, by ``close()`` or by the store
    closing. With SQLite, only commits made through the same SqliteStore instance
    are seen live (another process writing the same file is not observed); with etcd,
    every replica's commits are.
    """

    def __init__(self, since: int, unsubscribe: Callable[[Watch], None],
                 limit: int | None = None) -> None:
        # Events at or below ``since`` are dropped, so a watch asked to start
        # after the current revision does not see the revisions in between.
        self._since = since
        self._unsubscribe = unsubscribe
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._limit = limit
        self._pending = 0  # events queued and not yet taken; guarded by the store's lock
        self._taken = 0
        self._taken_lock = threading.Lock()
        self.overflowed = False
        """Set when the reader fell more than ``limit`` events behind: nothing more is
        queued; what was queued is still read, then ``get`` answers None."""

    @property
    def since(self) -> int:
        """The revision the watch starts after: it delivers every later commit."""
        return self._since

    @property
    def closed(self) -> bool:
        """True once the watch was closed; queued events are then discarded."""
        return self._closed.is_set()

    def _deliver(self, events: Iterable[WatchEvent]) -> None:
        """Called by the store (under its lock) to enqueue events in order."""
        if self._closed.is_set() or self.overflowed:
            return
        fresh = [e for e in events if e.resource_version > self._since]
        if self._limit is not None and self._backlog() + len(fresh) > self._limit:
            # A commit is delivered whole or not at all: its events share one revision, so
            # a reader resuming after the last revision it saw must have seen all of it.
            # What is queued stays readable; the reader meets the end after it. (Not
            # unsubscribed here: that takes the store's lock, which is held.)
            self.cut_off()
            return
        for event in fresh:
            self._pending += 1
            self._queue.put(event)

    def cut_off(self) -> None:
        """End the stream for the reader as an overflow does: what is queued stays
        readable, then the reader must resume from the last revision it saw (or re-list).
        A store calls it when it can no longer follow its changes (etcd's history was
        compacted under the watch, or no member answered)."""
        self.overflowed = True
        self._queue.put(_CLOSED)

    def _deliver_history(self, events: list[WatchEvent]) -> None:
        """The events a watch from an old revision starts with: they are bounded by the
        store's retained history, so they widen the limit rather than count against it
        (a watcher resuming after being cut off is not cut off again at once)."""
        if self._limit is not None:
            self._limit += len(events)
        self._deliver(events)

    def _backlog(self) -> int:
        with self._taken_lock:
            return self._pending - self._taken

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """Next event; None on timeout or when the watch is closed."""
        if self._closed.is_set():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._queue.put(_CLOSED)  # wake any other waiting reader too
            return None
        assert isinstance(item, WatchEvent)
        with self._taken_lock:
            self._taken += 1
        return item

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            event = self.get(None)
            if event is not None:
                return event
            if self._closed.is_set() or self.overflowed:
                raise StopIteration

    def close(self) -> None:
        """Stop the watch: unsubscribe from the store and wake blocked readers."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(_CLOSED)
        self._unsubscribe(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

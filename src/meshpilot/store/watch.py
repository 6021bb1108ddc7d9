"""In-process watch subscriptions of the store.

Each Watch owns an unbounded queue. The store pushes events into it while it
still holds its commit lock, right after the SQLite transaction commits, so
every watcher sees commits in revision order, whichever thread made them.
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
    closing. Only commits made through the same SqliteStore instance are seen
    live (another process writing the same file is not observed).
    """

    def __init__(self, since: int, unsubscribe: Callable[[Watch], None]) -> None:
        # Events at or below ``since`` are dropped, so a watch asked to start
        # after the current revision does not see the revisions in between.
        self._since = since
        self._unsubscribe = unsubscribe
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = threading.Event()

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
        if self._closed.is_set():
            return
        for event in events:
            if event.resource_version > self._since:
                self._queue.put(event)

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
        return item

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        while True:
            event = self.get(None)
            if event is not None:
                return event
            if self._closed.is_set():
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

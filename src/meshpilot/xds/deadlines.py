"""Phase deadlines of many streams on one timer.

Every stream in an update round waits for its proxy's ACK with a deadline (the phase
timeout). Arming an event-loop timer per stream and round costs a timer handle, a heap
entry and its cancellation for each of a thousand proxies per change, though almost none
ever fires: the ACK comes first. Here arming is a dict entry; one loop timer, set for the
earliest deadline (no more often than every ``coalesce`` seconds), fires whatever is due.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable


class Deadlines:
    """``arm(owner, delay, fire)``: call ``fire()`` in ``delay`` seconds unless
    ``disarm(owner)`` comes first. One owner, one deadline (arming again replaces it).
    Loop thread only: every owner lives on the same event loop."""

    def __init__(self, coalesce: float = 0.01) -> None:
        self._coalesce = coalesce
        self._due: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def arm(self, owner: Hashable, delay: float, fire: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        self._due[owner] = (at, fire)
        if at < self._timer_at:
            self._schedule(loop, at)

    def disarm(self, owner: Hashable) -> None:
        """Forget the owner's deadline (the timer stays: finding nothing due is cheap)."""
        self._due.pop(owner, None)

    def armed(self, owner: Hashable) -> bool:
        return owner in self._due

    def __len__(self) -> int:
        return len(self._due)

    def _schedule(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._fire_due)

    def _fire_due(self) -> None:
        self._timer, self._timer_at = None, math.inf
        loop = asyncio.get_running_loop()
        now = loop.time()
        fired = [(owner, fire) for owner, (at, fire) in self._due.items() if at <= now]
        for owner, _ in fired:
            del self._due[owner]
        if self._due:
            earliest = min(at for at, _ in self._due.values())
            self._schedule(loop, max(earliest, now + self._coalesce))
        for _, fire in fired:
            fire()

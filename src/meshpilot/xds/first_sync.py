"""Bound how many proxies receive their whole config at once.

A first sync sends a proxy everything (megabytes at a thousand services). A thousand
proxies connecting together (a restart, a mass reconnect) would queue a thousand whole
configs; the gate lets a few through at a time, each holding its slot until its proxy has
ACKed its config or its stream ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class FirstSyncGate:
    """At most ``limit`` streams hold a slot; the others wait their turn, in order.

    A waiter is a callable that takes the slot it is offered and says so (a stream that
    closed meanwhile declines, and the slot goes to the next). Slots are handed over on
    the loop's next turn, never from inside the releasing stream's own call.
    """

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: deque[Callable[[], bool]] = deque()

    def acquire(self, waiter: Callable[[], bool]) -> bool:
        """True: a slot is taken now. False: ``waiter`` is called when one frees up."""
        if self._free > 0:
            self._free -= 1
            return True
        self._waiting.append(waiter)
        return False

    def release(self) -> None:
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._offer, self._waiting.popleft())
        else:
            self._free += 1

    def _offer(self, waiter: Callable[[], bool]) -> None:
        try:
            taken = waiter()
        except Exception:
            log.exception("first-sync waiter failed")
            taken = False
        if not taken:
            self.release()

"""Alerts sent off the caller's thread, for the commands a person is waiting on.

An abort from the API (or the dashboard's button) decides at once, but its alerts go to
Slack, Teams or a webhook that may take up to their timeout each: the person waiting for
"abort accepted" must not wait for them. The queue keeps the order alerts were decided
in, and never drops one: when it is full the caller sends that batch itself.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence

from meshpilot.api.flagger import Canary
from meshpilot.delivery.alerts import AlertIntent, AlertSender

log = logging.getLogger(__name__)

CAPACITY = 256
"""Batches waiting to be sent; beyond it the caller sends (slower, never lost)."""

_Batch = tuple[Canary, Sequence[AlertIntent]]


class QueuedAlerts:
    """One sender thread per controller, started by the first batch, stopped by
    ``close``."""

    def __init__(self, sender: AlertSender, capacity: int = CAPACITY) -> None:
        self._sender = sender
        # a batch to send, an Event to set once everything before it is sent, or None: stop
        self._queue: queue.Queue[_Batch | threading.Event | None] = queue.Queue(capacity)
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self._start = threading.Lock()

    def _started(self) -> bool:
        with self._start:
            if self._thread.ident is None:
                self._thread.start()
        return True

    def submit(self, canary: Canary, intents: Sequence[AlertIntent]) -> None:
        self._started()
        try:
            self._queue.put_nowait((canary, intents))
        except queue.Full:
            self._send(canary, intents)

    def flush(self, timeout: float) -> bool:
        """Wait until every batch submitted before this call was sent."""
        if self._thread.ident is None:
            return True  # nothing was ever submitted
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float) -> bool:
        """Send what is queued, then stop; whether it finished within ``timeout``."""
        if self._thread.ident is None:
            return True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
            else:
                self._send(*item)

    def _send(self, canary: Canary, intents: Sequence[AlertIntent]) -> None:
        try:
            self._sender.send(canary, intents)
        except Exception:  # one broken alert must not stop the ones after it
            log.exception("alerts of Canary %s/%s were not sent",
                          canary.metadata.namespace, canary.metadata.name)

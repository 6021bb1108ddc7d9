"""The thread that feeds one store Watch from an etcd watch on the commit log.

One etcd watch stream per Watch: it starts at the revision right after the history the
watch was opened with, and after a member goes away it reconnects to another one from
the revision after the last commit it delivered, so a reader sees every commit once, in
order, across member failures. When that is no longer possible (etcd compacted the
revisions it needs, or no member answers for longer than the client retries) the Watch
is cut off, and its reader resumes or re-lists as after a 410.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from meshpilot.store.etcd_client import EtcdClient, EtcdError, EtcdUnavailable, WatchStream
from meshpilot.store.model import WatchEvent
from meshpilot.store.watch import Watch

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 15.0
"""How long a feed keeps trying to reach another member before it cuts its watch off."""

Decode = Callable[[dict[str, Any]], list[WatchEvent]]


class LogFeed:
    """Delivers the commits logged under ``log_prefix`` from ``start`` on to one Watch."""

    def __init__(self, client: EtcdClient, log_prefix: str, start: int,
                 decode: Decode) -> None:
        self._client = client
        self._prefix = log_prefix
        self._next = start  # the first revision not yet delivered
        self._decode = decode
        self._stopped = threading.Event()
        self._stream: WatchStream | None = None
        self._stream_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)
        self.watch: Watch

    def start(self, watch: Watch) -> None:
        self.watch = watch
        self._thread.start()

    def stop(self) -> None:
        """Close the stream; the thread ends at once (it is not joined: ``stop`` may be
        called from the thread itself, through the Watch's close)."""
        self._stopped.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def _run(self) -> None:
        failing_since: float | None = None
        while not self._stopped.is_set():
            try:
                if self._follow():
                    return
                failing_since = None
                time.sleep(0.05)  # the member ended the stream: reconnect, not spin
            except (httpx.HTTPError, httpx.StreamError, OSError, EtcdUnavailable, EtcdError,
                    ValueError) as exc:
                if self._stopped.is_set():
                    return
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if (isinstance(exc, EtcdError) and exc.code not in (4, 14)) \
                        or now - failing_since > RECONNECT_SECONDS:
                    log.warning("etcd watch from revision %d ends: %s", self._next, exc)
                    self.watch.cut_off()
                    return
                time.sleep(0.1)

    def _follow(self) -> bool:
        """Read one stream until it ends; True when the feed is finished for good."""
        with self._client.watch_stream(self._prefix, self._next) as stream:
            with self._stream_lock:
                self._stream = stream
            if self._stopped.is_set():
                return True
            for result in stream.results():
                if int(result.get("compact_revision", 0) or 0) > 0:
                    # etcd no longer has the revisions this watch needs
                    self.watch.cut_off()
                    return True
                self._deliver(result.get("events") or [])
                if self._stopped.is_set() or self.watch.overflowed or self.watch.closed:
                    return True
                if result.get("canceled"):
                    return False
        return self._stopped.is_set()

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            kv = event.get("kv", {})
            revision = int(kv.get("mod_revision", 0))
            if event.get("type") == "DELETE" or revision < self._next:
                continue  # a trim of the log, or a commit already delivered
            with contextlib.suppress(KeyError):
                self.watch._deliver(self._decode(kv))
            self._next = revision + 1

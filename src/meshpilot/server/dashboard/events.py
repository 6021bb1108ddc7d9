"""The dashboard's live feed: server-sent events, so the page never polls the API.

One ``state`` event carries the whole picture (graph and rollouts; a few KB for a
demo-sized mesh). It is sent when the stream opens, as soon as the store changes (a
VirtualService's weights, a rollout's step: the store's watch, at most every
``MIN_GAP_SECONDS``) and every ``PERIOD_SECONDS`` for the telemetry, but only when it
differs from the last one sent; a comment line keeps idle connections open. A stream
ends after ``MAX_STREAM_SECONDS``, and the browser's EventSource reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from meshpilot.store import ConfigStore
from meshpilot.store.watch import Watch

PERIOD_SECONDS = 2.0
MIN_GAP_SECONDS = 0.25
POLL_SECONDS = 0.1
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 3600.0
MAX_EVENTS_PER_POLL = 1000  # bounds one drain of the watch; the rest waits a poll


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; JSON has no raw newline, so one ``data:`` line holds it."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _drain(watch: Watch) -> bool:
    """Whether the store changed since the last drain (queued events consumed)."""
    changed = False
    for _ in range(MAX_EVENTS_PER_POLL):
        if watch.get(timeout=0) is None:
            break
        changed = True
    return changed


def never() -> bool:
    return False


async def stream(store: ConfigStore, snapshot: Callable[[], Awaitable[dict[str, Any]]],
                 stopping: Callable[[], bool] = never) -> AsyncIterator[bytes]:
    """The event stream of one browser; ``snapshot`` makes the current ``state``. It
    ends as soon as ``stopping()`` (the server shuts down): an open tab must not hold
    up ``meshpilot down`` for the server's whole graceful-shutdown timeout."""
    watch = store.watch(None)
    try:
        start = last_sent = last_beat = time.monotonic()
        sent = ""
        due = True  # the first picture goes out at once
        next_tick = start + PERIOD_SECONDS
        while True:
            now = time.monotonic()
            if now - start > MAX_STREAM_SECONDS or stopping():
                return
            due = _drain(watch) or due or now >= next_tick
            if (due and now - last_sent >= MIN_GAP_SECONDS) or sent == "":
                state = await snapshot()
                text = json.dumps(state, sort_keys=True)
                if text != sent:
                    sent = text
                    yield sse("state", state)
                    last_beat = now
                last_sent, due = now, False
                next_tick = now + PERIOD_SECONDS
            if now - last_beat >= KEEPALIVE_SECONDS:
                last_beat = now
                yield b": keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)
    finally:
        watch.close()

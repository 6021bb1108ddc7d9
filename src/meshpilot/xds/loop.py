"""An asyncio event loop in a thread of its own, callable from any other thread.

The xDS server keeps every stream on one loop (their state needs no locks there), and
tests drive single streams the same way: both start the loop here, run code on it and
read the result back, and stop it, its tasks cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it exists (Linux, macOS), else asyncio's.

    The streams' work is mostly the loop's own (futures, callbacks, timers, the gRPC
    poller's wake-ups), which uvloop does in C: ``benchmarks/convergence.py`` (b) and
    ``grpc_floor.py`` run on it, as the server does.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """A running event loop (:func:`new_event_loop`) in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        ready.wait()

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
        """``fn(*args)`` on the loop, its result here (called at once when already on the
        loop's thread, or when the loop has stopped)."""
        if not self.loop.is_running() or threading.current_thread() is self._thread:
            return fn(*args)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on the loop, not waited for."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        """Cancel the loop's tasks, stop it and close it."""
        loop = self.loop

        async def finish() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            asyncio.get_running_loop().stop()

        if loop.is_running():
            loop.call_soon_threadsafe(lambda: loop.create_task(finish()))
        self._thread.join(10)
        if not loop.is_running() and not loop.is_closed():
            loop.close()


__all__ = ["LoopThread", "new_event_loop"]

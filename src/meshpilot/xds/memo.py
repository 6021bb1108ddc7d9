"""A bounded memo keyed by the identity of immutable objects.

The xDS server computes some answers once for the thousand streams that ask the same
question (a plan from one shared config to the next, a push from one resource set to
another): the objects asked about are immutable, so their identities are the key. An
entry holds the objects its key names, so no identity can be reused by another object
while the entry lives.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MISSING = object()
"""What :meth:`IdentityMemo.last` answers when the key was not the last one asked."""


class IdentityMemo:
    """Values computed once per key of object identities; bounded, least recently used
    out, and the last hit answered first (a class's streams ask one key in a row)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = OrderedDict()
        self._lock = threading.Lock()  # tests drive streams of one server from two loops
        self._last: tuple[tuple[Any, ...], Any, tuple[Any, ...]] | None = None

    def last(self, key: tuple[Any, ...]) -> Any:
        """The value of ``key`` if it was the last one asked (else :data:`MISSING`): the
        common case, answered before a caller builds what computing would need."""
        last = self._last
        return last[1] if last is not None and last[0] == key else MISSING

    def get(self, key: tuple[Any, ...], keep: tuple[Any, ...],
            compute: Callable[[], Any]) -> Any:
        """``compute()``'s value for ``key``; ``keep`` holds the objects whose ids ``key``
        names, for as long as the entry lives."""
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self._last = (key, hit[1], hit[0])
                return hit[1]
        value = compute()
        self._last = (key, value, keep)
        with self._lock:
            self._items[key] = (keep, value)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

"""Watch bookmarks: a quiet watch tells a Kubernetes client how far it has got.

A client that asks for them (``allowWatchBookmarks=true``, as client-go's informers
do, which ``kubectl rollout status`` and ``kubectl wait`` use) is sent a ``BOOKMARK``
event now and then with the resourceVersion up to which it has seen every change of
its kinds; it restarts a broken watch from there instead of from an older version that
the store may have compacted (a ``410 Gone`` and a full relist). The version is the
newest the watch itself has delivered (events of other kinds included), never the
store's revision read separately, which could be ahead of the events still queued.
"""

from __future__ import annotations

import json

BOOKMARK_SECONDS = 15.0
"""How often a quiet watch sends a bookmark (the API server sends about one a minute)."""


class Bookmarks:
    """The bookmarks of one watch."""

    def __init__(self, api_version: str, kind: str, start: int, every: float, *,
                 enabled: bool) -> None:
        self._api_version = api_version
        self._kind = kind
        self._seen = start
        self._every = every
        self._enabled = enabled
        self._next: float | None = None  # the first look starts the clock

    def saw(self, resource_version: int) -> None:
        """The watch delivered (or skipped as not wanted) the change at this version."""
        self._seen = max(self._seen, resource_version)

    def due(self, now: float) -> list[bytes]:
        """The bookmark line to send now, if one is due."""
        if not self._enabled:
            return []
        if self._next is None:
            self._next = now + self._every
        if now < self._next:
            return []
        self._next = now + self._every
        body = {"kind": self._kind, "apiVersion": self._api_version,
                "metadata": {"resourceVersion": str(self._seen)}}
        return [(json.dumps({"type": "BOOKMARK", "object": body}) + "\n").encode()]

"""An in-memory copy of the store, kept current by its watch.

The control plane rebuilds the mesh from every stored object on each change; reading and
decoding them all from SQLite each time costs tens of milliseconds at a thousand
services, for one changed object. The mirror reads them once and then applies the watch's
events, so a rebuild starts from a dict look-up. Durability is untouched: the store
remains the only place a change is accepted.

No gap, no stale object: the watch is opened before the first listing, and every event is
applied only if it is newer than what the mirror holds for that key (an event for a
change the listing already saw is a no-op).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from meshpilot.api.identity import ObjectKey
from meshpilot.store.model import StoreError
from meshpilot.store.protocol import ConfigStore

log = logging.getLogger(__name__)


class MirrorListener(Protocol):
    """Told of every object the mirror holds and of each change it applies, in order."""

    def put(self, key: ObjectKey, body: dict[str, Any]) -> None: ...

    def remove(self, key: ObjectKey) -> None: ...


class StoreMirror:
    """Every stored object as ``(key, body)``, current as of the last :meth:`poll`."""

    def __init__(self, store: ConfigStore) -> None:
        self._lock = threading.Lock()
        self._store = store
        self._watch = store.watch()
        self._revision = self._watch.since  # every commit up to it is held
        self._objects: dict[ObjectKey, tuple[int, dict[str, Any]]] = {}
        self._gone: dict[ObjectKey, int] = {}  # deleted keys -> revision of the delete
        self._listeners: list[MirrorListener] = []
        for obj in store.list():
            self._objects[obj.key] = (obj.resource_version, obj.body)

    def objects(self) -> list[tuple[ObjectKey, dict[str, Any]]]:
        """The objects, sorted by key (bodies are shared: treat them as read-only)."""
        return self.held()[1]

    def held(self) -> tuple[int, list[tuple[ObjectKey, dict[str, Any]]]]:
        """The revision every commit up to which the mirror holds, and the objects (as
        :meth:`objects`), read together."""
        with self._lock:
            return self._revision, [(key, self._objects[key][1])
                                    for key in sorted(self._objects)]

    def revision(self) -> int:
        """The revision every commit up to which the mirror holds."""
        with self._lock:
            return self._revision

    def follow(self, listener: MirrorListener) -> None:
        """Tell ``listener`` every object held now, then each change as :meth:`poll`
        applies it (an index kept beside the objects, without listing them all again)."""
        with self._lock:
            for key, (_, body) in self._objects.items():
                listener.put(key, body)
            self._listeners.append(listener)

    def poll(self, timeout: float) -> bool:
        """Apply the watch's pending events (waiting up to ``timeout`` for the first);
        True if any arrived."""
        event = self._watch.get(timeout=timeout)
        if event is None:
            # a watch the store could not keep up (etcd out of reach for long): read
            # everything afresh rather than hold a state that no longer follows the store
            return self._watch.overflowed and self._reload()
        while event is not None:
            self._apply(event.type, event.object.key, event.resource_version,
                        event.object.body)
            event = self._watch.get(timeout=0)
        return True

    def catch_up(self, revision: int, timeout: float) -> bool:
        """Apply events until the mirror holds every commit up to ``revision`` (a value of
        the store's ``revision()``); False if that took longer than ``timeout``.

        SQLite queues a commit's events before ``commit`` returns, so this is one poll;
        etcd delivers them a moment later, from its watch. A mirror whose watch was cut
        off (etcd could not follow) reads everything afresh."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                held = self._revision
            if held >= revision:
                return True
            if self._watch.overflowed:
                if not self._reload():
                    return False
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(timeout=min(left, 0.05))

    def _reload(self) -> bool:
        """A new watch and a fresh listing; False (nothing changed) if the store does not
        answer, so the caller tries again later."""
        try:
            watch = self._store.watch()
            listed = self._store.list()
        except StoreError as exc:
            log.warning("the store's mirror could not be read afresh: %s", exc)
            return False
        objects = {o.key: (o.resource_version, o.body) for o in listed}
        with self._lock:
            old, self._watch = self._watch, watch
            self._revision = watch.since
            for listener in self._listeners:  # told the difference, as if by events
                for key in self._objects.keys() - objects.keys():
                    listener.remove(key)
                for key, (revision, body) in objects.items():
                    if self._objects.get(key, (None,))[0] != revision:
                        listener.put(key, body)
            self._objects = objects
            self._gone = {}
        old.close()
        return True

    def _apply(self, kind: str, key: ObjectKey, revision: int, body: dict[str, Any]) -> None:
        with self._lock:
            self._revision = max(self._revision, revision)  # events come in commit order
            held = self._objects.get(key)
            if held is not None and held[0] >= revision:
                return  # the listing already had this change (or a later one)
            if kind == "DELETED":
                if held is not None:
                    del self._objects[key]
                    for listener in self._listeners:
                        listener.remove(key)
                self._gone[key] = revision
                return
            if self._gone.get(key, 0) >= revision:
                return  # deleted after this change
            self._gone.pop(key, None)
            self._objects[key] = (revision, body)
            for listener in self._listeners:
                listener.put(key, body)

    def close(self) -> None:
        self._watch.close()

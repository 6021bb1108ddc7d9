"""Which store changes the mesh has to be rebuilt for.

Every stored change used to rebuild the mesh and push the result, including the status
a rollout writes on each step. A Canary's status is read by nothing the mesh is built
from (the snapshot keeps Canaries for their spec: whose pods report their failures), and
during a rollback it is written a few milliseconds before the route change that matters:
its rebuild and push held up the route's (up to 17 ms of the rebuild loop and 31 ms of the
xDS loop in one run of ``benchmarks/rollback.py --timeline``). So a change that only
touches a Canary's status is not a reason to rebuild; the next rebuild, for any other
change, picks it up.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from meshpilot.api.identity import ObjectKey

STATUS_ONLY_KINDS = frozenset({"Canary"})
"""Kinds whose ``status`` the mesh never reads."""
_BOOKKEEPING = ("resourceVersion", "managedFields")
"""Metadata a status write changes too."""


def _spec_of(body: dict[str, Any]) -> str:
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _BOOKKEEPING}
    rest = {k: v for k, v in body.items() if k not in ("status", "metadata")}
    return json.dumps([meta, rest], sort_keys=True, default=str)


class MeshChanges:
    """A :class:`~meshpilot.store.mirror.MirrorListener`: told of every change the
    control plane's mirror applies, it remembers whether one since the last
    :meth:`take` needs a rebuild."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = False
        self._specs: dict[ObjectKey, str] = {}

    def put(self, key: ObjectKey, body: dict[str, Any]) -> None:
        with self._lock:
            if key.kind in STATUS_ONLY_KINDS:
                spec = _spec_of(body)
                if self._specs.get(key) == spec:
                    return
                self._specs[key] = spec
            self._changed = True

    def remove(self, key: ObjectKey) -> None:
        with self._lock:
            self._specs.pop(key, None)
            self._changed = True

    def take(self) -> bool:
        """Whether a change needing a rebuild came since the last call."""
        with self._lock:
            changed, self._changed = self._changed, False
            return changed

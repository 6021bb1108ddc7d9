"""The config store as the rest of the control plane sees it.

Two implementations keep the same contract: :class:`~meshpilot.store.sqlite.SqliteStore`
(one file, the embedded default) and :class:`~meshpilot.store.etcd.EtcdStore` (etcd, for
several control-plane replicas). Callers are typed against this protocol, never against
one of them, so a process runs unchanged on either.

The contract, which the shared store tests check on both:

* ``commit`` is all-or-nothing and gives every object it writes one new revision, greater
  than any before; a Conflict or NotFound writes nothing.
* ``revision()`` is the revision of the last commit that changed something (0 for an
  empty store), so "anything newer than what I built from?" is ``revision() > built``.
* ``watch(since)`` delivers every later commit whole and in order, with neither a gap nor
  a duplicate after ``events_since``-style history; history older than what is retained
  raises Expired (HTTP 410 for an API client).
* ``commit(..., unchanged_since=R)`` raises Stale, writing nothing, if any commit came
  after revision R: a writer that validated against the state at R (ConfigService)
  commits only onto that state, also when another replica writes.
* ``write_lock`` serialises this process's writers from validation to commit.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence
from typing import Protocol

from meshpilot.store.model import Change, ChangeResult, ObjectKey, StoredObject, WatchEvent
from meshpilot.store.watch import Watch


class ConfigStore(Protocol):
    """A durable, transactional, watchable store of JSON documents."""

    write_lock: threading.Lock

    def get(self, key: ObjectKey) -> StoredObject | None: ...

    def list(self, group: str | None = None, kind: str | None = None,
             namespace: str | None = None) -> builtins.list[StoredObject]: ...

    def revision(self) -> int: ...

    def events_since(self, resource_version: int) -> builtins.list[WatchEvent]: ...

    def watch(self, since: int | None = None, limit: int | None = None) -> Watch: ...

    def commit(self, changes: Sequence[Change], *,
               unchanged_since: int | None = None) -> builtins.list[ChangeResult]: ...

    def close(self) -> None: ...

"""Data types of the durable config store.

The store is schema-agnostic: it keeps JSON documents (plain dicts) keyed by
(group, kind, namespace, name), stamps Kubernetes-style metadata on them and
versions them with one global, monotonic revision (like etcd). Validation and
resource schemas live elsewhere, so nothing here knows what a spec means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from meshpilot.api.identity import ObjectKey


@dataclass(frozen=True)
class StoredObject:
    """An object as the store holds it.

    ``body`` is the full document, with ``metadata.resourceVersion`` (a string,
    as in Kubernetes), ``generation``, ``uid``, ``creationTimestamp``, ``name``
    and ``namespace`` filled in by the store. Every StoredObject handed out gets
    its own freshly decoded body, except that the objects of one watch event are
    shared between watchers: treat bodies as read-only.
    """

    key: ObjectKey
    body: dict[str, Any] = field(compare=False)
    resource_version: int
    generation: int


@dataclass(frozen=True)
class Put:
    """Create or update (apply) an object.

    ``body`` is the document as the user gave it; server-managed metadata in it
    is ignored and ``status`` is never written by a Put (as kubectl apply).
    ``expected_resource_version``: None means unconditional, 0 means "must not
    exist yet", N means "current resourceVersion must be N" (else Conflict).
    """

    body: dict[str, Any]
    key: ObjectKey
    expected_resource_version: int | None = None


@dataclass(frozen=True)
class Delete:
    """Delete an object; NotFound if it does not exist, Conflict on a stale rv."""

    key: ObjectKey
    expected_resource_version: int | None = None


@dataclass(frozen=True)
class PutStatus:
    """Replace ``body["status"]``: bumps resourceVersion but not generation."""

    key: ObjectKey
    status: dict[str, Any]


Change = Put | Delete | PutStatus

Action = Literal["created", "configured", "unchanged", "deleted"]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class ChangeResult:
    """Outcome of one change of a commit.

    ``object`` is the object after the change; for "deleted" it is the deleted
    object, stamped with the revision of the deletion (as the DELETED event).
    """

    key: ObjectKey
    action: Action
    object: StoredObject | None


@dataclass(frozen=True)
class WatchEvent:
    """One change as seen by watchers; ``resource_version`` is the commit revision."""

    type: EventType
    object: StoredObject
    resource_version: int


class StoreError(Exception):
    """Base class of the store's own errors."""


class Conflict(StoreError):
    """The expected resourceVersion of a change did not match (optimistic concurrency)."""

    def __init__(self, key: ObjectKey, expected: int, actual: int) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        if expected == 0:
            detail = f"expected it not to exist, but it has resourceVersion {actual}"
        elif actual == 0:
            detail = f"expected resourceVersion {expected}, but it does not exist"
        else:
            detail = f"expected resourceVersion {expected}, but it is {actual}"
        super().__init__(f"conflict on {key}: {detail}")


class Stale(StoreError):
    """A commit asked that nothing change after the revision its caller validated
    against, and something did (another replica's commit): nothing was written; the
    caller validates again on the new state."""

    def __init__(self, based_on: int, actual: int) -> None:
        self.based_on = based_on
        self.actual = actual
        super().__init__(f"the store is at revision {actual}, not {based_on} as validated")


class NotFound(StoreError):
    """A Delete or PutStatus named an object that does not exist."""

    def __init__(self, key: ObjectKey) -> None:
        self.key = key
        super().__init__(f"{key} not found")


class WriteFailed(StoreError):
    """SQLite could not write a commit: the disk is full (SQLITE_FULL) or the write
    failed (SQLITE_IOERR). Nothing of the commit was kept; reads still work."""

    def __init__(self, path: str, cause: str, full: bool) -> None:
        self.path = path
        self.cause = cause
        self.full = full
        what = "the disk is full" if full else "the disk refused the write"
        super().__init__(
            f"the config store {path} could not be written: {what} ({cause}); nothing "
            "was written. Free space on that disk (or check it), then apply again")


class Corrupt(StoreError):
    """The database file fails SQLite's integrity check (or is not a database at all):
    the store refuses to open it rather than serve, and build on, a damaged state."""

    def __init__(self, path: str, finding: str) -> None:
        self.path = path
        self.finding = finding
        super().__init__(
            f"the config store {path} is damaged ({finding}); meshpilot will not start on "
            f"it. To recover, move it aside (`mv {path} {path}.damaged`, and its -wal and "
            "-shm files likewise), then put back a copy from a backup, or keep what SQLite "
            f"can still read (`sqlite3 {path}.damaged .recover | sqlite3 {path}`), or "
            "start empty and apply your manifests again")


class Expired(StoreError):
    """The requested event history was compacted away; the caller must re-list."""

    def __init__(self, requested: int, compacted: int) -> None:
        self.requested = requested
        self.compacted = compacted
        super().__init__(
            f"resourceVersion {requested} is too old: events up to {compacted} were compacted"
        )


class Unavailable(WriteFailed):
    """The etcd cluster did not answer (no member reachable, or none with a leader, for
    longer than the client retries): nothing of the commit was written. A kind of
    WriteFailed, so every writer that reports a failed write reports this one too."""

    def __init__(self, endpoints: str, cause: str) -> None:
        StoreError.__init__(
            self, f"the config store (etcd at {endpoints}) could not be reached: {cause}; "
            "nothing was written. Check that a majority of the etcd members run and can "
            "reach each other, then apply again")
        self.path = endpoints
        self.cause = cause
        self.full = False


class Refused(WriteFailed):
    """etcd refused the commit's transaction (too many operations or bytes for its
    limits, say): nothing of it was written. A kind of WriteFailed (507 for an apply)."""

    def __init__(self, endpoints: str, cause: str, hint: str) -> None:
        StoreError.__init__(
            self, f"the config store (etcd at {endpoints}) refused the commit: {cause}; "
            f"nothing was written. {hint}")
        self.path = endpoints
        self.cause = cause
        self.full = False

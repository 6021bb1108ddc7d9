"""SQLite implementation of the durable config store.

Design, and why:

* One global revision counter (a row of the ``meta`` table), bumped once per
  commit that changes anything; every object written by that commit gets that
  revision as its resourceVersion. Watchers can therefore resume from any
  revision, as with etcd.
* Every commit runs in one ``BEGIN IMMEDIATE`` transaction: expected-version
  checks read and write under the same write lock, so a Conflict or NotFound
  rolls back the whole commit (all-or-nothing), also against other processes.
* WAL journal with ``synchronous=FULL``: once ``commit`` returns, the change
  survives a SIGKILL of the process (and a power loss, as far as fsync does).
* An ``events`` table keeps the last ``event_history`` events for watch resume;
  older history is compacted and asking for it raises Expired.
* One connection shared by all threads behind a re-entrant lock: simple and
  correct; SQLite serialises writers anyway.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshpilot.store.model import (
    Change,
    ChangeResult,
    Corrupt,
    EventType,
    Expired,
    ObjectKey,
    Stale,
    StoredObject,
    WatchEvent,
    WriteFailed,
)
from meshpilot.store.planning import dumps, now_rfc3339, plan_change, validate_changes
from meshpilot.store.watch import Watch

SCHEMA_VERSION = 1
DEFAULT_EVENT_HISTORY = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    grp              TEXT NOT NULL,
    kind             TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    name             TEXT NOT NULL,
    body             TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    generation       INTEGER NOT NULL,
    PRIMARY KEY (grp, kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    id        INTEGER PRIMARY KEY,
    revision  INTEGER NOT NULL,
    type      TEXT NOT NULL,
    grp       TEXT NOT NULL,
    kind      TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    body      TEXT NOT NULL,
    generation INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_revision ON events (revision);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
INSERT OR IGNORE INTO meta (name, value) VALUES ('compact_revision', 0);
"""


def _key_of(row: sqlite3.Row | tuple[Any, ...]) -> ObjectKey:
    return ObjectKey(row[0], row[1], row[2], row[3])


class SqliteStore:
    """Durable, transactional, watchable store of JSON documents.

    Safe to share between threads. Several processes may open the same file
    (writes stay serialised and revisions consistent), but watchers only see
    commits made through their own SqliteStore instance.
    """

    def __init__(self, path: str | Path, *, event_history: int = DEFAULT_EVENT_HISTORY) -> None:
        if event_history < 1:
            raise ValueError("event_history must be at least 1")
        self.path = Path(path)
        self._event_history = event_history
        self._lock = threading.RLock()
        self.write_lock = threading.Lock()
        """Held by a writer from reading the state it validates against until its commit
        (see ``ConfigService``), so two writers cannot both pass a check that only one of
        them could satisfy. Not the connection lock: reads never wait for a validation."""
        self._watches: list[Watch] = []
        # isolation_level=None: we issue BEGIN IMMEDIATE/COMMIT ourselves.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 30000")
        try:
            self._check_integrity(conn)
        except BaseException:
            conn.close()
            self._conn = None
            raise
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not switch {self.path} to WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise RuntimeError(
                    f"{self.path} has store schema version {version}, expected {SCHEMA_VERSION}"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise

    def _check_integrity(self, conn: sqlite3.Connection) -> None:
        """Refuse a damaged file (Corrupt) before anything reads or writes it.

        quick_check reads every page once (milliseconds for a config store) and finds
        what a torn or overwritten page leaves behind; a file that is not a database
        at all fails on its first read."""
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise Corrupt(str(self.path), str(exc)) from exc
            raise
        findings = [str(r[0]) for r in rows]
        if findings != ["ok"]:
            shown = "; ".join(findings[:3]) + ("; ..." if len(findings) > 3 else "")
            raise Corrupt(str(self.path), f"PRAGMA quick_check: {shown}")

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close all watches and the database connection; idempotent."""
        with self._lock:
            for watch in list(self._watches):
                watch.close()
            self._watches.clear()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is closed")
        return self._conn

    # -- reads -------------------------------------------------------------

    def get(self, key: ObjectKey) -> StoredObject | None:
        """The current object at ``key``, or None."""
        with self._lock:
            return self._read(self._db(), key)

    def list(
        self, group: str | None = None, kind: str | None = None, namespace: str | None = None
    ) -> builtins.list[StoredObject]:
        """Objects matching the given filters (None = any), sorted by key."""
        clauses: list[str] = []
        params: list[str] = []
        for column, value in (("grp", group), ("kind", kind), ("namespace", namespace)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT grp, kind, namespace, name, body, resource_version, generation"
                    f" FROM objects{where} ORDER BY grp, kind, namespace, name",
                    params,
                )
                .fetchall()
            )
        # SQLite's BINARY collation orders UTF-8 by code point, as Python does;
        # sort anyway so the contract holds whatever the collation.
        objects = [StoredObject(_key_of(r), json.loads(r[4]), r[5], r[6]) for r in rows]
        objects.sort(key=lambda o: o.key)
        return objects

    def revision(self) -> int:
        """The store's current revision (0 when nothing was ever written)."""
        with self._lock:
            return self._meta(self._db(), "revision")

    def events_since(self, resource_version: int) -> builtins.list[WatchEvent]:
        """Every event with revision > ``resource_version``, in order.

        Raises Expired if part of that history was compacted away.
        """
        with self._lock:
            return self._events_since(self._db(), resource_version)

    # -- watch -------------------------------------------------------------

    def watch(self, since: int | None = None, limit: int | None = None) -> Watch:
        """Subscribe to changes after revision ``since`` (None: from now); ``limit``
        bounds the events queued for a slow reader (see :mod:`.watch`).

        Backlog and live events are queued under the commit lock, so there is
        neither a gap nor a duplicate between them. Raises Expired if ``since``
        is older than the retained history.
        """
        with self._lock:
            conn = self._db()
            if since is None:
                since = self._meta(conn, "revision")
                backlog: list[WatchEvent] = []
            else:
                backlog = self._events_since(conn, since)
            watch = Watch(since, self._unsubscribe, limit)
            watch._deliver_history(backlog)
            self._watches.append(watch)
            return watch

    def _unsubscribe(self, watch: Watch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    # -- writes ------------------------------------------------------------

    def commit(self, changes: Sequence[Change], *,
               unchanged_since: int | None = None) -> builtins.list[ChangeResult]:
        """Apply ``changes`` atomically; return one result per change, in order.

        All-or-nothing: on Conflict or NotFound nothing is written and the
        exception propagates. A key may appear only once per commit (ValueError
        otherwise), so each revision holds at most one version of an object.
        ``unchanged_since``: raise Stale (writing nothing) if the store moved past it.
        """
        validate_changes(changes)
        if not changes:
            return []

        with self._lock:
            conn = self._db()
            try:
                conn.execute("BEGIN IMMEDIATE")
                results, events = self._apply(conn, changes, unchanged_since)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise self._write_failed(exc) from exc
            except BaseException:
                self._rollback(conn)
                raise
            if events:
                for watch in list(self._watches):
                    watch._deliver(events)
            return results

    # -- internals ---------------------------------------------------------

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # After SQLITE_FULL or an I/O error SQLite may have rolled back already; a
        # failing ROLLBACK must not hide the error that caused it.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _write_failed(self, exc: sqlite3.Error) -> Exception:
        """WriteFailed for a full disk or a failed write; ``exc`` itself otherwise."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
        if code not in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
            return exc
        name = getattr(exc, "sqlite_errorname", "") or "SQLITE_IOERR"
        return WriteFailed(str(self.path), f"{exc}, {name}", code == sqlite3.SQLITE_FULL)

    @staticmethod
    def _meta(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _events_since(
        self, conn: sqlite3.Connection, resource_version: int
    ) -> builtins.list[WatchEvent]:
        compacted = self._meta(conn, "compact_revision")
        if resource_version < compacted:
            raise Expired(resource_version, compacted)
        rows = conn.execute(
            "SELECT grp, kind, namespace, name, body, revision, generation, type FROM events"
            " WHERE revision > ? ORDER BY id",
            (resource_version,),
        ).fetchall()
        return [
            WatchEvent(r[7], StoredObject(_key_of(r), json.loads(r[4]), r[5], r[6]), r[5])
            for r in rows
        ]

    def _read(self, conn: sqlite3.Connection, key: ObjectKey) -> StoredObject | None:
        row = conn.execute(
            "SELECT body, resource_version, generation FROM objects"
            " WHERE grp = ? AND kind = ? AND namespace = ? AND name = ?",
            (key.group, key.kind, key.namespace, key.name),
        ).fetchone()
        if row is None:
            return None
        return StoredObject(key, json.loads(row[0]), row[1], row[2])

    def _apply(
        self, conn: sqlite3.Connection, changes: Sequence[Change], unchanged_since: int | None
    ) -> tuple[builtins.list[ChangeResult], builtins.list[WatchEvent]]:
        """Check and plan every change, then write them all at one new revision."""
        current = self._meta(conn, "revision")
        if unchanged_since is not None and current != unchanged_since:
            raise Stale(unchanged_since, current)
        revision = current + 1
        now = now_rfc3339()
        results: list[ChangeResult] = []
        # (event type, key, body, generation) of each change that writes
        writes: list[tuple[EventType, ObjectKey, dict[str, Any], int]] = []

        for change in changes:
            current = self._read(conn, change.key)
            key = change.key
            action, body, generation, etype = plan_change(change, current, now)
            if etype is None:
                assert current is not None
                results.append(ChangeResult(key, action, current))
                continue
            body.setdefault("metadata", {})["resourceVersion"] = str(revision)
            obj = StoredObject(key, body, revision, generation)
            results.append(ChangeResult(key, action, obj))
            writes.append((etype, key, body, generation))

        if not writes:
            return results, []

        events: list[WatchEvent] = []
        for etype, key, body, generation in writes:
            text = dumps(body)
            params = (key.group, key.kind, key.namespace, key.name)
            if etype == "DELETED":
                conn.execute(
                    "DELETE FROM objects WHERE grp = ? AND kind = ? AND namespace = ? AND name = ?",
                    params,
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO objects"
                    " (grp, kind, namespace, name, body, resource_version, generation)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*params, text, revision, generation),
                )
            conn.execute(
                "INSERT INTO events (revision, type, grp, kind, namespace, name, body, generation)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (revision, etype, *params, text, generation),
            )
            # Watchers get their own decoded copy, independent of the results.
            events.append(
                WatchEvent(
                    etype, StoredObject(key, json.loads(text), revision, generation), revision
                )
            )
        conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
        self._compact(conn)
        return results, events

    def _compact(self, conn: sqlite3.Connection) -> None:
        """Drop events beyond the retained history, whole revisions at a time."""
        lo, hi = conn.execute("SELECT MIN(id), MAX(id) FROM events").fetchone()
        if lo is None or hi - lo + 1 <= self._event_history:
            return
        cutoff_id = hi - self._event_history + 1
        row = conn.execute(
            "SELECT MIN(revision) FROM events WHERE id >= ?", (cutoff_id,)
        ).fetchone()
        oldest_kept = int(row[0])
        conn.execute("DELETE FROM events WHERE revision < ?", (oldest_kept,))
        conn.execute(
            "UPDATE meta SET value = MAX(value, ?) WHERE name = 'compact_revision'",
            (oldest_kept - 1,),
        )

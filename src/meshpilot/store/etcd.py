"""etcd implementation of the config store, for several control-plane replicas.

Same contract as :class:`~meshpilot.store.sqlite.SqliteStore` (see
:mod:`meshpilot.store.protocol`); the design, and why:

* **resourceVersion is etcd's revision.** A commit is one etcd transaction; every object
  it writes gets that transaction's revision (the key's ``mod_revision``), stamped into
  ``metadata.resourceVersion`` when read, as the Kubernetes API server does. Revisions
  are etcd's: increasing, shared with anything else in the cluster, not consecutive.
* **All-or-nothing, serialised.** Every commit also rewrites one ``head`` key and
  compares its ``mod_revision`` with the one read before planning. If any replica
  committed in between, the transaction does nothing and the commit is planned again
  on the new state; so preconditions (expected resourceVersion, must exist) are checked
  against exactly the state the transaction replaces, across processes, as SQLite's
  write lock does within one file.
* **An event log beside the objects.** Each commit writes its events (with the full
  object, also for a delete) under ``log/<sequence>`` in the same transaction. Watches
  are etcd watches on that prefix, so a commit arrives whole, and resuming from a
  revision is a range read of the log; the last ``event_history`` events are kept, as
  with SQLite, and older resumes raise Expired (410). A watch that etcd itself can no
  longer serve (its history compacted) is cut off, so the reader resumes or re-lists.

Keys, under a prefix so that several meshes (or test cases) share one cluster:
``head``, ``o/<group>/<kind>/<namespace>/<name>`` (percent-encoded parts) and
``log/<sequence>-<events>``.
"""

from __future__ import annotations

import builtins
import copy
import json
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote

from meshpilot.store.etcd_client import (
    RETRY_SECONDS,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    b64,
    range_request,
    unb64,
)
from meshpilot.store.etcd_watch import LogFeed
from meshpilot.store.model import (
    Change,
    ChangeResult,
    EventType,
    Expired,
    ObjectKey,
    Refused,
    Stale,
    StoredObject,
    Unavailable,
    WatchEvent,
)
from meshpilot.store.planning import now_rfc3339, plan_change, validate_changes
from meshpilot.store.sqlite import DEFAULT_EVENT_HISTORY
from meshpilot.store.url import DEFAULT_PREFIX
from meshpilot.store.watch import Watch

COMMIT_ATTEMPTS = 50
"""Re-plans of one commit when other replicas keep committing first; each attempt is one
round trip, so this bounds a commit's time under contention."""
READ_CHUNK = 100  # keys read per transaction (etcd's default --max-txn-ops is 128)

Head = tuple[int, dict[str, int]]  # (mod_revision of the head key, its value)
_Write = tuple[EventType, ObjectKey, dict[str, Any], int]


def object_key(prefix: str, key: ObjectKey) -> str:
    parts = (key.group, key.kind, key.namespace, key.name)
    return prefix + "o/" + "/".join(quote(p, safe="") for p in parts)


def _key_from(prefix: str, raw: str) -> ObjectKey:
    group, kind, namespace, name = (unquote(p) for p in raw[len(prefix) + 2:].split("/"))
    return ObjectKey(group, kind, namespace, name)


def _stamped(key: ObjectKey, value: dict[str, Any], revision: int) -> StoredObject:
    body = value["body"]
    body.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return StoredObject(key, body, revision, int(value["generation"]))


def decode_log(kv: dict[str, Any]) -> builtins.list[WatchEvent]:
    """The events of one commit, from its log entry."""
    revision = int(kv["mod_revision"])
    out = []
    for entry in json.loads(unb64(kv.get("value"))):
        key = ObjectKey(*entry["key"])
        out.append(WatchEvent(entry["type"], _stamped(key, entry, revision), revision))
    return out


class EtcdStore:
    """The config store in an etcd cluster; safe to share between threads, and between
    processes (replicas) on the same cluster and prefix, whose commits every watch sees."""

    def __init__(self, endpoints: Sequence[str], *, prefix: str = DEFAULT_PREFIX,
                 event_history: int = DEFAULT_EVENT_HISTORY,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        if event_history < 1:
            raise ValueError("event_history must be at least 1")
        if not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix
        self.endpoints = list(endpoints)
        self._event_history = event_history
        self._client: EtcdClient | None = EtcdClient(self.endpoints, retry_seconds=retry_seconds)
        self._lock = threading.Lock()
        self._feeds: builtins.list[LogFeed] = []
        self.write_lock = threading.Lock()
        """Held by a writer from reading the state it validates against until its commit
        (see ``ConfigService``)."""
        self._commit_lock = threading.Lock()  # this process's commits never race each other
        self._call(lambda c: c.range(self.prefix + "head"))  # fail now if etcd is absent

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close all watches and the connections; idempotent."""
        with self._lock:
            feeds, self._feeds = self._feeds, []
            client, self._client = self._client, None
        for feed in feeds:
            feed.watch.close()
        if client is not None:
            client.close()

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _etcd(self) -> EtcdClient:
        client = self._client
        if client is None:
            raise RuntimeError("store is closed")
        return client

    def _call(self, request: Any) -> Any:
        """Run ``request(client)``; an unreachable cluster becomes the store's
        Unavailable."""
        try:
            return request(self._etcd())
        except EtcdUnavailable as exc:
            raise Unavailable(", ".join(self.endpoints), exc.cause) from exc

    # -- reads -------------------------------------------------------------

    def get(self, key: ObjectKey) -> StoredObject | None:
        """The current object at ``key``, or None."""
        answer = self._call(lambda c: c.range(object_key(self.prefix, key)))
        kvs = answer.get("kvs") or []
        return self._object(kvs[0]) if kvs else None

    def list(self, group: str | None = None, kind: str | None = None,
             namespace: str | None = None) -> builtins.list[StoredObject]:
        """Objects matching the given filters (None = any), sorted by key."""
        start = self.prefix + "o/"
        for part in (group, kind, namespace):  # the leading filters narrow the range
            if part is None:
                break
            start += quote(part, safe="") + "/"
        answer = self._call(lambda c: c.range(start, prefix=True))
        objects = [self._object(kv) for kv in answer.get("kvs") or []]
        objects = [o for o in objects
                   if (group is None or o.key.group == group)
                   and (kind is None or o.key.kind == kind)
                   and (namespace is None or o.key.namespace == namespace)]
        objects.sort(key=lambda o: o.key)
        return objects

    def _object(self, kv: dict[str, Any]) -> StoredObject:
        key = _key_from(self.prefix, unb64(kv["key"]).decode())
        return _stamped(key, json.loads(unb64(kv.get("value"))), int(kv["mod_revision"]))

    def revision(self) -> int:
        """The revision of the last commit that changed something (0 if none ever did)."""
        return self._head()[0]

    def _head(self, revision: int = 0) -> Head:
        answer = self._call(lambda c: c.range(self.prefix + "head", revision=revision))
        return _head_of(answer)

    def events_since(self, resource_version: int) -> builtins.list[WatchEvent]:
        """Every event with revision > ``resource_version``, in order; Expired if part of
        that history is no longer kept."""
        return self._history(resource_version)[0]

    def _history(self, since: int) -> tuple[builtins.list[WatchEvent], int]:
        """The events after ``since`` and the etcd revision they were read at, read in
        one transaction (so a trim of the log cannot fall between the two reads)."""
        answer = self._call(lambda c: c.txn([], [
            {"request_range": range_request(self.prefix + "head")},
            {"request_range": range_request(self.prefix + "log/", prefix=True,
                                            min_mod_revision=since + 1)}]))
        head, log = (r.get("response_range", {}) for r in answer.get("responses", []))
        compacted = _head_of(head)[1].get("compacted", 0)
        if since < compacted:
            raise Expired(since, compacted)
        events = [e for kv in log.get("kvs") or [] for e in decode_log(kv)]
        events.sort(key=lambda e: e.resource_version)  # stable: a commit's order is kept
        return events, int(answer["header"]["revision"])

    # -- watch -------------------------------------------------------------

    def watch(self, since: int | None = None, limit: int | None = None) -> Watch:
        """Subscribe to changes after revision ``since`` (None: from now); ``limit``
        bounds the events queued for a slow reader (see :mod:`.watch`).

        The history after ``since`` is read at one etcd revision and the etcd watch
        starts right after it, so there is neither a gap nor a duplicate between them.
        """
        if since is None:
            since = self.revision()
        backlog, read_at = self._history(since)
        feed = LogFeed(self._etcd(), self.prefix + "log/", read_at + 1, decode_log)
        watch = Watch(since, self._unsubscribe_feed(feed), limit)
        watch._deliver_history(backlog)
        with self._lock:
            if self._client is None:
                raise RuntimeError("store is closed")
            self._feeds.append(feed)
        feed.start(watch)
        return watch

    def _unsubscribe_feed(self, feed: LogFeed) -> Any:
        def unsubscribe(_watch: Watch) -> None:
            feed.stop()
            with self._lock:
                if feed in self._feeds:
                    self._feeds.remove(feed)
        return unsubscribe

    # -- writes ------------------------------------------------------------

    def commit(self, changes: Sequence[Change], *,
               unchanged_since: int | None = None) -> builtins.list[ChangeResult]:
        """Apply ``changes`` atomically; return one result per change, in order.

        All-or-nothing: on Conflict or NotFound nothing is written and the exception
        propagates. A key may appear only once per commit (ValueError otherwise).
        ``unchanged_since``: raise Stale (writing nothing) if the store moved past it.
        """
        validate_changes(changes)
        if not changes:
            return []
        with self._commit_lock:
            for _ in range(COMMIT_ATTEMPTS):
                done = self._try_commit(changes, unchanged_since)
                if done is not None:
                    return done
        raise Unavailable(", ".join(self.endpoints),
                          f"{COMMIT_ATTEMPTS} attempts lost to other replicas' commits")

    def _try_commit(self, changes: Sequence[Change],
                    unchanged_since: int | None) -> builtins.list[ChangeResult] | None:
        """One attempt: read, plan, write if nobody committed meanwhile (else None)."""
        head_revision, head = self._head()
        if unchanged_since is not None and head_revision != unchanged_since:
            raise Stale(unchanged_since, head_revision)
        currents = self._read_many([c.key for c in changes])
        now = now_rfc3339()
        planned: builtins.list[tuple[Change, str, dict[str, Any], int]] = []
        writes: builtins.list[_Write] = []
        for change in changes:
            action, body, generation, etype = plan_change(change, currents[change.key], now)
            planned.append((change, action, body, generation))
            if etype is not None:
                writes.append((etype, change.key, body, generation))
        if not writes:
            return [ChangeResult(c.key, "unchanged", currents[c.key]) for c, *_ in planned]
        ops = self._write_ops(writes, head)
        compare = [{"key": b64(self.prefix + "head"), "target": "MOD", "result": "EQUAL",
                    "mod_revision": str(head_revision)}]
        try:
            answer = self._call(lambda c: c.txn(compare, ops))
        except EtcdError as exc:
            raise Refused(", ".join(self.endpoints), exc.message, _hint(exc, len(ops))) from exc
        if not answer.get("succeeded"):
            return None
        revision = int(answer["header"]["revision"])
        results = []
        for change, action, body, generation in planned:
            if action == "unchanged":
                results.append(ChangeResult(change.key, action, currents[change.key]))
                continue
            stamped = copy.deepcopy(body)
            stamped.setdefault("metadata", {})["resourceVersion"] = str(revision)
            results.append(ChangeResult(change.key, action,  # type: ignore[arg-type]
                                        StoredObject(change.key, stamped, revision,
                                                     generation)))
        return results

    def _read_many(self, keys: builtins.list[ObjectKey]) -> dict[ObjectKey, StoredObject | None]:
        found: dict[ObjectKey, StoredObject | None] = dict.fromkeys(keys)
        for i in range(0, len(keys), READ_CHUNK):
            chunk = keys[i:i + READ_CHUNK]
            ops = [{"request_range": range_request(object_key(self.prefix, k))} for k in chunk]
            answer = self._call(lambda c, ops=ops: c.txn([], ops))
            for response in answer.get("responses", []):
                for kv in response.get("response_range", {}).get("kvs") or []:
                    obj = self._object(kv)
                    found[obj.key] = obj
        return found

    def _write_ops(self, writes: builtins.list[_Write],
                   head: dict[str, int]) -> builtins.list[dict[str, Any]]:
        """The transaction's operations: the objects, the commit's log entry, the trim of
        the oldest log entries beyond the retained history, and the new head."""
        ops: builtins.list[dict[str, Any]] = []
        log: builtins.list[dict[str, Any]] = []
        for etype, key, body, generation in writes:
            clean = copy.deepcopy(body)
            clean.get("metadata", {}).pop("resourceVersion", None)  # stamped when read
            name = object_key(self.prefix, key)
            if etype == "DELETED":
                ops.append({"request_delete_range": {"key": b64(name)}})
            else:
                value = json.dumps({"generation": generation, "body": clean})
                ops.append({"request_put": {"key": b64(name), "value": b64(value)}})
            log.append({"type": etype, "key": list(key), "generation": generation,
                        "body": clean})
        sequence = head.get("seq", 0) + 1
        entry = f"{self.prefix}log/{sequence:020d}-{len(log)}"
        ops.append({"request_put": {"key": b64(entry), "value": b64(json.dumps(log))}})
        retained = head.get("retained", 0) + len(log)
        dropped, retained, compacted = self._trim(retained, head.get("compacted", 0))
        ops += [{"request_delete_range": {"key": b64(k)}} for k in dropped]
        new_head = {"seq": sequence, "retained": retained, "compacted": compacted}
        ops.append({"request_put": {"key": b64(self.prefix + "head"),
                                    "value": b64(json.dumps(new_head))}})
        return ops

    def _trim(self, retained: int, compacted: int) -> tuple[builtins.list[str], int, int]:
        """The oldest log entries to drop so that about ``event_history`` events stay:
        whole commits, dropped while what remains still holds the history (as SQLite's
        compaction keeps the commit that straddles the cut)."""
        dropped: builtins.list[str] = []
        if retained <= self._event_history:
            return dropped, retained, compacted
        answer = self._call(lambda c: c.range(self.prefix + "log/", prefix=True,
                                              limit=READ_CHUNK // 2, keys_only=True))
        for kv in answer.get("kvs") or []:
            name = unb64(kv["key"]).decode()
            count = int(name.rpartition("-")[2])
            if retained - count < self._event_history:
                break
            dropped.append(name)
            retained -= count
            compacted = max(compacted, int(kv["mod_revision"]))
        return dropped, retained, compacted


def _hint(exc: EtcdError, operations: int) -> str:
    """What to change when etcd's own limits refused a commit."""
    if "too many operations" in exc.message:
        return (f"The commit needs {operations} operations in one transaction: start etcd "
                f"with --max-txn-ops {operations} or more, or apply fewer objects at once")
    if "too large" in exc.message:
        return ("The commit (its objects, twice: the objects and their events) is larger "
                "than etcd takes in one request: raise etcd's --max-request-bytes, or apply "
                "fewer objects at once")
    return "Check etcd's log for why"


def _head_of(answer: dict[str, Any]) -> Head:
    kvs = answer.get("kvs") or []
    if not kvs:
        return 0, {}
    return int(kvs[0]["mod_revision"]), json.loads(unb64(kvs[0].get("value")))


__all__ = ["DEFAULT_PREFIX", "EtcdError", "EtcdStore"]

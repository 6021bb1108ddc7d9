"""What a change does to an object, whatever store keeps it.

Both stores decide a Put's outcome (created, configured or unchanged), its generation and
its server-managed metadata the same way: these pure functions are that one decision, so
the SQLite and etcd stores cannot drift apart on what "unchanged" or "a spec change"
means. The resourceVersion is left to the store (a SQLite row counter, etcd's revision).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from meshpilot.store.model import (
    Action,
    Change,
    Conflict,
    Delete,
    EventType,
    NotFound,
    ObjectKey,
    Put,
    PutStatus,
    StoredObject,
)

# metadata fields the store owns: ignored in the user's body when deciding
# whether a Put changes anything, and overwritten on write.
SERVER_METADATA = ("resourceVersion", "generation", "uid", "creationTimestamp", "managedFields")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(body: dict[str, Any]) -> str:
    """The stored text of a body: canonical, so equal bodies are equal strings."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def metadata(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, dict) else {}


def comparable(body: dict[str, Any], key: ObjectKey) -> dict[str, Any]:
    """The part of a body a Put owns: no status, no server-managed metadata."""
    out = {k: v for k, v in body.items() if k != "status"}
    meta = {k: v for k, v in metadata(body).items() if k not in SERVER_METADATA}
    meta["name"] = key.name
    meta["namespace"] = key.namespace
    out["metadata"] = meta
    return out


def spec_part(body: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: a change here bumps generation."""
    return {k: v for k, v in body.items() if k not in ("metadata", "status")}


def plan_put(change: Put, current: StoredObject | None,
             now: str) -> tuple[dict[str, Any], int, Action]:
    """New body, generation and action of a Put (resourceVersion set by the store)."""
    key = change.key
    wanted = copy.deepcopy(comparable(change.body, key))
    # keep the user's managedFields, if any; a change of them alone changes no generation
    managed = metadata(change.body).get("managedFields")
    if current is None:
        body = wanted
        meta = body["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now
        meta["generation"] = 1
        if managed is not None:
            meta["managedFields"] = copy.deepcopy(managed)
        return body, 1, "created"

    if comparable(current.body, key) == wanted:
        if managed is None or managed == metadata(current.body).get("managedFields"):
            return current.body, current.generation, "unchanged"
        # only the fields' owners changed (another manager applied the same values):
        # stored, as an API server stores it, so the next apply's conflicts see them
        body = copy.deepcopy(current.body)
        body["metadata"]["managedFields"] = copy.deepcopy(managed)
        return body, current.generation, "configured"
    generation = current.generation
    if spec_part(current.body) != spec_part(wanted):
        generation += 1
    body = wanted
    meta = body["metadata"]
    old_meta = metadata(current.body)
    meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
    meta["creationTimestamp"] = old_meta.get("creationTimestamp") or now
    meta["generation"] = generation
    if managed is not None:
        meta["managedFields"] = copy.deepcopy(managed)
    if "status" in current.body:
        body["status"] = copy.deepcopy(current.body["status"])
    return body, generation, "configured"


def validate_changes(changes: Sequence[Change]) -> None:
    """The checks every store makes before a commit touches anything: only store changes,
    each key once (so a revision holds at most one version of an object), dict bodies."""
    seen: set[ObjectKey] = set()
    for change in changes:
        if not isinstance(change, Put | Delete | PutStatus):
            raise TypeError(f"not a store change: {change!r}")
        if change.key in seen:
            raise ValueError(f"{change.key} appears more than once in one commit")
        seen.add(change.key)
        if isinstance(change, Put) and not isinstance(change.body, dict):
            raise TypeError(f"Put body for {change.key} must be a dict")
        if isinstance(change, PutStatus) and not isinstance(change.status, dict):
            raise TypeError(f"PutStatus status for {change.key} must be a dict")


Planned = tuple[Action, dict[str, Any], int, EventType | None]
"""A change's action, the object's new (or deleted) body, its generation, and the
watch event it makes (None when it changes nothing)."""


def plan_change(change: Change, current: StoredObject | None, now: str) -> Planned:
    """Check one change against the object it finds and decide what it writes.

    Raises Conflict (a stale expected resourceVersion) or NotFound (a Delete or PutStatus
    of a missing object): the store then writes nothing of the commit."""
    key = change.key
    if isinstance(change, Put):
        expected = change.expected_resource_version
        actual = current.resource_version if current else 0
        if expected is not None and expected != actual:
            raise Conflict(key, expected, actual)
        body, generation, action = plan_put(change, current, now)
        if action == "unchanged":
            return action, body, generation, None
        return action, body, generation, "ADDED" if action == "created" else "MODIFIED"
    if current is None:
        raise NotFound(key)
    if isinstance(change, Delete):
        expected = change.expected_resource_version
        if expected is not None and expected != current.resource_version:
            raise Conflict(key, expected, current.resource_version)
        return "deleted", copy.deepcopy(current.body), current.generation, "DELETED"
    if current.body.get("status") == change.status:
        return "unchanged", current.body, current.generation, None
    body = copy.deepcopy(current.body)
    body["status"] = copy.deepcopy(change.status)
    return "configured", body, current.generation, "MODIFIED"

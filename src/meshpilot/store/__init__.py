"""Durable config store: JSON documents keyed by (group, kind, namespace, name).

Schema-agnostic, transactional (all-or-nothing commits), versioned by one global
revision like etcd, and watchable with resume. One protocol (``protocol.py``), two
implementations: SQLite (``sqlite.py``, the embedded default) and etcd (``etcd.py``).
"""

from meshpilot.store.model import (
    Action,
    Change,
    ChangeResult,
    Conflict,
    Corrupt,
    Delete,
    EventType,
    Expired,
    NotFound,
    ObjectKey,
    Put,
    PutStatus,
    Refused,
    Stale,
    StoredObject,
    StoreError,
    Unavailable,
    WatchEvent,
    WriteFailed,
)
from meshpilot.store.protocol import ConfigStore
from meshpilot.store.sqlite import DEFAULT_EVENT_HISTORY, SqliteStore
from meshpilot.store.watch import Watch

__all__ = [
    "DEFAULT_EVENT_HISTORY",
    "Action",
    "Change",
    "ChangeResult",
    "ConfigStore",
    "Conflict",
    "Corrupt",
    "Delete",
    "EventType",
    "Expired",
    "NotFound",
    "ObjectKey",
    "Put",
    "PutStatus",
    "Refused",
    "SqliteStore",
    "Stale",
    "StoreError",
    "StoredObject",
    "Unavailable",
    "Watch",
    "WatchEvent",
    "WriteFailed",
]

"""``dryRun=All``: a write checked in full and answered as if done, changing nothing.

``kubectl --dry-run=server`` and ``kubectl diff`` send it, as ``?dryRun=All`` on a
create, update or patch and inside the DeleteOptions body of a delete. The only value
the API server knows is ``All``; anything else is refused rather than taken as a real
write, since a dry run that writes is the one mistake it must never make.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from meshpilot.store import StoredObject

_ALL = "All"
_SERVER_SET = ("uid", "creationTimestamp", "resourceVersion", "generation")


class BadDryRun(ValueError):
    """A dryRun value other than All."""


def requested(values: Iterable[Any]) -> bool:
    """Whether ``values`` (the ``dryRun`` query parameters, or DeleteOptions' list) ask
    for a dry run; BadDryRun for a value that is not ``All``."""
    found = [v for v in values if v not in (None, "")]
    bad = [v for v in found if v != _ALL]
    if bad:
        raise BadDryRun(f"dryRun {bad[0]!r}: the only supported value is All")
    return bool(found)


def from_delete_options(body: Any) -> list[Any]:
    """The dryRun list of a DeleteOptions body (none when there is no body)."""
    if not isinstance(body, dict):
        return []
    raw = body.get("dryRun")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadDryRun(f"DeleteOptions.dryRun is a list such as [\"All\"], not {raw!r}")
    return raw


def preview(body: dict[str, Any], current: StoredObject | None,
            api_version: str) -> dict[str, Any]:
    """What the store would hold after writing ``body``: the server-set metadata of the
    stored object (or fresh ones for a create) and its status kept."""
    out = copy.deepcopy(body)
    out["apiVersion"] = api_version
    meta = out.setdefault("metadata", {})
    for name in _SERVER_SET:
        meta.pop(name, None)
    if current is None:
        meta.update(uid=str(uuid.uuid4()), generation=1,
                    creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return out
    old = current.body.get("metadata") or {}
    meta.update({k: old[k] for k in _SERVER_SET if k in old})
    meta["resourceVersion"] = str(current.resource_version)
    if "status" in current.body:
        out["status"] = copy.deepcopy(current.body["status"])
    return out

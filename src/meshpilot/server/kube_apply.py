"""Server-side apply and ``metadata.managedFields``: who set which field.

``kubectl apply --server-side`` sends the object as its author wants it
(``PATCH`` with ``application/apply-patch+yaml`` and ``?fieldManager=``); the server
merges it into the stored object and records the fields that manager now owns. A field
the applied object sets to a value other than the stored one, while another manager owns
it, is a conflict (409) unless the client forces (``?force=true``), which moves the
field to the applier. A field the manager applied last time and leaves out now is
removed, unless another manager owns it too. This follows the API server's behaviour
(sigs.k8s.io/structured-merge-diff), with the simplification :mod:`kube_fieldsets`
states: lists of objects with a merge key are merged by it, every other list is atomic.

Other writes through the Kubernetes paths (create, update, merge and strategic patches)
record the fields they changed under their manager with operation ``Update``, taking
them from any other manager without conflict, as the API server does; that is what makes
a later server-side apply conflict with, say, ``kubectl edit`` or ``kubectl scale``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshpilot.server import kube_fieldsets as fs

APPLY_PATCH = "application/apply-patch+yaml"
APPLY = "Apply"
UPDATE = "Update"


@dataclass(frozen=True)
class Conflict:
    manager: str
    api_version: str
    path: fs.Path


class ApplyConflicts(Exception):
    """An apply that would change fields other managers own; ``message`` is the one the
    API server gives (kubectl adds its advice on ``--force-conflicts`` after it)."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = conflicts
        many = len(conflicts) > 1
        managers = sorted({(c.manager, c.api_version) for c in conflicts})
        head = f"Apply failed with {len(conflicts)} conflict{'s' if many else ''}: "
        if len(managers) == 1 and not many:
            c = conflicts[0]
            text = f'conflict with "{c.manager}" using {c.api_version}: {fs.shown(c.path)}'
        else:
            text = "; ".join(
                f'conflicts with "{m}" using {v}:\n' + "\n".join(
                    f"- {fs.shown(c.path)}" for c in conflicts if (c.manager, c.api_version)
                    == (m, v)) for m, v in managers)
        super().__init__(head + text)

    def causes(self) -> list[dict[str, str]]:
        """metav1.StatusCause per conflict, as kubectl and client-go read them."""
        return [{"reason": "FieldManagerConflict", "field": fs.shown(c.path),
                 "message": f'conflict with "{c.manager}" using {c.api_version}'}
                for c in self.conflicts]


class BadApply(ValueError):
    """An apply request that cannot be carried out as sent (400)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str
    fields: fs.FieldSet

    def to_json(self) -> dict[str, Any]:
        return {"manager": self.manager, "operation": self.operation,
                "apiVersion": self.api_version, "time": self.time,
                "fieldsType": "FieldsV1", "fieldsV1": fs.to_fields_v1(self.fields)}


def _entries(body: dict[str, Any] | None) -> list[_Entry]:
    """The managedFields of ``body``; entries not in the shape the server writes are
    dropped (a client could have written anything there)."""
    meta = (body or {}).get("metadata")
    raw = meta.get("managedFields") if isinstance(meta, dict) else None
    found = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and isinstance(item.get("manager"), str):
            found.append(_Entry(item["manager"], str(item.get("operation", UPDATE)),
                                str(item.get("apiVersion", "")), str(item.get("time", "")),
                                fs.from_fields_v1(item.get("fieldsV1"))))
    return found


def _with_entries(body: dict[str, Any], entries: list[_Entry]) -> dict[str, Any]:
    result = dict(body)
    meta = dict(result.get("metadata") or {})
    kept = [e.to_json() for e in entries if e.fields]
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)
    result["metadata"] = meta
    return result


def _own(entries: list[_Entry], manager: str, operation: str, api_version: str,
         fields: fs.FieldSet, now: str) -> list[_Entry]:
    """``entries`` with ``manager``'s entry for ``operation`` holding ``fields`` (its
    time changed only when its fields did, as the API server does)."""
    out, mine = [], None
    for entry in entries:
        if (entry.manager, entry.operation) == (manager, operation):
            mine = entry
        else:
            out.append(entry)
    if mine is None or mine.fields != fields or mine.api_version != api_version:
        mine = _Entry(manager, operation, api_version, now, fields)
    return [*out, mine]


def applied_object(text: bytes) -> dict[str, Any]:
    """The body of an apply patch: one YAML (or JSON) object with apiVersion and kind and
    no managedFields (the server writes those)."""
    import yaml

    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadApply(f"the apply patch is not YAML: {exc}") from None
    if not isinstance(body, dict):
        raise BadApply("the apply patch is one object (apiVersion, kind, metadata, ...)")
    for field in ("apiVersion", "kind"):
        if not body.get(field):
            raise BadApply(f"the applied object has no {field}: server-side apply needs "
                           "apiVersion and kind")
    meta = body.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise BadApply("metadata.managedFields must be left out of an applied object: "
                       "the server writes it")
    return body


def server_side_apply(live: dict[str, Any] | None, applied: dict[str, Any], manager: str,
                      *, force: bool, now: str | None = None) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` over ``live`` (None: a create),
    with its managedFields; :class:`ApplyConflicts` if another manager owns a field it
    would change and ``force`` is not set."""
    when = now or _now()
    api_version = str(applied["apiVersion"])
    wanted = fs.object_fields(applied)
    entries = _entries(live)
    conflicts = [
        Conflict(e.manager, e.api_version, path)
        for e in entries if (e.manager, e.operation) != (manager, APPLY)
        for path in sorted(wanted & e.fields) if _differs(live, applied, path)]
    if conflicts and not force:
        raise ApplyConflicts(conflicts)
    taken = {c.path for c in conflicts}
    for entry in entries:
        if (entry.manager, entry.operation) != (manager, APPLY):
            entry.fields = frozenset(entry.fields - taken)
    before = next((e.fields for e in entries if (e.manager, e.operation) == (manager, APPLY)),
                  frozenset())
    result = fs.merged(live or {}, applied)
    others = set().union(*(e.fields for e in entries
                           if (e.manager, e.operation) != (manager, APPLY)))
    for path in sorted(before - wanted, key=len, reverse=True):
        if path not in others:
            result = fs.without(result, path)
    return _with_entries(result, _own(entries, manager, APPLY, api_version, wanted, when))


SERVER_SIDE_KUBECTL = "kubectl"  # the manager kubectl apply --server-side names
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def apply_upgrading(live: dict[str, Any] | None, applied: dict[str, Any], manager: str,
                    *, force: bool, now: str | None = None) -> dict[str, Any]:
    """:func:`server_side_apply`, moving an object from client-side to server-side apply
    as the API server does for kubectl's own manager (``kubectl``): a conflict on a
    field that the last client-side apply set (the last-applied annotation) and that
    still holds that value is allowed, and the apply is forced. So the first ``kubectl
    apply --server-side`` after ``kubectl apply`` changes the file's fields without
    ``--force-conflicts``, while a field someone changed since still conflicts."""
    try:
        return server_side_apply(live, applied, manager, force=force, now=now)
    except ApplyConflicts as exc:
        last = _last_applied(live) if manager == SERVER_SIDE_KUBECTL else None
        if last is None:
            raise
        allowed = {p for p in fs.object_fields(last)
                   if fs.value_at(last, p) == fs.value_at(live, p)}
        left = [c for c in exc.conflicts if c.path not in allowed]
        if left:
            raise ApplyConflicts(left) from None
    return server_side_apply(live, applied, manager, force=True, now=now)


def _last_applied(live: dict[str, Any] | None) -> dict[str, Any] | None:
    import json

    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    try:
        last = json.loads(annotations.get(LAST_APPLIED, ""))
    except ValueError:
        return None
    return last if isinstance(last, dict) else None


def _differs(live: dict[str, Any] | None, applied: dict[str, Any], path: fs.Path) -> bool:
    """Whether applying changes the value at ``path``; an associative list's element
    (its being there) is never a change in itself, only its fields can be."""
    if path and path[-1].startswith("k:"):
        return False
    has, old = fs.value_at(live, path)
    _, new = fs.value_at(applied, path)
    return has and old != new


def track_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str,
                 *, now: str | None = None) -> dict[str, Any]:
    """``new`` (a create, replace or patch result) with managedFields recording that
    ``manager`` set the fields it changed from ``old``. managedFields that the request
    itself changed are kept as sent: the client is resetting them."""
    sent = (new.get("metadata") or {}).get("managedFields")
    if sent is not None and sent != (((old or {}).get("metadata") or {})
                                     .get("managedFields")):
        return copy.deepcopy(new)
    before = fs.object_fields(old) if old else frozenset()
    after = fs.object_fields(new)
    changed = frozenset(p for p in after
                        if p not in before or fs.value_at(old, p) != fs.value_at(new, p))
    gone = before - after
    entries = _entries(old)
    for entry in entries:
        entry.fields = frozenset(entry.fields - changed - gone)
    mine = next((e.fields for e in entries if (e.manager, e.operation) == (manager, UPDATE)),
                frozenset())
    updated = _own(entries, manager, UPDATE, str(new.get("apiVersion", "")),
                   frozenset(mine | changed), now or _now())
    return _with_entries(new, updated)


def manager_of(field_manager: str | None, user_agent: str) -> str:
    """The manager of a write: ``?fieldManager=``, else the client's name from its
    User-Agent (``kubectl/v1.32.4 (linux/amd64)`` is ``kubectl``), as the API server
    names it."""
    if field_manager:
        return field_manager
    return user_agent.split("/")[0].strip() or "unknown"

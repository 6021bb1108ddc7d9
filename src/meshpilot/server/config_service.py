"""The one path by which configuration changes: load → validate → store.

Every writer (CLI, API client, later the delivery controller) goes through here, so
nothing changes traffic by a back door. Validation against the current state and the
commit happen under one lock, so two concurrent applies cannot both pass a check that
only one of them could satisfy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import by_kind
from meshpilot.store import (
    Conflict,
    Delete,
    NotFound,
    Put,
    PutStatus,
    Refused,
    Stale,
    StoredObject,
    Unavailable,
    WriteFailed,
)
from meshpilot.store.mirror import StoreMirror
from meshpilot.store.protocol import ConfigStore
from meshpilot.validation import (
    Diagnostic,
    Plan,
    Source,
    StateIndex,
    StateObject,
    codes,
    findings_about,
    newly_broken,
    plan_apply,
)

STALE_RETRIES = 5
"""Validations of one apply when other replicas keep committing before it."""
MIRROR_WAIT_SECONDS = 2.0
"""How long an apply waits for the mirror to receive the last commits (etcd delivers them
from its watch, a few milliseconds after they commit) before validating against a fresh
read of the whole store instead."""


@dataclass
class Outcome:
    """What a change did, or why it did nothing. ``status`` is the HTTP status to send."""

    status: int
    results: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }


def _result(key: ObjectKey, action: str, obj: StoredObject | None) -> dict[str, Any]:
    info = by_kind(key.kind)
    out: dict[str, Any] = {
        "group": key.group,
        "kind": key.kind,
        "plural": info.plural,
        "namespace": key.namespace,
        "name": key.name,
        "action": action,
    }
    if obj is not None:
        out["resourceVersion"] = str(obj.resource_version)
        out["generation"] = obj.generation
    return out


def state_of(objects: Iterable[StoredObject]) -> list[StateObject]:
    """Stored objects as the validator's view of the current state."""
    return [StateObject(o.key, o.body) for o in objects]


def _expected_version(body: dict[str, Any]) -> int | str | None:
    """metadata.resourceVersion as an int, None when absent, or the bad value as a str."""
    raw = (body.get("metadata") or {}).get("resourceVersion")
    if raw in (None, ""):
        return None
    try:
        return int(str(raw))
    except ValueError:
        return str(raw)


class ConfigService:
    def __init__(self, store: ConfigStore, mirror: StoreMirror | None = None) -> None:
        """``mirror``, when given, keeps the index of the current state that changes are
        validated against (validation.StateIndex) current from the store's watch,
        instead of reading and decoding every stored object on each apply (the cost that
        grew with the store). It is polled only under the store's write lock, which
        every ConfigService over the store validates and commits under, so one mirror
        may serve them all and always holds every commit made before the lock was
        taken."""
        self.store = store
        self._mirror = mirror
        self._index: StateIndex | None = None
        if mirror is not None:
            self._index = StateIndex()
            mirror.follow(self._index)
        # The store's lock, not one of our own: every ConfigService over this store (the
        # API's, the delivery controller's) validates and commits under the same one.
        self._lock = store.write_lock
        self.change_check: Callable[[Plan], list[Diagnostic]] | None = None
        """A check of a valid change against the running mesh (Envoy's judgement of an
        EnvoyFilter, ``envoy_filter_check``): its errors refuse the apply, its warnings
        are reported with the plan's."""
        self.more_findings: Callable[[list[StateObject]], list[Diagnostic]] = \
            lambda objects: []
        """Findings about the given objects that need what the running control plane
        knows beyond the store (the mesh config's named networks): at apply about the
        change, in analyze about every object, in describe about one."""

    def apply(self, sources: Sequence[Source], *, dry_run: bool = False,
              statuses: Sequence[PutStatus] = ()) -> Outcome:
        """Apply every document in ``sources`` or none of them.

        The commit goes through only onto the state it was validated against; if another
        control-plane replica committed in between (Stale), the apply is validated
        again on the new state, a bounded number of times. ``statuses`` are committed in
        the same transaction (not validated: a status is its controller's record), so a
        controller's step and the objects it generates land together, with one fsync;
        a missing object of theirs refuses the whole apply (404)."""
        for _ in range(STALE_RETRIES):
            try:
                outcome = self._apply_once(sources, dry_run, statuses)
            except WriteFailed as exc:  # etcd out of reach already for the validation
                return _write_failed(exc)
            if outcome is not None:
                return outcome
        return Outcome(409, diagnostics=[Diagnostic.of(
            codes.CONFLICT, f"the configuration changed under this apply {STALE_RETRIES} "
            "times in a row (other writers are busy); nothing was written: apply again")])

    def _apply_once(self, sources: Sequence[Source], dry_run: bool,
                    statuses: Sequence[PutStatus] = ()) -> Outcome | None:
        """One validation and commit; None when the state changed before the commit."""
        with self._lock:
            revision, state = self._state_at()
            plan = plan_apply(sources, state)
            if not plan.ok:
                return Outcome(422, diagnostics=plan.diagnostics)
            if self.change_check is not None:
                plan.diagnostics.extend(self.change_check(plan))
                if not plan.ok:
                    return Outcome(422, diagnostics=plan.diagnostics)
            plan.diagnostics.extend(self.more_findings(
                [StateObject(o.key, o.body, o.source, changed=True) for o in plan.objects]))
            changes, bad = self._puts(plan)
            if bad:
                return Outcome(422, diagnostics=bad + plan.warnings)
            if dry_run:
                return Outcome(200, [self._preview(p.key) for p in changes], plan.warnings)
            try:
                done = self.store.commit([*changes, *statuses], unchanged_since=revision)
            except Stale:
                return None
            except NotFound as exc:  # a status's object was deleted meanwhile
                return Outcome(404, diagnostics=[Diagnostic.of(
                    codes.NOT_FOUND, f"{exc.key} not found; nothing was written",
                    object=str(exc.key))])
            except Conflict as exc:
                return Outcome(409, diagnostics=[self._conflict(exc, plan)])
            except WriteFailed as exc:
                return _write_failed(exc)
        done = done[:len(changes)]  # the statuses are no result of the apply
        return Outcome(200, [_result(r.key, r.action, r.object) for r in done], plan.warnings)

    def _preview(self, key: ObjectKey) -> dict[str, Any]:
        current = self.store.get(key)
        return _result(key, "configured (dry run)" if current else "created (dry run)", current)

    @staticmethod
    def _puts(plan: Plan) -> tuple[list[Put], list[Diagnostic]]:
        puts: list[Put] = []
        bad: list[Diagnostic] = []
        for obj in plan.objects:
            expected = _expected_version(obj.body)
            if isinstance(expected, str):
                pos = (obj.source.position_of(("metadata", "resourceVersion"))
                       if obj.source else None)
                bad.append(Diagnostic.of(
                    codes.INVALID_VALUE,
                    f"resourceVersion {expected!r} is not one this store issued; omit it, or "
                    "use the value `meshpilot get` shows",
                    file=obj.source.file if obj.source else None,
                    line=pos.line if pos else None, column=pos.column if pos else None,
                    path="metadata.resourceVersion", object=obj.label))
                continue
            # Istio's versions share one schema and every version path serves the object,
            # so store it at the preferred version: re-applying the same object under
            # another apiVersion is "unchanged", not a spec change that bumps generation.
            body = {**obj.body, "apiVersion": by_kind(obj.key.kind).api_version()}
            puts.append(Put(body=body, key=obj.key, expected_resource_version=expected))
        return puts, bad

    @staticmethod
    def _conflict(exc: Conflict, plan: Plan) -> Diagnostic:
        where: dict[str, Any] = {"object": str(exc.key), "path": "metadata.resourceVersion"}
        for obj in plan.objects:
            if obj.key == exc.key and obj.source is not None:
                pos = obj.source.position_of(("metadata", "resourceVersion"))
                where.update(file=obj.source.file, line=pos.line, column=pos.column)
        return Diagnostic.of(
            codes.CONFLICT,
            f"the object has been modified: you sent resourceVersion {exc.expected}, the "
            f"stored one is {exc.actual}; get the latest version and apply your change to it",
            **where,
        )

    def delete(
        self, keys: Sequence[ObjectKey], *, expected: int | None = None,
        expected_uid: str | None = None, ignore_missing: bool = False,
    ) -> Outcome:
        """Delete every object in ``keys`` or none (a missing one refuses the whole delete).

        ``expected``/``expected_uid``: each object must still have that resourceVersion
        and uid (DeleteOptions' preconditions), else 409 and nothing is deleted."""
        with self._lock:
            missing = [k for k in keys if self.store.get(k) is None]
            if missing and not ignore_missing:
                return Outcome(404, diagnostics=[
                    Diagnostic.of(codes.NOT_FOUND, f"{k} not found; nothing was deleted",
                                  object=str(k)) for k in missing])
            if expected_uid is not None:
                stale = self._other_uid(keys, expected_uid)
                if stale:
                    return Outcome(409, diagnostics=stale)
            todo = [Delete(k, expected) for k in dict.fromkeys(keys) if k not in missing]
            before = self._state()
            try:
                done = self.store.commit(todo) if todo else []
            except Conflict as exc:
                return Outcome(409, diagnostics=[Diagnostic.of(
                    codes.CONFLICT, f"{exc.key} changed: expected resourceVersion "
                    f"{exc.expected}, stored {exc.actual}; nothing was deleted (get it again "
                    "to see what changed)", object=str(exc.key),
                    path="metadata.resourceVersion")])
            except WriteFailed as exc:
                return _write_failed(exc)
            except NotFound as exc:  # raced with another writer outside this lock
                return Outcome(404, diagnostics=[Diagnostic.of(
                    codes.NOT_FOUND, f"{exc.key} not found", object=str(exc.key))])
            broken = newly_broken(before, [change.key for change in todo])
        return Outcome(200, [_result(r.key, r.action, r.object) for r in done], broken)

    def findings_about(self, key: ObjectKey) -> list[Diagnostic]:
        """What every stored object's findings say about ``key`` (``describe``), judged
        on its neighbourhood in the current state."""
        with self._lock:
            found = findings_about(self._state(), key)
        held = self.store.get(key)
        return found + (self.more_findings([StateObject(key, held.body)]) if held else [])

    def _state(self) -> StateIndex:
        """Every stored object, indexed for validation; call under the write lock."""
        return self._state_at()[1]

    def _state_at(self) -> tuple[int, StateIndex]:
        """The store's revision and every object at it, indexed for validation. The
        revision is never newer than the objects (a commit in between makes the commit
        that relies on them Stale, not wrong)."""
        if self._index is None or self._mirror is None or not self._mirror.catch_up(
                self.store.revision(), MIRROR_WAIT_SECONDS):
            revision = self.store.revision()
            return revision, StateIndex.of(state_of(self.store.list()))
        return self._mirror.revision(), self._index

    def _other_uid(self, keys: Sequence[ObjectKey], uid: str) -> list[Diagnostic]:
        """Conflicts for the objects in ``keys`` whose uid is not ``uid``: another object
        of the same name was created since the client read it."""
        found = []
        for key in keys:
            obj = self.store.get(key)
            stored = (obj.body.get("metadata") or {}).get("uid") if obj else None
            if obj is not None and stored != uid:
                found.append(Diagnostic.of(
                    codes.CONFLICT, f"{key} is not the object with uid {uid} (its uid is "
                    f"{stored}): it was deleted and created again; nothing was deleted",
                    object=str(key), path="metadata.uid"))
        return found

    def put_object(self, key: ObjectKey, body: dict[str, Any], *, create_only: bool,
                   dry_run: bool = False) -> Outcome:
        """PUT/POST of one JSON object at its Kubernetes-style path (``dry_run``: checked
        in full, nothing stored)."""
        info = by_kind(key.kind)
        body = {"apiVersion": info.api_version(), "kind": info.kind, **body}
        api_version = body["apiVersion"]
        group = api_version.rpartition("/")[0] if isinstance(api_version, str) else None
        if body["kind"] != key.kind or group != key.group:
            # else a DestinationRule PUT at a VirtualService path would be stored as one
            return Outcome(400, diagnostics=[Diagnostic.of(
                codes.INVALID_VALUE,
                f"the body is {api_version} {body['kind']} but the path is for "
                f"{info.api_version()} {info.kind}", path="kind")])
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
        if meta is None:
            body = {**body, "metadata": {"name": key.name, "namespace": key.namespace}}
        else:
            meta.setdefault("namespace", key.namespace)
            if key.name:
                meta.setdefault("name", key.name)
            named = (meta.get("namespace"), meta.get("name"))
            if named != (key.namespace, key.name or meta.get("name")):
                return Outcome(400, diagnostics=[Diagnostic.of(
                    codes.INVALID_VALUE,
                    f"metadata names {named[0]}/{named[1]} but the path names "
                    f"{key.namespace}/{key.name}", path="metadata")])
        if create_only:
            meta = body["metadata"]
            name = meta.get("name")
            if isinstance(name, str) and self.store.get(
                    ObjectKey(key.group, key.kind, key.namespace, name)) is not None:
                return Outcome(409, diagnostics=[Diagnostic.of(
                    codes.CONFLICT, f"{key.kind} {key.namespace}/{name} already exists",
                    object=f"{key.kind} {key.namespace}/{name}")])
            meta.setdefault("resourceVersion", "0")
        return self.apply([("<request body>", json.dumps(body, indent=2))], dry_run=dry_run)


def _write_failed(exc: WriteFailed) -> Outcome:
    """507 Insufficient Storage, the WebDAV status for "could not store": the request
    was fine and may succeed as is once the disk has room (or etcd's limits are raised);
    503 when etcd could not be reached at all."""
    if isinstance(exc, Unavailable):
        return Outcome(503, diagnostics=[Diagnostic.of(codes.STORE_UNREACHABLE, str(exc))])
    code = codes.STORE_REFUSED if isinstance(exc, Refused) else codes.STORE_WRITE_FAILED
    return Outcome(507, diagnostics=[Diagnostic.of(code, str(exc))])


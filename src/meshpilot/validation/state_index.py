"""The stored state indexed by reference, so that a change is judged on its neighbourhood.

Judging the cross-object rules over every stored object on each apply made an apply's
cost grow with the store (issue 18: 2 ms at one object, 92 ms at 10,000). The findings
about an object depend only on the objects that provide what it reads or read what it
provides (``state_refs``), so an apply judges its changed objects against those alone,
and a delete judges only the objects that referred to what it deletes. Both give exactly
the findings the whole-state judgement gives (tests/unit/test_validation_incremental.py
compares them on random stores and changes); ``meshpilot analyze`` and ``describe``
still judge the whole state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.validation.codes import Severity
from meshpilot.validation.diagnostics import Diagnostic
from meshpilot.validation.state import judge
from meshpilot.validation.state_object import StateObject
from meshpilot.validation.state_refs import Ref, Refs, references

_NONE: frozenset[ObjectKey] = frozenset()


class StateIndex:
    """Every stored object, and for each reference the objects that provide or read it.

    Kept current change by change (``put``/``remove``, as the store mirror applies the
    store's watch events); the control plane reads and changes it only under the store's
    write lock, as it does the mirror."""

    def __init__(self) -> None:
        self._objects: dict[ObjectKey, StateObject] = {}
        self._refs: dict[ObjectKey, Refs] = {}
        self._providers: dict[Ref, set[ObjectKey]] = {}
        self._readers: dict[Ref, set[ObjectKey]] = {}
        # one tuple per distinct reference, shared by the objects and the tables (at
        # 10,000 objects, per-object copies took most of the index's memory)
        self._canonical: dict[Ref, Ref] = {}

    @classmethod
    def of(cls, objects: Iterable[StateObject]) -> StateIndex:
        index = cls()
        for obj in objects:
            index.put(obj.key, obj.body)
        return index

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def get(self, key: ObjectKey) -> StateObject | None:
        return self._objects.get(key)

    def refs(self, key: ObjectKey) -> Refs:
        return self._refs[key]

    def providers(self, ref: Ref) -> set[ObjectKey] | frozenset[ObjectKey]:
        return self._providers.get(ref, _NONE)

    def readers(self, ref: Ref) -> set[ObjectKey] | frozenset[ObjectKey]:
        return self._readers.get(ref, _NONE)

    def put(self, key: ObjectKey, body: dict[str, Any]) -> None:
        """``key`` is now ``body`` (the body is shared with the mirror: read only)."""
        self.remove(key)
        obj = StateObject(key, body)
        found = references(obj)
        refs = Refs(self._shared(found.provides), self._shared(found.reads))
        self._objects[key] = obj
        self._refs[key] = refs
        for ref in refs.provides:
            self._providers.setdefault(ref, set()).add(key)
        for ref in refs.reads:
            self._readers.setdefault(ref, set()).add(key)

    def remove(self, key: ObjectKey) -> None:
        refs = self._refs.pop(key, None)
        if refs is None:
            return
        del self._objects[key]
        for table, side in ((self._providers, refs.provides), (self._readers, refs.reads)):
            for ref in side:
                keys = table[ref]
                keys.discard(key)
                if not keys:
                    del table[ref]
                    if ref not in self._providers and ref not in self._readers:
                        del self._canonical[ref]

    def _shared(self, refs: tuple[Ref, ...]) -> tuple[Ref, ...]:
        return tuple(self._canonical.setdefault(ref, ref) for ref in refs)


class StateView:
    """The state after a change: the index, with ``changes`` put (or removed, for None)."""

    def __init__(self, index: StateIndex,
                 changes: Mapping[ObjectKey, StateObject | None]) -> None:
        self.index = index
        self.changes = changes
        self._refs = {key: references(obj) for key, obj in changes.items() if obj is not None}
        self._providers: dict[Ref, set[ObjectKey]] = {}
        self._readers: dict[Ref, set[ObjectKey]] = {}
        for key, refs in self._refs.items():
            for ref in refs.provides:
                self._providers.setdefault(ref, set()).add(key)
            for ref in refs.reads:
                self._readers.setdefault(ref, set()).add(key)

    def get(self, key: ObjectKey) -> StateObject | None:
        if key in self.changes:
            return self.changes[key]
        return self.index.get(key)

    def neighbours(self, key: ObjectKey) -> set[ObjectKey]:
        """The objects that provide what ``key`` reads or read what it provides."""
        refs = self._refs.get(key) or self.index.refs(key)
        found: set[ObjectKey] = set()
        for ref in refs.reads:
            found |= self._who(ref, self.index.providers(ref), self._providers)
        for ref in refs.provides:
            found |= self._who(ref, self.index.readers(ref), self._readers)
        found.discard(key)
        return found

    def _who(self, ref: Ref, stored: Iterable[ObjectKey],
             changed: Mapping[Ref, set[ObjectKey]]) -> set[ObjectKey]:
        keys = {key for key in stored if key not in self.changes}
        keys |= changed.get(ref, _NONE)
        return keys

    def around(self, keys: Iterable[ObjectKey], new: Sequence[ObjectKey] = ()) -> list[StateObject]:
        """``keys`` and their neighbours, in the order of the whole state: stored objects
        by key, then ``new`` (objects the change creates) in the change's order."""
        wanted = set(keys)
        for key in list(wanted):
            wanted |= self.neighbours(key)
        created = set(new)
        ordered = [self.get(key) for key in sorted(wanted - created)]
        ordered += [self.get(key) for key in new if key in wanted]
        return [obj for obj in ordered if obj is not None]


def judge_change(index: StateIndex, changed: Sequence[StateObject]) -> list[Diagnostic]:
    """What ``check_state`` reports for the stored state with ``changed`` put on it."""
    view = StateView(index, {obj.key: obj for obj in changed})
    new = [obj.key for obj in changed if obj.key not in index]
    return judge(view.around(view.changes, new), lambda obj: obj.changed)


def findings_about(index: StateIndex, key: ObjectKey) -> list[Diagnostic]:
    """What ``check_state`` over every stored object reports about ``key``."""
    if key not in index:
        return []
    return _about(StateView(index, {}), {key})


def _about(view: StateView, keys: set[ObjectKey]) -> list[Diagnostic]:
    """The findings about ``keys`` when every object is judged (``all_objects``): every
    object around them is judged too, as where a finding is reported may depend on
    whether another object is (a Gateway's unusable Secret is said on the Gateway), and
    only theirs are kept."""
    about = {str(key) for key in keys}
    return [d for d in judge(view.around(keys), lambda obj: True) if d.object in about]


def newly_broken(index: StateIndex, deleted: Iterable[ObjectKey]) -> list[Diagnostic]:
    """Findings that deleting ``deleted`` from the stored state causes in the objects
    that remain, as warnings (a delete is not refused for them, as Kubernetes would not
    refuse it; the user is told). Only the objects around a deleted one can gain one."""
    gone = {key: None for key in deleted if key in index}
    before = StateView(index, {})
    affected: set[ObjectKey] = set()
    for key in gone:
        affected |= before.neighbours(key)
    affected -= gone.keys()
    if not affected:
        return []
    old = {(d.code, d.object, d.path) for d in _about(before, affected)}
    return [replace(d, severity=Severity.WARNING)
            for d in _about(StateView(index, gone), affected)
            if (d.code, d.object, d.path) not in old]

"""The push plan: make-before-break phases from what a proxy has to what it should have.

:func:`plan_update` walks :data:`~meshpilot.xds.sequence.PUSH_SEQUENCE`: each staging
phase stages the types the table puts in it (a type that keeps stale names is staged as
old + new, so nothing still pointed at goes away), and waits for the proxy to ACK the new
or changed resources it will actually ask for; **break** then stages every type as it
should finally be. Nothing here does I/O or locking, so every decision about *what* to
send, and in which order, is unit-tested without a proxy.

:class:`PushPlanner` is what the xDS server's streams share: the plans, pushes and set
differences a class of proxies would otherwise each work out again.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from meshpilot.xds.consistency import READINGS, named_in, referenced_names
from meshpilot.xds.holdings import Differ, Holding, Push, Subscription, compute_push
from meshpilot.xds.memo import MISSING, IdentityMemo
from meshpilot.xds.resources import (
    EMPTY_SET,
    Changes,
    ResourceSet,
    SetDiffs,
    SharedSet,
    diff,
    set_digest,
    versions_of,
)
from meshpilot.xds.sequence import (
    ORDER,
    OTHER_TYPE,
    PHASES,
    PUSH_SEQUENCE,
    RULES,
    TypeRule,
    sorted_types,
)

Config = Mapping[str, ResourceSet]
_KNOWN = frozenset(ORDER)


@dataclass(frozen=True)
class Phase:
    """One step of an update: stage these sets, then wait for these ACKs.

    ``stage``: type -> the complete set the proxy should now be given for that type.
    ``resend``: names to send again even if the proxy has them at the same version.
    ``expect``: type -> name -> version that must be ACKed before the next phase; every
    type in ``stage`` is listed (possibly with no names: "its responses are answered").
    """

    name: str
    stage: dict[str, ResourceSet]
    resend: dict[str, frozenset[str]]
    expect: dict[str, Mapping[str, str]]

    @cached_property
    def stage_order(self) -> tuple[str, ...]:
        """The staged types in push order."""
        return tuple(sorted_types(self.stage))

    @cached_property
    def staging(self) -> tuple[tuple[str, ResourceSet, str, frozenset[str]], ...]:
        """(type, set, its digest, names to resend) in push order: worked out once for
        every proxy that follows this plan."""
        return tuple((t, self.stage[t], set_digest(self.stage[t]),
                      self.resend.get(t) or frozenset()) for t in self.stage_order)

    @cached_property
    def expect_order(self) -> tuple[str, ...]:
        """The expected types in push order."""
        return tuple(sorted_types(self.expect))


def plan_update(current: Config, target: Config, changes: Differ = diff) -> list[Phase]:
    """Make-before-break phases from the staged ``current`` sets to ``target``.

    A type absent from ``current`` was never staged (a new stream): it is staged in its
    phase, even when empty where the sequence says so, so the proxy's first request for
    it gets an answer. Runs once per proxy per change (or once per class, through
    :class:`PushPlanner`), and looks only at the sets that changed.
    """
    return _Planning(current, target, changes).phases()


class _Planning:
    """One plan being made: the sets staged so far, and what changed per type."""

    def __init__(self, current: Config, target: Config, changes: Differ) -> None:
        self.staged: dict[str, ResourceSet] = dict(current)  # sets are never mutated
        self.target = target
        self.changes = changes
        self.changed: dict[str, frozenset[str]] = {}
        self.others = [t for t in target if t not in RULES]
        self.others += [t for t in current if t not in RULES and t not in target]

    def phases(self) -> list[Phase]:
        out = []
        for name in PHASES:
            rules = [r for r in PUSH_SEQUENCE if r.phase == name]
            rules += [replace(OTHER_TYPE, type_url=t) for t in self.others
                      if OTHER_TYPE.phase == name]
            phase = self._staging(name, rules)
            if phase is not None:
                out.append(phase)
                self.staged.update(phase.stage)
        final = {t: self.target.get(t, EMPTY_SET) for t in (*ORDER, *self.others)
                 if (t in self.staged or t in self.target) and not self._same(t)}
        if final:
            out.append(Phase("break", final, {}, {t: {} for t in final}))
        return out

    def _staging(self, name: str, rules: Iterable[TypeRule]) -> Phase | None:
        stage: dict[str, ResourceSet] = {}
        expect: dict[str, Mapping[str, str]] = {}
        resend: dict[str, frozenset[str]] = {}
        for rule in rules:
            t = rule.type_url
            if t not in self.staged and t not in self.target and not rule.staged_empty:
                continue
            cur, new = self.staged.get(t, EMPTY_SET), self.target.get(t, EMPTY_SET)
            changed, removed = self.changes(cur, new)
            self.changed[t] = changed
            if rule.keeps_stale:
                if t not in self.staged or changed:
                    stage[t] = _merged(cur, new, removed)
            elif not self._same(t):
                stage[t] = new
            again = self._resent(rule, new, changed)
            if again:
                resend[t] = again
                stage.setdefault(t, dict(self.staged[t]))
            if t in stage:
                expect[t] = self._expected(rule, new, changed | again)
        return Phase(name, stage, resend, expect) if stage else None

    def _same(self, t: str) -> bool:
        """The staged set of ``t`` already is the target one."""
        if t not in self.staged:
            return False
        cur, new = self.staged[t], self.target.get(t, EMPTY_SET)
        if cur is new:
            return True
        if len(cur) != len(new):
            return False
        changed, removed = self.changes(cur, new)
        return not changed and not removed

    def _resent(self, rule: TypeRule, new: ResourceSet, changed: frozenset[str]
                ) -> frozenset[str]:
        """Names of ``rule``'s type whose referrer changed (sent again, though the same)."""
        referrer = rule.resent_with
        moved = self.changed.get(referrer) if referrer else None
        if not moved or rule.type_url not in self.staged:
            return frozenset()
        reader = dict(rule.named_by)[referrer]  # type: ignore[index]
        referrers = self.target.get(referrer, EMPTY_SET)  # type: ignore[arg-type]
        return frozenset(n for c in moved for n in reader(referrers[c].message)
                         if n in new and n not in changed)

    def _expected(self, rule: TypeRule, new: ResourceSet, names: frozenset[str]
                  ) -> Mapping[str, str]:
        if names and rule.named_by:  # the proxy asks only for what something names
            names &= referenced_names(self.target, rule.type_url)
        return _versions(new, names)


def _merged(cur: ResourceSet, new: ResourceSet, removed: frozenset[str]) -> ResourceSet:
    """``{**cur, **new}``; ``new`` itself when ``cur`` has no name ``new`` lacks (sets are
    never mutated, so a shared set can be staged as it is)."""
    if cur is new or not removed:
        return new
    return {**cur, **new}


def _versions(resource_set: ResourceSet, names: frozenset[str]) -> Mapping[str, str]:
    """name -> version in the set of ``names`` (a subset of its names). All of them, as
    in a first sync, is the set's own map, built once per shared set. Read only."""
    if len(names) == len(resource_set):
        return versions_of(resource_set)
    return {n: resource_set[n].version for n in names}


# --- shared by the streams of one server ----------------------------------------------


class PushPlanner:
    """The plans, pushes and set differences of one xDS server, each worked out once for
    every proxy that makes the same move (and subscriptions interned, so equal ones are
    one object). The server owns one and hands it to each of its streams."""

    def __init__(self) -> None:
        self.diffs = SetDiffs(1024)
        self._plans = IdentityMemo(256)
        self._pushes = IdentityMemo(256)
        self._subscriptions: weakref.WeakValueDictionary[
            tuple[bool, frozenset[str]], Subscription] = weakref.WeakValueDictionary()

    def subscription(self, wildcard: bool = False, names: Iterable[str] = ()) -> Subscription:
        """The one object for this subscription on this server."""
        frozen = names if isinstance(names, frozenset) else frozenset(names)
        key = (wildcard, frozen)
        found = self._subscriptions.get(key)
        if found is None:
            found = self._subscriptions[key] = Subscription(wildcard, frozen)
        return found

    def plan(self, current: Config, target: Config) -> list[Phase]:
        """:func:`plan_update`, once for all the proxies of a class making the same move.
        The phases are shared: never mutate them."""
        found = _plan_key(current, target)
        if found is None:
            return plan_update(current, target, self.diffs)
        key, keep = found
        if not key:
            return []
        hit = self._plans.last(key)
        if hit is not MISSING:
            return hit  # type: ignore[no-any-return]
        return self._plans.get(  # type: ignore[no-any-return]
            key, keep, lambda: plan_update(current, target, self.diffs))

    def push(self, type_url: str, delta: bool, staged: ResourceSet,
             subscription: Subscription, held: Holding, *, force: bool = False,
             ) -> tuple[Push | None, Holding]:
        """:func:`~meshpilot.xds.holdings.compute_push`, once for every proxy that makes
        the same move from a shared set."""
        if held.overrides or not held.base:
            return compute_push(type_url, delta, staged, subscription, held, force=force,
                                changes=self.diffs)
        key = (type_url, delta, force, id(staged), id(subscription), id(held.base),
               id(held.subscription))
        hit = self._pushes.last(key)
        if hit is not MISSING:
            return hit  # type: ignore[no-any-return]
        keep = (staged, subscription, held.base, held.subscription)
        return self._pushes.get(  # type: ignore[no-any-return]
            key, keep, lambda: compute_push(type_url, delta, staged, subscription, held,
                                            force=force, changes=self.diffs))

    def changes(self, old: ResourceSet, new: ResourceSet) -> Changes:
        return self.diffs(old, new)


def _plan_key(current: Config, target: Config) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """What a plan depends on, when every set that changes is one a whole class of
    proxies shares (then every proxy of the class making this move gets the same plan);
    None otherwise. Unchanged sets of a proxy's own matter only through the names they
    give (which decide what is waited for)."""
    key: list[Any] = []
    keep: list[Any] = []
    moved = False
    types: Iterable[str] = ORDER if target.keys() == _KNOWN and current.keys() == _KNOWN \
        else dict.fromkeys((*ORDER, *target, *current))
    for t in types:
        cur, new = current.get(t), target.get(t)
        if cur is new:
            if cur is None:
                continue  # neither has the type
            if type(new) is SharedSet:  # shared and unchanged: its content is its id
                key.append((t, id(new)))
                keep.append(new)
            continue
        if type(new) is not SharedSet or (cur is not None and type(cur) is not SharedSet):
            return None  # a proxy's own sets change, or a first sync: plan for it alone
        key.append((t, id(cur), id(new)))
        keep += (cur, new)
        moved = True
    if not moved:
        return (), ()  # nothing changed
    for type_url, readings in READINGS:
        if current.get(type_url) is target.get(type_url):
            continue  # not staged: what names it does not matter to this plan
        for r in readings:  # values: equal across a class's proxies
            key.append(named_in(target.get(r.referrer, EMPTY_SET), r.named, r.reader))
    return tuple(key), tuple(keep)


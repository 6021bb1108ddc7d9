"""What a proxy asked for and what it holds, per type, and the next response from both.

Both are immutable values, so a stream keeps them by reference and a thousand streams in
the same state share them:

- :class:`Subscription`: a wildcard or a set of names (the xDS server interns them, so
  the 3,000 EDS names every sidecar of a mesh asks for are held once).
- :class:`Holding`: name -> version the proxy has been given (or has ACKed), written as
  "the part of this resource set my subscription sees", plus ``overrides`` for the few
  names that differ. After a push the proxy has exactly what was staged, so what it
  holds is a reference to the staged set, whatever its size.

:func:`compute_push` works out a response from the names that can differ (the diff of
the sets, the overridden names, the subscription's change): O(change), not O(config).
:func:`sotw_push` and :func:`delta_push` are the same rules over plain mappings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from meshpilot.xds.resources import (
    EMPTY_SET,
    Changes,
    PreparedResource,
    ResourceSet,
    derived,
    diff,
)
from meshpilot.xds.types import FULL_STATE_TYPES

WILDCARD = "*"
LOGGED_NAMES = 64
"""A sent-log record keeps at most this many resource names (and the total count)."""

Differ = Callable[[ResourceSet, ResourceSet], Changes]
"""(old set, new set) -> their changes: :func:`~meshpilot.xds.resources.diff`, or the
xDS server's :class:`~meshpilot.xds.resources.SetDiffs` that remembers them."""


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Subscription:
    """What a proxy asked for, for one type: everything (wildcard) or these names."""

    wildcard: bool = False
    names: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not isinstance(self.names, frozenset):
            object.__setattr__(self, "names", frozenset(self.names))

    @classmethod
    def of(cls, wildcard: bool = False, names: Iterable[str] = ()) -> Subscription:
        return cls(wildcard, names if isinstance(names, frozenset) else frozenset(names))

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def visible(self, resource_set: ResourceSet) -> dict[str, PreparedResource]:
        if self.wildcard:
            return dict(resource_set)
        if len(self.names) < len(resource_set):
            return {n: e for n in self.names if (e := resource_set.get(n)) is not None}
        return {n: e for n, e in resource_set.items() if n in self.names}

    def changed_names(self, other: Subscription) -> frozenset[str] | None:
        """Names whose "wanted" differs between the two; None when either is a wildcard
        and the other is not (then every name may differ)."""
        if self is other:
            return frozenset()
        if self.wildcard != other.wildcard:
            return None
        if self.wildcard:
            return frozenset()
        return self.names ^ other.names


NOTHING = Subscription()
_ABSENT = ""  # an override meaning "the proxy does not have this name"
_NO_OVERRIDES: Mapping[str, str] = MappingProxyType({})


def _visible_count(subscription: Subscription, resource_set: ResourceSet) -> int:
    return len(subscription.visible(resource_set))


@dataclass(frozen=True, slots=True, eq=False)
class Holding(Mapping[str, str]):
    """name -> version a proxy holds of one type: the part of ``base`` that
    ``subscription`` sees, with ``overrides`` for single names (``""``: not held)."""

    base: ResourceSet = field(default_factory=lambda: EMPTY_SET)
    subscription: Subscription = NOTHING
    overrides: Mapping[str, str] = field(default_factory=lambda: _NO_OVERRIDES)

    @classmethod
    def of(cls, versions: Mapping[str, str]) -> Holding:
        """A plain name -> version map (what a reconnecting proxy says it has)."""
        return cls(overrides={n: v for n, v in versions.items() if v != _ABSENT})

    def get(self, name: str, default: Any = None) -> Any:
        v = self.overrides.get(name)
        if v is not None:
            return v if v != _ABSENT else default
        if self.subscription.wants(name):
            e = self.base.get(name)
            if e is not None:
                return e.version
        return default

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        overrides = self.overrides
        for n in overrides:
            if overrides[n] != _ABSENT:
                yield n
        if self.subscription.wildcard:
            yield from (n for n in self.base if n not in overrides)
        else:
            base = self.base
            yield from (n for n in self.subscription.names if n in base and n not in overrides)

    def __len__(self) -> int:
        """Proportional to the overrides: how much of the base the subscription sees is
        counted once per (set, subscription), not once per proxy (``status()`` asks it of
        every proxy and type)."""
        base, subscription = self.base, self.subscription
        count: int = derived(("seen", subscription), base, _visible_count, subscription, base)
        for n, v in self.overrides.items():
            count += (v != _ABSENT) - (n in base and subscription.wants(n))
        return count

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Holding) and other.base is self.base \
                and other.subscription is self.subscription and other.overrides == self.overrides:
            return True
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def is_exactly(self, base: ResourceSet, subscription: Subscription) -> bool:
        """Exactly what ``subscription`` sees of ``base``: nothing to compare by name."""
        return self.base is base and self.subscription is subscription and not self.overrides

    def candidates(self, target: ResourceSet, subscription: Subscription,
                   changes: Differ = diff) -> Iterable[str] | None:
        """Names whose version may differ between this and what ``subscription`` sees of
        ``target``; None when that takes a look at every name."""
        if not self.base and not self.overrides:
            return None  # holds nothing (a first sync): every name is a candidate
        sub_changes = self.subscription.changed_names(subscription)
        if sub_changes is None:
            return None
        changed, removed = changes(self.base, target)
        if not sub_changes and not self.overrides:
            return changed | removed if removed else changed
        return changed | removed | sub_changes | self.overrides.keys()

    def differs(self, target: ResourceSet, subscription: Subscription,
                changes: Differ = diff) -> Iterator[str]:
        """Names ``subscription`` wants whose version here is not the one in ``target``
        (missing ones included): what is still to be given, or to be ACKed."""
        if self.is_exactly(target, subscription):
            return iter(())
        names = self.candidates(target, subscription, changes)
        if names is None:
            names = subscription.visible(target)
        return (n for n in names if subscription.wants(n) and (e := target.get(n)) is not None
                and self.get(n) != e.version)

    def with_versions(self, updates: Mapping[str, str]) -> Holding:
        """A copy with these names at these versions (``""``: not held)."""
        if not updates:
            return self
        return Holding(self.base, self.subscription, {**self.overrides, **updates})


@dataclass(frozen=True, eq=False)
class Push:
    """The content of one response: resources to (re)send and names to remove. Shared by
    every proxy making the same move (the xDS server remembers it): never mutate it."""

    resources: Mapping[str, PreparedResource]
    removed: tuple[str, ...] = ()
    full_state: bool = False  # SotW CDS/LDS: ``resources`` is the proxy's whole set
    entire_set: bool = False  # ``resources`` is a whole staged (immutable) set
    encoded: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    """API -> (version, the response's encoded fields but the nonce), made once for all
    the proxies that get this push at that version."""

    def names(self) -> tuple[str, ...]:
        return tuple(self.resources)

    @cached_property
    def logged(self) -> tuple[str, ...]:
        """The names a sent-log record keeps: at most :data:`LOGGED_NAMES`."""
        return tuple(itertools.islice(self.resources, LOGGED_NAMES))


def compute_push(
    type_url: str, delta: bool, staged: ResourceSet, subscription: Subscription,
    held: Holding, *, force: bool = False, changes: Differ = diff,
) -> tuple[Push | None, Holding]:
    """The next response of one type and what the proxy then holds.

    Delta: changed subscribed resources plus ``removed_resources``. SotW Listener /
    Cluster / scoped routes: the full visible set whenever anything in it differs. Other
    SotW types (RDS, EDS): the changed subscribed resources only; Envoy keeps those a
    response does not mention, so a subscribed name that left the staged set stays held.
    ``force`` (an initial request) always answers Delta and SotW full-state types.
    """
    if held.is_exactly(staged, subscription) and not force:
        return None, held
    full_state = not delta and type_url in FULL_STATE_TYPES
    if _first_sync(staged, subscription, held):  # the whole set, as it is
        return Push(staged, (), full_state, entire_set=True), Holding(staged, subscription)
    upserts, removed = _moves(staged, subscription, held, changes)
    if not delta and not full_state:
        # SotW EDS/RDS: Envoy keeps what a response does not mention, so names that
        # left the staged set are still held; nothing is "removed".
        kept = {n: held[n] for n in removed}
        return (Push(upserts) if upserts else None), Holding(staged, subscription, kept or
                                                             _NO_OVERRIDES)
    after = Holding(staged, subscription)
    if not (upserts or removed or force):
        return None, after
    if full_state:
        return Push(dict(sorted(subscription.visible(staged).items())), (), True), after
    return Push(upserts, tuple(removed)), after


def _first_sync(staged: ResourceSet, subscription: Subscription, held: Holding) -> bool:
    """Holds nothing and wants all of the staged set."""
    return not held.base and not held.overrides and bool(staged) and (
        subscription.wildcard or subscription.names.issuperset(staged))


def _moves(staged: ResourceSet, subscription: Subscription, held: Holding, changes: Differ
           ) -> tuple[dict[str, PreparedResource], list[str]]:
    """(resources to send, names to remove), name by name over the names that can differ
    only."""
    names = held.candidates(staged, subscription, changes)
    if names is None:
        names = set(held) | set(subscription.visible(staged))
    upserts: dict[str, PreparedResource] = {}
    removed: list[str] = []
    for n in sorted(names):
        e = staged.get(n) if subscription.wants(n) else None
        had = held.get(n)
        if e is not None:
            if had != e.version:
                upserts[n] = e
        elif had is not None and subscription.wants(n):
            removed.append(n)  # SotW full state: a full set without it
    return upserts, removed


def _plain(held: Mapping[str, str]) -> Holding:
    return held if isinstance(held, Holding) else Holding.of(held)


def sotw_push(
    type_url: str, staged: ResourceSet, subscription: Subscription,
    held: Mapping[str, str], *, force: bool = False,
) -> Push | None:
    """Next SotW response for one type, or None when the proxy is up to date."""
    return compute_push(type_url, False, staged, subscription, _plain(held), force=force)[0]


def delta_push(
    type_url: str, staged: ResourceSet, subscription: Subscription,
    held: Mapping[str, str], *, force: bool = False,
) -> Push | None:
    """Next Delta response: changed subscribed resources plus ``removed_resources``.

    ``force`` answers an initial request even with nothing to send: a starting proxy
    that is to have no clusters or listeners completes initialisation, and a proxy that
    reconnects with everything already at the right versions (initial_resource_versions)
    still gets a nonce to ACK, so its status shows it in sync.
    """
    return compute_push(type_url, True, staged, subscription, _plain(held), force=force)[0]


def apply_push(held: dict[str, str], push: Push, subscription: Subscription) -> None:
    """Update a plain name -> version map after ``push`` is sent (what a proxy holds)."""
    if push.full_state:
        held.clear()
    for name, e in push.resources.items():
        held[name] = e.version
    for name in push.removed:
        held.pop(name, None)
    if not subscription.wildcard:
        for name in held.keys() - subscription.names:
            del held[name]

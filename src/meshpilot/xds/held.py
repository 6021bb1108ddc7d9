"""What a proxy asked for and what it holds, per type, and the next response from both.

Both are immutable values, so a stream keeps them by reference and a thousand streams in
the same state share them:

- :class:`Subscription`: a wildcard or a set of names; equal subscriptions are one object
  (:meth:`Subscription.of`), so the 3,000 EDS names every sidecar of a mesh asks for are
  held once.
- :class:`Have`: name -> version the proxy has been given (or has ACKed): "the part of
  this shared view my subscription sees", plus the few names that differ. After a push
  the proxy has exactly what was staged, so what it holds is a reference to the staged
  view, whatever its size.

:func:`next_push` works out a response from the names that can differ (the diff of the
views, the names overridden, the subscription's change): O(change), not O(config).
:func:`sotw_push` and :func:`delta_push` are the same rules over plain mappings.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from meshpilot.xds.types import FULL_STATE_TYPES
from meshpilot.xds.views import EMPTY, Entry, SharedMemo, fact, view_changes

WILDCARD = "*"
LOGGED_NAMES = 64
"""A sent-log record keeps at most this many resource names (and the total count)."""


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
        """The one shared object for this subscription."""
        frozen = names if isinstance(names, frozenset) else frozenset(names)
        key = (wildcard, frozen)
        found = _INTERNED.get(key)
        if found is None:
            found = cls(wildcard, frozen)
            _INTERNED[key] = found
        return found

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def visible(self, view: Mapping[str, Entry]) -> dict[str, Entry]:
        if self.wildcard:
            return dict(view)
        if len(self.names) < len(view):
            return {n: e for n in self.names if (e := view.get(n)) is not None}
        return {n: e for n, e in view.items() if n in self.names}

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


_INTERNED: weakref.WeakValueDictionary[tuple[bool, frozenset[str]], Subscription] = (
    weakref.WeakValueDictionary())
NOTHING = Subscription.of()
_ABSENT = ""  # an override meaning "the proxy does not have this name"
_NO_OVER: Mapping[str, str] = MappingProxyType({})


def _visible_count(subs: Subscription, view: Mapping[str, Entry]) -> int:
    return len(subs.visible(view))


@dataclass(frozen=True, slots=True, eq=False)
class Have(Mapping[str, str]):
    """name -> version a proxy holds of one type: the part of ``view`` that ``subs``
    sees, with ``over`` overriding single names (``""``: not held)."""

    view: Mapping[str, Entry] = field(default_factory=lambda: EMPTY)
    subs: Subscription = NOTHING
    over: Mapping[str, str] = field(default_factory=lambda: _NO_OVER)

    @classmethod
    def of(cls, versions: Mapping[str, str]) -> Have:
        """A plain name -> version map (what a reconnecting proxy says it has)."""
        return cls(over={n: v for n, v in versions.items() if v != _ABSENT})

    def get(self, name: str, default: Any = None) -> Any:
        v = self.over.get(name)
        if v is not None:
            return v if v != _ABSENT else default
        if self.subs.wants(name):
            e = self.view.get(name)
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
        over = self.over
        for n in over:
            if over[n] != _ABSENT:
                yield n
        if self.subs.wildcard:
            yield from (n for n in self.view if n not in over)
        else:
            view = self.view
            yield from (n for n in self.subs.names if n in view and n not in over)

    def __len__(self) -> int:
        """Proportional to the overrides: how much of the shared view the subscription
        sees is counted once per (view, subscription), not once per proxy (``status()``
        asks it of every proxy and type)."""
        view, subs, over = self.view, self.subs, self.over
        count: int = fact(("seen", subs), view, _visible_count, subs, view)
        for n, v in over.items():
            count += (v != _ABSENT) - (n in view and subs.wants(n))
        return count

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Have) and other.view is self.view and other.subs is self.subs \
                and other.over == self.over:
            return True
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def is_view(self, view: Mapping[str, Entry], subs: Subscription) -> bool:
        """Exactly what ``subs`` sees of ``view``: nothing to compare name by name."""
        return self.view is view and self.subs is subs and not self.over

    def candidates(self, view: Mapping[str, Entry], subs: Subscription) -> Iterable[str] | None:
        """Names whose version may differ between this and what ``subs`` sees of
        ``view``; None when that takes a look at every name."""
        if not self.view and not self.over:
            return None  # holds nothing (a first sync): every name is a candidate
        sub_changes = self.subs.changed_names(subs)
        if sub_changes is None:
            return None
        changed, removed = view_changes(self.view, view)
        if not sub_changes and not self.over:
            return changed | removed if removed else changed
        return changed | removed | sub_changes | self.over.keys()

    def differs(self, view: Mapping[str, Entry], subs: Subscription) -> Iterator[str]:
        """Names ``subs`` wants whose version here is not the one in ``view`` (missing
        ones included): what is still to be given, or to be ACKed."""
        if self.is_view(view, subs):
            return iter(())
        names = self.candidates(view, subs)
        if names is None:
            names = subs.visible(view)
        return (n for n in names if subs.wants(n) and (e := view.get(n)) is not None
                and self.get(n) != e.version)

    def with_versions(self, updates: Mapping[str, str]) -> Have:
        """A copy with these names at these versions (``""``: not held)."""
        if not updates:
            return self
        return Have(self.view, self.subs, {**self.over, **updates})


@dataclass(frozen=True, eq=False)
class Push:
    """The content of one response: resources to (re)send and names to remove. Shared by
    every proxy making the same move (:func:`next_push`): never mutate it."""

    resources: Mapping[str, Entry]
    removed: tuple[str, ...] = ()
    full_state: bool = False  # SotW CDS/LDS: ``resources`` is the proxy's whole set
    whole: bool = False  # ``resources`` is a whole (shared) staged view
    wire: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    """API -> (version, the response's encoded fields but the nonce), made once for all
    the proxies that get this push at that version."""

    def names(self) -> tuple[str, ...]:
        return tuple(self.resources)

    @cached_property
    def logged(self) -> tuple[str, ...]:
        """The names a sent-log record keeps: at most :data:`LOGGED_NAMES`."""
        return tuple(itertools.islice(self.resources, LOGGED_NAMES))


_PUSHES = SharedMemo(256)
"""Pushes shared by the proxies that make the same move from a shared view."""


def next_push(
    type_url: str, delta: bool, staged: Mapping[str, Entry], subs: Subscription,
    sent: Have, *, force: bool = False,
) -> tuple[Push | None, Have]:
    """The next response of one type and what the proxy then holds (see
    :func:`_next_push`); computed once for every proxy that makes the same move from a
    shared view."""
    if sent.over or not sent.view:
        return _next_push(type_url, delta, staged, subs, sent, force=force)
    key = (type_url, delta, force, id(staged), id(subs), id(sent.view), id(sent.subs))
    return _PUSHES.get(key, (staged, subs, sent.view, sent.subs),  # type: ignore[no-any-return]
                       lambda: _next_push(type_url, delta, staged, subs, sent, force=force))


def _next_push(
    type_url: str, delta: bool, staged: Mapping[str, Entry], subs: Subscription,
    sent: Have, *, force: bool = False,
) -> tuple[Push | None, Have]:
    """The next response of one type and what the proxy then holds.

    Delta: changed subscribed resources plus ``removed_resources``. SotW Listener /
    Cluster / scoped routes: the full visible set whenever anything in it differs. Other
    SotW types (RDS, EDS): the changed subscribed resources only; Envoy keeps those a
    response does not mention, so a subscribed name that left the staged view stays held.
    ``force`` (an initial request) always answers Delta and SotW full-state types.
    """
    full_state = not delta and type_url in FULL_STATE_TYPES
    if sent.is_view(staged, subs) and not force:
        return None, sent
    if not sent.view and not sent.over and staged and (
            subs.wildcard or subs.names.issuperset(staged)):
        # holds nothing and wants all of it (a first sync): the whole view, as it is
        return Push(staged, (), full_state, whole=True), Have(staged, subs)
    names = sent.candidates(staged, subs)
    if names is None:
        names = set(sent) | set(subs.visible(staged))
    upserts: dict[str, Entry] = {}
    removed: list[str] = []
    kept: dict[str, str] = {}
    for n in sorted(names):
        e = staged.get(n) if subs.wants(n) else None
        had = sent.get(n)
        if e is not None:
            if had != e.version:
                upserts[n] = e
        elif had is not None and subs.wants(n):
            removed.append(n)  # SotW full state: a full set without it
    if not delta and not full_state:
        # SotW EDS/RDS: Envoy keeps what a response does not mention, so names that
        # left the staged view are still held; nothing is "removed".
        kept = {n: sent[n] for n in removed}
        removed = []
    after = Have(staged, subs, kept or _NO_OVER)
    if full_state:
        if upserts or removed or force:
            return Push(dict(sorted(subs.visible(staged).items())), (), True), after
        return None, after
    if upserts or removed or (force and delta):
        return Push(upserts, tuple(removed)), after
    return None, after


def _plain(sent: Mapping[str, str]) -> Have:
    return sent if isinstance(sent, Have) else Have.of(sent)


def sotw_push(
    type_url: str, staged: Mapping[str, Entry], subs: Subscription,
    sent: Mapping[str, str], *, force: bool = False,
) -> Push | None:
    """Next SotW response for one type, or None when the proxy is up to date."""
    return next_push(type_url, False, staged, subs, _plain(sent), force=force)[0]


def delta_push(
    type_url: str, staged: Mapping[str, Entry], subs: Subscription,
    sent: Mapping[str, str], *, force: bool = False,
) -> Push | None:
    """Next Delta response: changed subscribed resources plus ``removed_resources``.

    ``force`` answers an initial request even with nothing to send: a starting proxy
    that is to have no clusters or listeners completes initialisation, and a proxy that
    reconnects with everything already at the right versions (initial_resource_versions)
    still gets a nonce to ACK, so its status shows it in sync.
    """
    return next_push(type_url, True, staged, subs, _plain(sent), force=force)[0]


def apply_push(sent: dict[str, str], push: Push, subs: Subscription) -> None:
    """Update a plain name -> version map after ``push`` is sent (what a proxy holds)."""
    if push.full_state:
        sent.clear()
    for name, e in push.resources.items():
        sent[name] = e.version
    for name in push.removed:
        sent.pop(name, None)
    if not subs.wildcard:
        for name in sent.keys() - subs.names:
            del sent[name]

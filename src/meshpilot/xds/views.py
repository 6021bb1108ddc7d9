"""Resources ready to send, and the immutable views that group them per type.

A proxy's config for one type is a *view*: name -> :class:`Entry`. Views built by
:mod:`meshpilot.xds.shared` are :class:`EntryView` s, shared by every proxy of a class,
or :class:`LayeredView` s (a shared view with the few resources only one proxy has on
top), so a thousand proxies hold one copy of their common config, not a thousand.

Facts about views (their diff, digest, references) are computed once per pair or view
and remembered (:func:`memo`), whichever proxy's stream asks: that is what makes the work
of a change proportional to the change rather than to (proxies x config).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

_TYPE_PREFIX = "type.googleapis.com/"


def resource_version(message: Message) -> str:
    """A stable per-resource version: equal bytes, equal version."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:16]


@dataclass(frozen=True)
class Entry:
    """One resource ready to send: its name, version and the packed ``Any``.

    Its wire forms (as an element of a SotW or a Delta response's ``resources``) are
    encoded once, on first use, so a response to a thousand proxies is a concatenation
    of bytes, not a thousand protobuf builds.
    """

    name: str
    version: str
    message: Message = field(compare=False, repr=False)
    packed: any_pb2.Any = field(compare=False, repr=False)

    @classmethod
    def of(cls, name: str, message: Message) -> Entry:
        """Serialise once: the same bytes give the version and the packed ``Any``."""
        data = message.SerializeToString(deterministic=True)
        packed = any_pb2.Any(type_url=_TYPE_PREFIX + message.DESCRIPTOR.full_name, value=data)
        return cls(name, hashlib.sha256(data).hexdigest()[:16], message, packed)

    @cached_property
    def sotw_wire(self) -> bytes:
        """``DiscoveryResponse.resources`` holding this resource, encoded."""
        return discovery_pb2.DiscoveryResponse(resources=[self.packed]).SerializeToString()

    @cached_property
    def delta_wire(self) -> bytes:
        """``DeltaDiscoveryResponse.resources`` holding this resource, encoded."""
        return discovery_pb2.DeltaDiscoveryResponse(resources=[discovery_pb2.Resource(
            name=self.name, version=self.version, resource=self.packed)]).SerializeToString()


View = Mapping[str, Entry]
"""name -> Entry for one type."""


class EntryView(dict):  # type: ignore[type-arg]
    """A prebuilt, immutable name -> Entry view (possibly shared by many proxies).

    :func:`to_entries` passes it through as it is, so a stream's staged view can be the
    very object other streams hold, and per-view facts (digest, references, diffs) are
    computed once per view instead of once per proxy. Never mutate one.
    """

    __slots__ = ("facts",)


class OwnView(EntryView):
    """An EntryView of resources only one proxy has (its listeners, its inbound
    clusters): immutable like any view, but not shared by a class of proxies."""

    __slots__ = ()


EMPTY = EntryView()
_SHARED_TYPES: frozenset[type] = frozenset()  # set below, once both view types exist


class LayeredView(Mapping[str, Entry]):
    """``top`` over ``base``: a proxy's own few resources over its class's shared view.

    Holds references only, so a proxy whose inbound cluster joins 3,000 shared outbound
    clusters costs two pointers, not a 3,000-entry copy. Immutable, like its layers.
    """

    __slots__ = ("_len", "base", "facts", "top")

    def __init__(self, base: EntryView, top: OwnView) -> None:
        self.base = base
        self.top = top
        self.facts: dict[str, Any] = {}
        self._len = len(base) + sum(1 for n in top if n not in base)

    def __getitem__(self, name: str) -> Entry:
        e = self.top.get(name)
        return e if e is not None else self.base[name]

    def get(self, name: str, default: Any = None) -> Any:
        e = self.top.get(name)
        if e is not None:
            return e
        return self.base.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self.top or name in self.base

    def __iter__(self) -> Iterator[str]:
        yield from self.top
        top = self.top
        yield from (n for n in self.base if n not in top)

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"LayeredView(base={len(self.base)}, top={list(self.top)})"


_SHARED_TYPES = frozenset({EntryView, OwnView, LayeredView})


def is_shared(view: object) -> bool:
    """Immutable by contract, so facts about it may be remembered."""
    return type(view) in _SHARED_TYPES


def to_entries(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, View]:
    """Messages → Entries; a prebuilt view (EntryView, LayeredView) is taken as it is."""
    return {
        type_url: by_name if is_shared(by_name)
        else {name: Entry.of(name, msg) for name, msg in by_name.items()}
        for type_url, by_name in resources.items()
    }


def versions(view: Mapping[str, Entry]) -> dict[str, str]:
    return {name: e.version for name, e in view.items()}


def names_of(view: Mapping[str, Entry]) -> frozenset[str]:
    """The view's names: once per shared view; a layered one joins its layers' sets (not
    kept: a proxy's own view would keep a set of thousands per proxy)."""
    if type(view) is LayeredView:
        return names_of(view.base) | names_of(view.top)
    return fact("names", view, lambda: frozenset(view))  # type: ignore[no-any-return]


def versions_of(view: Mapping[str, Entry]) -> dict[str, str]:
    """name -> version of the whole view: once per shared view (never mutate it); a
    layered one merges its layers' maps (not kept, as in :func:`names_of`)."""
    if type(view) is LayeredView:
        return {**versions_of(view.base), **versions_of(view.top)}
    return fact("versions", view, lambda: versions(view))  # type: ignore[no-any-return]


# --- remembered facts -----------------------------------------------------------------


def fact(kind: Hashable, view: Mapping[str, Entry], compute: Callable[..., Any],
         *args: Any) -> Any:
    """``compute(*args)`` once per (kind, view) for a shared view, kept on the view itself
    (so it lives exactly as long as the view, however many proxies hold it). Pass a
    module-level ``compute`` and its ``args`` on hot paths: a known fact then costs no
    closure."""
    if type(view) not in _SHARED_TYPES:
        return compute(*args)
    try:
        facts = view.facts  # type: ignore[attr-defined]
    except AttributeError:
        facts = view.facts = {}  # type: ignore[attr-defined]
    try:
        return facts[kind]
    except KeyError:
        value = facts[kind] = compute(*args)
        return value


class SharedMemo:
    """Values computed once for many streams, keyed by the ids of the immutable objects
    they depend on. Each entry holds those objects (``keep``), so an id cannot be reused
    by another object while its entry lives. Bounded (least recently used out), with the
    last hit first: the streams of a class ask the same key a thousand times in a row."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = OrderedDict()
        self._lock = threading.Lock()  # streams of several loops (tests) may share one
        self._last: tuple[tuple[Any, ...], Any, tuple[Any, ...]] | None = None

    def get(self, key: tuple[Any, ...], keep: tuple[Any, ...],
            compute: Callable[[], Any]) -> Any:
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self._last = (key, hit[1], hit[0])
                return hit[1]
        value = compute()
        self._last = (key, value, keep)
        with self._lock:
            self._items[key] = (keep, value)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_PAIRS = SharedMemo(1024)
"""Facts about pairs of shared views (their diff): a class's view before and after a
change, a few per change."""


def _digest(view: Mapping[str, Entry]) -> str:
    h = hashlib.sha256()
    for name in sorted(view):
        h.update(name.encode())
        h.update(b"\0")
        h.update(view[name].version.encode())
        h.update(b"\n")
    return h.hexdigest()[:8]


def view_digest(view: Mapping[str, Entry]) -> str:
    """A short digest of a whole view (used in version_info: the type's version)."""
    if isinstance(view, LayeredView):
        def layered() -> str:
            h = hashlib.sha256(f"{view_digest(view.base)}/{view_digest(view.top)}".encode())
            return h.hexdigest()[:8]
        return fact("digest", view, layered)
    return fact("digest", view, lambda: _digest(view))


Changes = tuple[frozenset[str], frozenset[str]]
NO_CHANGES: Changes = (frozenset(), frozenset())


def _diff(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> Changes:
    if not old:  # a first sync: everything is new
        return names_of(new), frozenset()
    changed = frozenset(
        n for n, e in new.items()
        if (c := old.get(n)) is None or (c is not e and c.version != e.version))
    return changed, frozenset(old.keys() - new.keys())


def _layered_diff(old: LayeredView, new: LayeredView) -> Changes | None:
    """The diff from one layer's diff, when the other layer is the same object."""
    if old.top is new.top:
        changed, removed = view_changes(old.base, new.base)
        top = new.top
        return (frozenset(n for n in changed if n not in top),
                frozenset(n for n in removed if n not in top))
    if old.base is new.base:
        changed, removed = view_changes(old.top, new.top)
        base = new.base
        out_changed = set(changed)
        out_removed: set[str] = set()
        for n in removed:  # a name leaving the top shows the base's entry, if any
            below = base.get(n)
            if below is None:
                out_removed.add(n)
            elif below.version != old.top[n].version:
                out_changed.add(n)
        return frozenset(out_changed), frozenset(out_removed)
    return None


def view_changes(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> Changes:
    """(names added or changed, names removed) from ``old`` to ``new``; computed once per
    pair of shared views, whichever stream asks, and from the layers' diffs for a pair of
    layered views."""
    if old is new:
        return NO_CHANGES
    if type(old) is LayeredView and type(new) is LayeredView:
        out = _layered_diff(old, new)
        if out is not None:
            return out
    if is_shared(old) and is_shared(new):  # the pairs' memo answers its last hit first
        return _PAIRS.get((id(old), id(new)), (old, new),  # type: ignore[no-any-return]
                          lambda: _diff(old, new))
    return _diff(old, new)

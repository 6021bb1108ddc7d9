"""Resources ready to send, and the immutable sets that group them per type.

A :class:`PreparedResource` is one Envoy resource serialised once: its version is the
hash of those bytes, and its wire forms are encoded on first use, so a response to a
thousand proxies is a concatenation of bytes, not a thousand protobuf builds.

A proxy's config for one type is a *resource set*: name -> PreparedResource. The sets
the config builder makes are immutable and shared: a :class:`SharedSet` is given to every
proxy of a class, an :class:`OwnSet` holds what one proxy alone has, and a
:class:`LayeredSet` puts an own set over a shared one, so a thousand proxies hold one copy
of their common config, not a thousand.

Because these sets never change, anything derived from one (its names, its digest, the
names its resources refer to) is computed once and kept on the set itself
(:func:`derived`), whichever proxy's stream asks, and lives exactly as long as the set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshpilot.xds.memo import IdentityMemo

_TYPE_PREFIX = "type.googleapis.com/"


def resource_version(message: Message) -> str:
    """A stable per-resource version: equal bytes, equal version."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:16]


@dataclass(frozen=True)
class PreparedResource:
    """One resource ready to send: its name, version and the packed ``Any``.

    It keeps the bytes, not the message it was made from: a parsed message costs several
    times its encoding in memory (about 4 KB more per cluster for an mTLS socket match
    of 341 bytes), and a class of proxies holds thousands. :attr:`message` parses the
    bytes again when a reading needs them; what a reading finds is kept
    (:meth:`names_given`), so each resource is parsed about once per reading.
    ``convergence.py``'s peak memory guards this."""

    name: str
    version: str
    packed: any_pb2.Any = field(compare=False, repr=False)
    kind: type[Message] = field(compare=False, repr=False)

    @classmethod
    def of(cls, name: str, message: Message) -> PreparedResource:
        """Serialise once: the same bytes give the version and the packed ``Any``."""
        data = message.SerializeToString(deterministic=True)
        packed = any_pb2.Any(type_url=_TYPE_PREFIX + message.DESCRIPTOR.full_name, value=data)
        return cls(name, hashlib.sha256(data).hexdigest()[:16], packed, type(message))

    @property
    def message(self) -> Message:
        """The resource, parsed from its bytes (a new object each time: read only)."""
        return self.kind.FromString(self.packed.value)

    def names_given(self, key: Hashable, reader: Callable[[Message], Iterable[str]]
                    ) -> frozenset[str]:
        """The names ``reader`` finds in this resource (``key`` says which reading), read
        once: a set that differs from the last in one resource reads just that one."""
        given: dict[Hashable, frozenset[str]] = self.__dict__.setdefault("_given", {})
        found = given.get(key)
        if found is None:
            found = given[key] = frozenset(reader(self.message))
        return found

    @cached_property
    def sotw_wire(self) -> bytes:
        """``DiscoveryResponse.resources`` holding this resource, encoded."""
        return discovery_pb2.DiscoveryResponse(resources=[self.packed]).SerializeToString()

    @cached_property
    def delta_wire(self) -> bytes:
        """``DeltaDiscoveryResponse.resources`` holding this resource, encoded."""
        return discovery_pb2.DeltaDiscoveryResponse(resources=[discovery_pb2.Resource(
            name=self.name, version=self.version, resource=self.packed)]).SerializeToString()


ResourceSet = Mapping[str, PreparedResource]
"""name -> PreparedResource, for one type."""

ProxyConfig = Mapping[str, ResourceSet]
"""type URL -> resource set: everything one proxy should have."""


class CheckedConfig(dict):  # type: ignore[type-arg]
    """A config made by the config builder, with what its consistency check found
    (``problems``: empty when consistent). The builder checks each configuration of sets
    once and reuses the verdict while the names its sets hold and give are the same
    objects, so the server need not look again. Immutable, like its sets."""

    __slots__ = ("problems",)


class SharedSet(dict):  # type: ignore[type-arg]
    """An immutable resource set, possibly given to many proxies. Never mutate one:
    values derived from it are kept on it (``derived_values``)."""

    __slots__ = ("derived_values",)


class OwnSet(SharedSet):
    """The resources only one proxy has (its listeners, its inbound clusters): immutable
    like any set, but not shared by a class of proxies."""

    __slots__ = ()


EMPTY_SET: ResourceSet = MappingProxyType({})
"""No resources (read-only; nothing derived from it is kept)."""


class LayeredSet(Mapping[str, PreparedResource]):
    """``top`` over ``base``: a proxy's own few resources over its class's shared set.

    Holds references only, so a proxy whose inbound cluster joins 3,000 shared outbound
    clusters costs two pointers, not a 3,000-entry copy. Immutable, like its layers.
    """

    __slots__ = ("_len", "base", "derived_values", "top")

    def __init__(self, base: SharedSet, top: OwnSet) -> None:
        self.base = base
        self.top = top
        self.derived_values: dict[Hashable, Any] = {}
        self._len = len(base) + sum(1 for n in top if n not in base)

    def __getitem__(self, name: str) -> PreparedResource:
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
        return f"LayeredSet(base={len(self.base)}, top={list(self.top)})"

    def overlaps(self) -> bool:
        """Whether the top shadows names of the base (then layer-wise facts do not add up)."""
        return derived("overlaps", self, _overlaps, self)  # type: ignore[no-any-return]


def _overlaps(layered: LayeredSet) -> bool:
    return any(n in layered.base for n in layered.top)


_IMMUTABLE_SETS: frozenset[type] = frozenset({SharedSet, OwnSet, LayeredSet})


def is_immutable(resource_set: object) -> bool:
    """Immutable by contract, so values derived from it may be kept."""
    return type(resource_set) in _IMMUTABLE_SETS


def layers(resource_set: ResourceSet) -> tuple[ResourceSet, ResourceSet]:
    """(base, top) of a layered set; (the set, EMPTY_SET) of any other."""
    if type(resource_set) is LayeredSet:
        return resource_set.base, resource_set.top
    return resource_set, EMPTY_SET


def prepare(resources: Mapping[str, Mapping[str, Any]]) -> Mapping[str, ResourceSet]:
    """Messages -> prepared sets; an immutable set is taken as it is (and a config of
    nothing but those, as it is)."""
    if type(resources) is CheckedConfig or all(
            type(by_name) in _IMMUTABLE_SETS or by_name is EMPTY_SET
            for by_name in resources.values()):
        return resources  # type: ignore[return-value]
    return {
        type_url: by_name if is_immutable(by_name)
        else {name: PreparedResource.of(name, msg) for name, msg in by_name.items()}
        for type_url, by_name in resources.items()
    }


def versions(resource_set: ResourceSet) -> dict[str, str]:
    return {name: e.version for name, e in resource_set.items()}


def names_of(resource_set: ResourceSet) -> frozenset[str]:
    """The set's names: once per immutable set; a layered one joins its layers' (not
    kept: a proxy's own layered set would keep thousands of names per proxy). A builder
    replacing a set by one with the same names passes the names object on
    (:func:`same_names_as`), so "the names did not change" is an identity test."""
    if type(resource_set) is LayeredSet:
        return names_of(resource_set.base) | names_of(resource_set.top)
    return derived("names", resource_set, frozenset, resource_set)  # type: ignore[no-any-return]


def same_names_as(new: SharedSet, old: ResourceSet) -> None:
    """Give ``new`` (just made, before anyone reads it) ``old``'s very names object when
    their names are equal."""
    if new.keys() == old.keys():
        names = names_of(old)
        try:
            new.derived_values.setdefault("names", names)
        except AttributeError:
            new.derived_values = {"names": names}


def versions_of(resource_set: ResourceSet) -> dict[str, str]:
    """name -> version of the whole set: once per immutable set (never mutate the
    answer); a layered one merges its layers' maps (not kept, as in :func:`names_of`)."""
    if type(resource_set) is LayeredSet:
        return {**versions_of(resource_set.base), **versions_of(resource_set.top)}
    return derived("versions", resource_set, versions, resource_set)  # type: ignore[no-any-return]


def derived(key: Hashable, resource_set: ResourceSet, compute: Callable[..., Any],
            *args: Any) -> Any:
    """``compute(*args)``, once per (key, set) for an immutable set, kept on the set (so
    it lives exactly as long as the set, however many proxies hold it). Hot paths pass a
    module-level ``compute`` and its ``args``: a known value then costs no closure."""
    if type(resource_set) not in _IMMUTABLE_SETS:
        return compute(*args)
    try:
        values = resource_set.derived_values  # type: ignore[attr-defined]
    except AttributeError:
        values = resource_set.derived_values = {}  # type: ignore[attr-defined]
    try:
        return values[key]
    except KeyError:
        value = values[key] = compute(*args)
        return value


def _digest(resource_set: ResourceSet) -> str:
    h = hashlib.sha256()
    for name in sorted(resource_set):
        h.update(name.encode())
        h.update(b"\0")
        h.update(resource_set[name].version.encode())
        h.update(b"\n")
    return h.hexdigest()[:8]


def _layered_digest(resource_set: LayeredSet) -> str:
    both = f"{set_digest(resource_set.base)}/{set_digest(resource_set.top)}"
    return hashlib.sha256(both.encode()).hexdigest()[:8]


def set_digest(resource_set: ResourceSet) -> str:
    """A short digest of a whole set (a response's ``version_info`` carries it)."""
    if type(resource_set) is LayeredSet:
        return derived("digest", resource_set, _layered_digest,  # type: ignore[no-any-return]
                       resource_set)
    return derived("digest", resource_set, _digest, resource_set)  # type: ignore[no-any-return]


# --- differences between sets ------------------------------------------------------------

Changes = tuple[frozenset[str], frozenset[str]]
"""(names added or changed, names removed)."""
NO_CHANGES: Changes = (frozenset(), frozenset())


def diff(old: ResourceSet, new: ResourceSet) -> Changes:
    """Name by name, what moved from ``old`` to ``new``."""
    if not old:  # a first sync: everything is new
        return names_of(new), frozenset()
    changed = frozenset(
        n for n, e in new.items()
        if (c := old.get(n)) is None or (c is not e and c.version != e.version))
    return changed, frozenset(old.keys() - new.keys())


class SetDiffs:
    """``diffs(old, new)``: :func:`diff`, computed once per pair of immutable sets
    whichever stream asks, and for two layered sets sharing a layer from the other
    layer's diff. The xDS server owns one and its streams share it."""

    def __init__(self, size: int = 1024) -> None:
        self._pairs = IdentityMemo(size)

    def __call__(self, old: ResourceSet, new: ResourceSet) -> Changes:
        if old is new:
            return NO_CHANGES
        if type(old) is LayeredSet and type(new) is LayeredSet:
            out = self._layered(old, new)
            if out is not None:
                return out
        if is_immutable(old) and is_immutable(new):
            return self._pairs.get(  # type: ignore[no-any-return]
                (id(old), id(new)), (old, new), lambda: diff(old, new))
        return diff(old, new)

    def _layered(self, old: LayeredSet, new: LayeredSet) -> Changes | None:
        if old.top is new.top:
            changed, removed = self(old.base, new.base)
            top = new.top
            return (frozenset(n for n in changed if n not in top),
                    frozenset(n for n in removed if n not in top))
        if old.base is new.base:
            changed, removed = self(old.top, new.top)
            base = new.base
            out_changed = set(changed)
            out_removed: set[str] = set()
            for n in removed:  # a name leaving the top shows the base's resource, if any
                below = base.get(n)
                if below is None:
                    out_removed.add(n)
                elif below.version != old.top[n].version:
                    out_changed.add(n)
            return frozenset(out_changed), frozenset(out_removed)
        return None

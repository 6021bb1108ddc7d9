"""Is a proxy's config whole? go-control-plane's snapshot check, and a little more.

A config is consistent when every resource a proxy will be asked to fetch by name exists
in it (every ClusterLoadAssignment an EDS cluster names, every RouteConfiguration a
listener or a routing scope names, every SDS secret a TLS socket names:
:data:`~meshpilot.xds.sequence.PUSH_SEQUENCE`'s ``named_by``; a user's credential whose
Secret is not applied yet excepted, its ``may_lack``) and no route sends traffic to a
subset its service's clusters lack. The xDS
server serves a proxy only a consistent config: an inconsistent one is refused and the
proxy stays on its last good one.

Proxies of a class share most of their sets, so the work is split along the layers: what
the shared sets name and lack is worked out once per pair of sets; per proxy only its own
few resources are looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from google.protobuf.message import Message

from meshpilot.xds.references import subset_clusters, subset_parent
from meshpilot.xds.resources import (
    EMPTY_SET,
    LayeredSet,
    ResourceSet,
    derived,
    names_of,
)
from meshpilot.xds.sequence import PUSH_SEQUENCE, NameReader
from meshpilot.xds.types import CLUSTER, ROUTE


def _read_all(resource_set: ResourceSet, key: Hashable,
              reader: Callable[[Message], Iterable[str]]) -> frozenset[str]:
    given = [found for e in resource_set.values() if (found := e.names_given(key, reader))]
    return frozenset().union(*given) if given else frozenset()


def _read_layered(layered: LayeredSet, key: Hashable, reader: NameReader) -> frozenset[str]:
    if layered.overlaps():
        return _read_all(layered, key, reader)
    below, above = named_in(layered.base, key, reader), named_in(layered.top, key, reader)
    return below | above if above else below  # the base's very set, when it can


def named_in(resource_set: ResourceSet, key: Hashable, reader: NameReader) -> frozenset[str]:
    """The names ``reader`` finds in the set's resources (``key`` says which reading, one
    per reader): once per immutable set; a layered set's from its layers'."""
    if type(resource_set) is LayeredSet:
        return derived(key, resource_set,  # type: ignore[no-any-return]
                       _read_layered, resource_set, key, reader)
    return derived(key, resource_set, _read_all,  # type: ignore[no-any-return]
                   resource_set, key, reader)


@dataclass(frozen=True)
class _Reading:
    """Names of ``target`` that resources of ``referrer`` give, read by ``reader``; ``named``
    and ``lacking`` key what is kept on a referrer set (its names, what its targets lack)."""

    referrer: str
    target: str
    reader: NameReader
    named: Hashable
    lacking: Hashable


def _readings() -> tuple[tuple[str, tuple[_Reading, ...]], ...]:
    out = []
    for rule in PUSH_SEQUENCE:
        if rule.named_by:
            out.append((rule.type_url, tuple(
                _Reading(referrer, rule.type_url, reader, ("named", rule.type_url, referrer),
                         ("lacking", rule.type_url, referrer))
                for referrer, reader in rule.named_by)))
    return tuple(out)


READINGS = _readings()
"""Per type asked for by name, how the config names its resources (from the sequence)."""
_MAY_LACK = MappingProxyType({r.type_url: r.may_lack for r in PUSH_SEQUENCE if r.may_lack})
"""Per type, the names a consistent config may name without holding (see the sequence)."""
_SUBSETS = _Reading(ROUTE, CLUSTER, subset_clusters, ("named", "subsets"), ("lacking", "subsets"))


def referenced_names(config: Mapping[str, ResourceSet], type_url: str) -> frozenset[str]:
    """The names of ``type_url`` that the config's other resources name (so the proxy
    will ask for), by the sequence's ``named_by``."""
    readings = next((r for t, r in READINGS if t == type_url), ())
    found = [named_in(config.get(r.referrer, EMPTY_SET), r.named, r.reader) for r in readings]
    if len(found) == 1:
        return found[0]
    return frozenset().union(*found)


def referenced(config: Mapping[str, ResourceSet]) -> dict[str, frozenset[str]]:
    """For every type asked for by name that the config names at all: the names its
    resources give."""
    found = {type_url: referenced_names(config, type_url) for type_url, _ in READINGS}
    return {type_url: names for type_url, names in found.items() if names}


def consistency_problems(config: Mapping[str, ResourceSet],
                         since: Mapping[str, ResourceSet] | None = None) -> list[str]:
    """What makes a proxy's config inconsistent (empty: nothing).

    ``since``: a consistent config of the same proxy; a reading whose sets are the very
    same objects in both is not looked at again (a change moves few sets). Proxies of a
    class share most sets, so the answers are derived values: the names a set gives are
    kept on it, and which of a set of names a target set lacks is kept on the target set
    (keyed by those names, equal for every proxy of a class); a proxy's own top layer of
    targets then only takes names away.
    """
    out = []
    for type_url, readings in READINGS:
        targets = config.get(type_url, EMPTY_SET)
        missing: frozenset[str] = frozenset()
        for reading in readings:
            referrers = config.get(reading.referrer, EMPTY_SET)
            if since is not None and since.get(reading.referrer, EMPTY_SET) is referrers \
                    and since.get(type_url, EMPTY_SET) is targets:
                continue
            lacking = lacking_names(referrers, reading, targets)
            if lacking:
                missing |= lacking
        allowed = _MAY_LACK.get(type_url)
        if missing and allowed is not None:
            missing = frozenset(n for n in missing if not allowed(n))
        if missing:
            out.append(f"{_kind(type_url)} missing: {_listed(missing)}")
    dangling = _dangling_subsets(config, since)
    if dangling:
        out.append(f"{_kind(CLUSTER)} of a routed subset missing: {_listed(dangling)}")
    return out


def _dangling_subsets(config: Mapping[str, ResourceSet],
                      since: Mapping[str, ResourceSet] | None) -> list[str]:
    routes, clusters = config.get(ROUTE, EMPTY_SET), config.get(CLUSTER, EMPTY_SET)
    if since is not None and since.get(ROUTE, EMPTY_SET) is routes \
            and since.get(CLUSTER, EMPTY_SET) is clusters:
        return []
    return [c for c in lacking_names(routes, _SUBSETS, clusters)
            if subset_parent(c) in clusters]  # a service with no cluster at all is allowed


def lacking_names(referrers: ResourceSet, reading: _Reading, targets: ResourceSet
                  ) -> frozenset[str]:
    """The names ``reading`` finds in the referrers that the targets do not hold.

    Answered against the names of the targets' base layer and kept twice: on an immutable
    referring set, with those names (valid while they are the same object: a change that
    keeps a set's names, such as new weights, keeps its names object), and on the base,
    keyed by the names asked about (equal for every proxy of a class). A proxy's own top
    layer of targets only takes names away.
    """
    if type(targets) is LayeredSet:
        base, top = targets.base, targets.top
    else:
        base, top = targets, None
    held = names_of(base)
    slots = getattr(referrers, "derived_values", None)
    slot = slots.get(reading.lacking) if slots is not None else None
    if slot is not None and slot[0] is held:
        found: frozenset[str] = slot[1]
    else:
        given = named_in(referrers, reading.named, reading.reader)
        found = derived((reading.lacking, given), base, _without, given, base) if given \
            else given
        if slots is not None:
            slots[reading.lacking] = (held, found)
    if found and top:
        found = frozenset(n for n in found if n not in top)
    return found


def _without(names: frozenset[str], resource_set: ResourceSet) -> frozenset[str]:
    return names - names_of(resource_set)


def _kind(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]


def _listed(names: Iterable[str], most: int = 20) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:most])
    return shown if len(ordered) <= most else f"{shown} and {len(ordered) - most} more"


def class_names(sets: Mapping[str, ResourceSet], last: tuple[frozenset[str], ...]
                ) -> tuple[frozenset[str], ...]:
    """Everything the consistency of a config reads of these (shared) sets: each set's
    names and the names each reading finds in it. ``last`` itself when all are equal, so
    an unchanged answer is an identity test (the sets are built from the same inputs in
    the same order, so the tuple's positions mean the same things)."""
    found = [names_of(sets.get(t, EMPTY_SET)) for t in sorted(sets)]
    found += [named_in(sets.get(r.referrer, EMPTY_SET), r.named, r.reader)
              for _, readings in READINGS for r in readings if r.referrer in sets]
    found.append(named_in(sets.get(ROUTE, EMPTY_SET), _SUBSETS.named, _SUBSETS.reader))
    return last if tuple(found) == last else tuple(found)

"""Is a proxy's config whole? go-control-plane's snapshot check, and a little more.

A config is consistent when every resource a proxy will be asked to fetch by name exists
in it (every ClusterLoadAssignment an EDS cluster names, every RouteConfiguration a
listener or a routing scope names: :data:`~meshpilot.xds.sequence.PUSH_SEQUENCE`'s
``named_by``) and no route sends traffic to a subset its service's clusters lack. The xDS
server serves a proxy only a consistent config: an inconsistent one is refused and the
proxy stays on its last good one.

Proxies of a class share most of their sets, so the work is split along the layers: what
the shared sets name and lack is worked out once per pair of sets; per proxy only its own
few resources are looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from google.protobuf.message import Message

from meshpilot.xds.memo import IdentityMemo
from meshpilot.xds.references import subset_clusters, subset_parent
from meshpilot.xds.resources import (
    EMPTY_SET,
    LayeredSet,
    OwnSet,
    ResourceSet,
    derived,
    layers,
    names_of,
)
from meshpilot.xds.sequence import PUSH_SEQUENCE, NameReader, rule_for
from meshpilot.xds.types import CLUSTER, ROUTE


def _read_all(resource_set: ResourceSet, reader: Callable[[Message], Iterable[str]]
              ) -> frozenset[str]:
    return frozenset(n for e in resource_set.values() for n in reader(e.message))


def _read_layered(layered: LayeredSet, key: str, reader: NameReader) -> frozenset[str]:
    if layered.overlaps():
        return _read_all(layered, reader)
    below, above = named_in(layered.base, key, reader), named_in(layered.top, key, reader)
    return below | above if above else below  # the base's very set, when it can


def named_in(resource_set: ResourceSet, key: str, reader: NameReader) -> frozenset[str]:
    """The names ``reader`` finds in the set's resources (``key`` says which reading): once
    per immutable set; a layered set's from its layers'."""
    if type(resource_set) is LayeredSet:
        return derived(("named", key), resource_set,  # type: ignore[no-any-return]
                       _read_layered, resource_set, key, reader)
    return derived(("named", key), resource_set,  # type: ignore[no-any-return]
                   _read_all, resource_set, reader)


def referenced_names(config: Mapping[str, ResourceSet], type_url: str) -> frozenset[str]:
    """The names of ``type_url`` that the config's other resources name (so the proxy
    will ask for), by the sequence's ``named_by``."""
    rule = rule_for(type_url)
    if not rule.named_by:
        return frozenset()
    found = [named_in(config.get(t, EMPTY_SET), type_url, reader) for t, reader in rule.named_by]
    if len(found) == 1:
        return found[0]
    return frozenset().union(*found)


def referenced(config: Mapping[str, ResourceSet]) -> dict[str, frozenset[str]]:
    """For every type asked for by name: the names the config's resources give."""
    return {rule.type_url: referenced_names(config, rule.type_url)
            for rule in PUSH_SEQUENCE if rule.named_by}


class ConsistencyCheck:
    """``problems(config)``: what makes a proxy's config inconsistent (empty: none). The
    xDS server owns one; answers about pairs of shared sets are kept (bounded)."""

    def __init__(self, size: int = 1024) -> None:
        self._pairs = IdentityMemo(size)

    def problems(self, config: Mapping[str, ResourceSet]) -> list[str]:
        out = []
        for rule in PUSH_SEQUENCE:
            targets = config.get(rule.type_url, EMPTY_SET)
            missing: set[str] = set()
            for referrer, reader in rule.named_by:
                missing |= self._missing(config.get(referrer, EMPTY_SET), rule.type_url,
                                         reader, targets)
            if missing:
                out.append(f"{_kind(rule.type_url)} missing: {_listed(missing)}")
        dangling = self._dangling_subsets(config.get(ROUTE, EMPTY_SET),
                                          config.get(CLUSTER, EMPTY_SET))
        if dangling:
            out.append(f"{_kind(CLUSTER)} of a routed subset missing: {_listed(dangling)}")
        return out

    def _missing(self, referrers: ResourceSet, key: str, reader: NameReader,
                 targets: ResourceSet) -> set[str]:
        """Names the referrers give that the targets lack, layer by layer."""
        ref_base, ref_top = layers(referrers)
        if type(referrers) is LayeredSet and referrers.overlaps():
            ref_base, ref_top = referrers, EMPTY_SET
        base, top = layers(targets)
        lacking = self._base_lacks(ref_base, key, reader, base)
        out = {n for n in lacking if n not in top}
        if ref_top:
            out.update(n for n in named_in(ref_top, key, reader)
                       if n not in base and n not in top)
        return out

    def _base_lacks(self, referrers: ResourceSet, key: str, reader: NameReader,
                    targets: ResourceSet) -> frozenset[str]:
        def compute() -> frozenset[str]:
            return named_in(referrers, key, reader) - names_of(targets)

        if type(referrers) is OwnSet:  # a proxy's own few resources: nothing to share
            return compute()
        return self._pairs.get(  # type: ignore[no-any-return]
            ("lacks", key, id(referrers), id(targets)), (referrers, targets), compute)

    def _dangling_subsets(self, routes: ResourceSet, clusters: ResourceSet) -> set[str]:
        base, top = layers(clusters)
        lacking = self._missing(routes, "subsets", subset_clusters, clusters)
        return {c for c in lacking
                if (parent := subset_parent(c)) in base or parent in top}


def consistency_problems(config: Mapping[str, ResourceSet]) -> list[str]:
    """:meth:`ConsistencyCheck.problems`, with nothing remembered."""
    return ConsistencyCheck().problems(config)


def _kind(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]


def _listed(names: Iterable[str], most: int = 20) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:most])
    return shown if len(ordered) <= most else f"{shown} and {len(ordered) - most} more"

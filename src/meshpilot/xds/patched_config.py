"""A proxy's config with the EnvoyFilters that select it applied, as immutable sets.

The config builder shares sets between the proxies of a class; an EnvoyFilter selects
proxies by labels and context, so its patches are applied to one proxy's config at a
time, on copies: each type a filter can change becomes a set of that proxy's own, in
which every resource the patches left byte for byte as it was is the very same
prepared resource as before (its version, hence what is pushed, does not move). Types
no patch touches stay the class's shared sets. A proxy no EnvoyFilter selects never
comes here: its config is the builder's, unchanged.

The patched config's consistency is checked again (a REMOVE of a cluster a route still
names would otherwise be pushed): the server keeps such a proxy on its last good config.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from meshpilot.api.envoy_filter import EnvoyFilter
from meshpilot.mesh.model import Named, ProxyNode
from meshpilot.xds.consistency import consistency_problems
from meshpilot.xds.resources import (
    EMPTY_SET,
    CheckedConfig,
    LayeredSet,
    OwnSet,
    PreparedResource,
    ResourceSet,
)
from meshpilot.xds.translate import envoy_filter
from meshpilot.xds.types import CLUSTER, ENDPOINT, ROUTE


class RouteMemo:
    """Route configs as the patches of some filters left them, for every proxy that has
    the same route config and the same filters (a class's inbound route config is one
    object, and a per-route patch on it costs one patching per snapshot, not one per
    proxy). Kept for two snapshots (:meth:`advance`); owned by a config builder."""

    def __init__(self) -> None:
        self._now: dict[Hashable, tuple[Any, PreparedResource, list[str]]] = {}
        self._last: dict[Hashable, tuple[Any, PreparedResource, list[str]]] = {}

    def advance(self) -> None:
        self._last, self._now = self._now, {}

    def patched(self, entry: PreparedResource, node: ProxyNode,
                filters: Sequence[Named[EnvoyFilter]]) -> tuple[PreparedResource, list[str]]:
        """``entry`` with the route patches of ``filters`` applied (what a route patch
        reads of the proxy is its kind); the filters are kept with the result, so the
        identities in the key stay theirs."""
        key = (entry.name, entry.version, tuple(map(id, filters)), node.kind)
        hit = self._now.get(key) or self._last.get(key)
        if hit is None:
            resources = {ROUTE: {entry.name: entry.message}}
            problems = envoy_filter.apply_filters(resources, node, filters)  # type: ignore[arg-type]
            result = resources[ROUTE][entry.name]
            hit = (tuple(filters), PreparedResource.of(entry.name, result), problems)
        self._now[key] = hit
        return hit[1], hit[2]


def patched(config: Mapping[str, ResourceSet], node: ProxyNode,
            filters: Sequence[Named[EnvoyFilter]], routes: RouteMemo | None = None,
            ) -> tuple[CheckedConfig, list[str]]:
    """``config`` with ``filters`` applied, and the patches that could not be. Only the
    resources a patch may change are parsed: every listener of a proxy (it has few), but
    of the clusters and route configs (a mesh's worth) those a match may name by their
    names, and the clusters' endpoint assignments (a REMOVE takes both).
    Consistency is checked again, from the unpatched config's verdict where it had none."""
    types = envoy_filter.touched_types(filters)
    wanted: dict[str, Collection[str]] = {t: config.get(t, EMPTY_SET).keys() for t in types}
    if CLUSTER in types:
        named = envoy_filter.clusters_touched(_plain(config.get(CLUSTER, EMPTY_SET)), node,
                                              filters)
        wanted[CLUSTER] = wanted[ENDPOINT] = named
    if ROUTE in types:
        wanted[ROUTE] = envoy_filter.routes_touched(_plain(config.get(ROUTE, EMPTY_SET)), node,
                                                    filters)
    resources: dict[str, dict[str, Any]] = {
        t: _parsed(config.get(t, EMPTY_SET), wanted[t]) for t in types if t != ROUTE}
    problems = envoy_filter.apply_filters(resources, node, filters)  # type: ignore[arg-type]
    if ROUTE in types:  # each route config alone: what a route patch changes is in it
        memo = routes or RouteMemo()
        resources[ROUTE] = {}
        for name in sorted(wanted[ROUTE]):
            entry = config[ROUTE][name]
            resources[ROUTE][name], more = memo.patched(entry, node, filters)
            problems.extend(p for p in more if p not in problems)
    out = CheckedConfig(config)
    for t in types:
        out[t] = _patched_set(config.get(t, EMPTY_SET), wanted[t], resources[t])
    since = config if not getattr(config, "problems", True) else None
    out.problems = tuple(consistency_problems(out, since))
    return out, problems


def _parsed(resource_set: ResourceSet, names: Collection[str]) -> dict[str, Message]:
    """The resources of ``names`` the set holds, parsed, in the set's order."""
    if len(names) < len(resource_set):
        return {n: e.message for n in sorted(names) if (e := resource_set.get(n)) is not None}
    return {n: e.message for n, e in _plain(resource_set).items() if n in names}


def _plain(resource_set: ResourceSet) -> dict[str, PreparedResource]:
    """The set's entries as a plain dict, copied at C speed (a layered set's layers)."""
    if isinstance(resource_set, LayeredSet):
        return {**resource_set.base, **resource_set.top}
    return dict(resource_set)


def _patched_set(before: ResourceSet, parsed: Collection[str],
                 after: Mapping[str, Message | PreparedResource]) -> ResourceSet:
    """The set after patching, as a set of the proxy's own: the set as it was, in its
    order (added resources last), every resource no patch changed byte for byte the very
    same prepared resource as before, removed ones left out; ``before`` itself when no
    resource changed."""
    entries = _plain(before)
    moved = False
    for name in parsed:
        if name in entries and name not in after:
            del entries[name]
            moved = True
    for name, message in after.items():
        prepared = message if isinstance(message, PreparedResource) else \
            PreparedResource.of(name, message)
        old = entries.get(name)
        if old is None or old.version != prepared.version:
            entries[name] = prepared
            moved = True
    if not moved:
        return before
    return OwnSet(entries.items()) if entries else EMPTY_SET

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

from collections.abc import Mapping, Sequence

from meshpilot.api.envoy_filter import EnvoyFilter
from meshpilot.mesh.model import Named, ProxyNode
from meshpilot.xds.consistency import consistency_problems
from meshpilot.xds.resources import EMPTY_SET, CheckedConfig, OwnSet, PreparedResource, ResourceSet
from meshpilot.xds.translate import envoy_filter


def patched(config: Mapping[str, ResourceSet], node: ProxyNode,
            filters: Sequence[Named[EnvoyFilter]]) -> tuple[CheckedConfig, list[str]]:
    """``config`` with ``filters`` applied, and the patches that could not be."""
    types = envoy_filter.touched_types(filters)
    resources = {t: {name: e.message for name, e in config.get(t, EMPTY_SET).items()}
                 for t in types}
    problems = envoy_filter.apply_filters(resources, node, filters)  # type: ignore[arg-type]
    out = CheckedConfig(config)
    for t in types:
        before = config.get(t, EMPTY_SET)
        items = []
        for name, message in resources[t].items():
            prepared = PreparedResource.of(name, message)
            old = before.get(name)
            items.append((name, old if old is not None and old.version == prepared.version
                          else prepared))
        out[t] = OwnSet(items) if items else EMPTY_SET
    out.problems = tuple(consistency_problems(out))
    return out, problems

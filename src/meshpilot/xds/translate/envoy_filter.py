"""EnvoyFilter patches applied to a proxy's generated config (Istio's semantics).

Which filters apply to a proxy (:func:`selected`): those of its namespace, and those of
the root namespace ``istio-system`` (for every namespace), whose ``workloadSelector``
matches its labels (none: all). They apply in Istio's order: by ``priority`` (lower
first), then oldest first, then by name; each filter's ``configPatches`` in the order
written, each patch on the config the earlier ones left.

What each ``applyTo`` acts on, and how the match fields read meshpilot's names, is in
:mod:`.envoy_filter_match`; the list operations and MERGE in :mod:`.envoy_filter_ops`.
Only what :mod:`meshpilot.validation.envoy_filter_rules` accepts reaches here; a value
that no longer parses (an Envoy API upgrade) is left out and said in the problems.

Pure: no I/O; the same inputs give the same resources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf.message import Message

from meshpilot.api.envoy_filter import ConfigPatch, EnvoyFilter, ObjectMatch
from meshpilot.api.envoy_values import EnvoyValueError, parse_value, value_type
from meshpilot.mesh.index import ROOT_NAMESPACE, labels_match
from meshpilot.mesh.model import MeshSnapshot, Named, ProxyNode
from meshpilot.xds.translate import envoy_filter_match as m
from meshpilot.xds.translate import names, pb
from meshpilot.xds.translate.envoy_filter_ops import edit, merge, rewrite
from meshpilot.xds.translate.names import TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE

Resources = MutableMapping[str, MutableMapping[str, Message]]

PATCHED_TYPES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "CLUSTER": (TYPE_CLUSTER, TYPE_ENDPOINT),
    "LISTENER": (TYPE_LISTENER,), "FILTER_CHAIN": (TYPE_LISTENER,),
    "NETWORK_FILTER": (TYPE_LISTENER,), "HTTP_FILTER": (TYPE_LISTENER,),
    "ROUTE_CONFIGURATION": (TYPE_ROUTE,), "VIRTUAL_HOST": (TYPE_ROUTE,),
    "HTTP_ROUTE": (TYPE_ROUTE,),
})
"""The resource types a patch of each ``applyTo`` may change."""


def _order(named: Named[EnvoyFilter]) -> tuple[int, str, str]:
    meta = named.obj.metadata
    return (named.obj.spec.priority, meta.creation_timestamp or "~",
            f"{named.name}.{named.namespace}")


def applies_to(named: Named[EnvoyFilter], node: ProxyNode) -> bool:
    if named.namespace not in (ROOT_NAMESPACE, node.namespace):
        return False
    selector = named.obj.spec.workload_selector
    return labels_match(selector.labels if selector else None, node.labels)


def selected(snapshot: MeshSnapshot, node: ProxyNode) -> tuple[Named[EnvoyFilter], ...]:
    """The filters that apply to ``node``, in the order they apply (empty, at the cost of
    one attribute read, when the mesh has none)."""
    filters = snapshot.envoy_filters
    if not filters:
        return ()
    return tuple(sorted((f for f in filters if applies_to(f, node)), key=_order))


def touched_types(filters: Iterable[Named[EnvoyFilter]]) -> frozenset[str]:
    """The resource types the patches of ``filters`` may change."""
    return frozenset(t for f in filters for p in f.obj.spec.config_patches
                     for t in PATCHED_TYPES.get(p.apply_to or "", ()))


def clusters_touched(names: Iterable[str], node: ProxyNode,
                     filters: Iterable[Named[EnvoyFilter]]) -> set[str]:
    """The clusters among ``names`` (and those added) the CLUSTER patches of ``filters``
    may change, told by name alone: what a cluster match reads is its name, so the other
    clusters of a large mesh need not be parsed to be patched."""
    out: set[str] = set()
    for named in filters:
        for patch in named.obj.spec.config_patches:
            if patch.apply_to != "CLUSTER":
                continue
            if patch.patch is not None and patch.patch.operation == "ADD":
                try:
                    value = patch_value(patch)
                except EnvoyValueError:
                    continue  # said when it is applied
                out.add(getattr(value, "name", ""))
                continue
            test = m.cluster_name_test(patch.match or ObjectMatch(), node)
            out.update(n for n in names if test(n))
    return out


def routes_touched(names: Iterable[str], node: ProxyNode,
                   filters: Iterable[Named[EnvoyFilter]]) -> set[str]:
    """The route configs among ``names`` the route patches of ``filters`` may change,
    told by name (see :func:`.envoy_filter_match.route_name_test`)."""
    tests = [m.route_name_test(p.match or ObjectMatch(), node)
             for f in filters for p in f.obj.spec.config_patches
             if TYPE_ROUTE in PATCHED_TYPES.get(p.apply_to or "", ())]
    return {n for n in names if any(test(n) for test in tests)}


def apply_filters(resources: Resources, node: ProxyNode,
                  filters: Iterable[Named[EnvoyFilter]]) -> list[str]:
    """Apply every patch of ``filters`` to ``resources`` in place; what could not be
    applied, said per patch (empty when all were)."""
    problems = []
    for named in filters:
        for i, patch in enumerate(named.obj.spec.config_patches):
            try:
                apply_patch(resources, node, patch)
            except EnvoyValueError as exc:
                problems.append(f"EnvoyFilter {named.namespace}/{named.name} "
                                f"configPatches[{i}] not applied: {exc}")
    return problems


def patch_value(patch: ConfigPatch) -> Message | None:
    """The patch's value as the Envoy message its ``applyTo`` takes (None: no value)."""
    body = patch.patch.value if patch.patch is not None else None
    if body is None:
        return None
    return parse_value(body, value_type(patch.apply_to or ""))


def apply_patch(resources: Resources, node: ProxyNode, patch: ConfigPatch) -> None:
    apply_to = patch.apply_to or ""
    operation = (patch.patch.operation if patch.patch else None) or "INVALID"
    value = patch_value(patch)
    match = patch.match or ObjectMatch()
    if apply_to == "CLUSTER":
        _clusters(resources, node, match, operation, value)
    elif apply_to in ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER"):
        _LISTENER_EDITS[apply_to](resources.setdefault(TYPE_LISTENER, {}), node, match,
                                  operation, value)
    elif apply_to in ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE"):
        _route_edit(resources.setdefault(TYPE_ROUTE, {}), node, match, operation, value,
                    apply_to)


def _adds_here(match: ObjectMatch, node: ProxyNode) -> bool:
    """Whether an ADD of a whole listener or cluster applies to this proxy: any context
    but GATEWAY for a sidecar, ANY or GATEWAY for the gateway."""
    context = match.context or "ANY"
    if node.kind == "gateway":
        return context in ("ANY", m.GATEWAY)
    return context != m.GATEWAY


# --- clusters ---------------------------------------------------------------------------

def _clusters(resources: Resources, node: ProxyNode, match: ObjectMatch, operation: str,
              value: Message | None) -> None:
    clusters = resources.setdefault(TYPE_CLUSTER, {})
    if operation == "ADD":
        if value is not None and _adds_here(match, node):
            clusters.setdefault(value.name, value)  # type: ignore[attr-defined]
        return
    for name, cluster in list(clusters.items()):
        if not m.cluster_matches(match, node, cluster):  # type: ignore[arg-type]
            continue
        if operation == "REMOVE":
            del clusters[name]
            resources.get(TYPE_ENDPOINT, {}).pop(name, None)
        elif operation == "MERGE" and value is not None:
            merged = _copied(cluster)
            merge(merged, value)
            merged.name = name  # type: ignore[attr-defined]
            clusters[name] = merged
        elif operation == "REPLACE" and value is not None:
            clusters[name] = _copied(value)


def _copied(message: Message) -> Any:
    out = type(message)()
    out.CopyFrom(message)
    return out


# --- listeners --------------------------------------------------------------------------

Listeners = MutableMapping[str, Message]


def _matching(listeners: Listeners, node: ProxyNode, match: ObjectMatch
              ) -> list[tuple[str, Any]]:
    return [(name, _copied(lsn)) for name, lsn in listeners.items()
            if m.listener_matches(match, node, lsn)]  # type: ignore[arg-type]


def _listener(listeners: Listeners, node: ProxyNode, match: ObjectMatch, operation: str,
              value: Message | None) -> None:
    if operation == "ADD":
        if value is not None and _adds_here(match, node):
            listeners.setdefault(value.name, value)  # type: ignore[attr-defined]
        return
    for name, lsn in _matching(listeners, node, match):
        if operation == "REMOVE":
            del listeners[name]
        elif value is not None:
            merge(lsn, value)
            lsn.name = name
            listeners[name] = lsn


def _chains(listeners: Listeners, node: ProxyNode, match: ObjectMatch, operation: str,
            value: Message | None) -> None:
    wanted = match.listener.filter_chain if match.listener is not None else None
    for name, lsn in _matching(listeners, node, match):
        picked: Callable[[Any], bool] = lambda c: m.chain_matches(wanted, c)  # noqa: E731
        rewrite(lsn.filter_chains, edit(lsn.filter_chains, operation, value, picked, False))
        listeners[name] = lsn


def _each_chain(listeners: Listeners, node: ProxyNode, match: ObjectMatch,
                change: Callable[[Any], None]) -> None:
    """Run ``change`` on every filter chain the match selects (in a copy it stores)."""
    wanted = match.listener.filter_chain if match.listener is not None else None
    for name, lsn in _matching(listeners, node, match):
        for chain in lsn.filter_chains:
            if m.chain_matches(wanted, chain):
                change(chain)
        listeners[name] = lsn


def _network_filters(listeners: Listeners, node: ProxyNode, match: ObjectMatch,
                     operation: str, value: Message | None) -> None:
    named = m.network_filter_name(match)

    def change(chain: Any) -> None:
        rewrite(chain.filters, edit(chain.filters, operation, value,
                                    lambda f: f.name == named, named is not None))

    _each_chain(listeners, node, match, change)


def _http_filters(listeners: Listeners, node: ProxyNode, match: ObjectMatch,
                  operation: str, value: Message | None) -> None:
    if not m.hcm_name_ok(match):
        return
    named = m.sub_filter(match)

    def change(chain: Any) -> None:
        for network_filter in chain.filters:
            if network_filter.name != names.HCM_FILTER:
                continue
            manager = hcm.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            rewrite(manager.http_filters, edit(
                manager.http_filters, operation, value, lambda f: f.name == named,
                named is not None))
            network_filter.typed_config.CopyFrom(pb.pack(manager))

    _each_chain(listeners, node, match, change)


_LISTENER_EDITS = MappingProxyType({
    "LISTENER": _listener,
    "FILTER_CHAIN": _chains,
    "NETWORK_FILTER": _network_filters,
    "HTTP_FILTER": _http_filters,
})


# --- routes -----------------------------------------------------------------------------

def _route_edit(configs: MutableMapping[str, Message], node: ProxyNode, match: ObjectMatch,
                operation: str, value: Message | None, apply_to: str) -> None:
    for name, config in list(configs.items()):
        if not m.route_config_matches(match, node, config):  # type: ignore[arg-type]
            continue
        patched: Any = _copied(config)
        if apply_to == "ROUTE_CONFIGURATION":
            if value is not None:
                merge(patched, value)
                patched.name = name
        elif apply_to == "VIRTUAL_HOST":
            rewrite(patched.virtual_hosts, edit(
                patched.virtual_hosts, operation, value,
                lambda v: m.vhost_matches(match, v), False))
        else:
            for vhost in patched.virtual_hosts:
                if m.vhost_matches(match, vhost):
                    _vhost_routes(vhost, match, operation, value)
        configs[name] = patched


def _vhost_routes(vhost: Any, match: ObjectMatch, operation: str, value: Message | None
                  ) -> None:
    """An HTTP_ROUTE patch on one virtual host: on its routes, or (an inbound one, whose
    routes are the actions of its source-counting matcher, see :mod:`.telemetry`) a
    MERGE on every route action the match selects; other operations there go to its
    ``routes``, which Envoy refuses beside a matcher (said at apply)."""
    if vhost.HasField("matcher") and operation == "MERGE" and value is not None:
        def change(route: rc.Route) -> None:
            if m.route_matches(match, route):
                merge(route, value)

        matcher_routes(vhost.matcher, change)
        return
    rewrite(vhost.routes, edit(vhost.routes, operation, value,
                               lambda r: m.route_matches(match, r),
                               m.route_name(match) is not None))


def matcher_routes(matcher: Any, change: Callable[[rc.Route], None]) -> None:
    """Run ``change`` on every Route action of a generic matcher, at any depth."""
    tree = matcher.matcher_tree
    on_matches = [*tree.exact_match_map.map.values(), *tree.prefix_match_map.map.values(),
                  *(f.on_match for f in matcher.matcher_list.matchers)]
    if matcher.HasField("on_no_match"):
        on_matches.append(matcher.on_no_match)
    for on_match in on_matches:
        if on_match.HasField("matcher"):
            matcher_routes(on_match.matcher, change)
        elif on_match.action.typed_config.Is(rc.Route.DESCRIPTOR):
            route = rc.Route()
            on_match.action.typed_config.Unpack(route)
            change(route)
            on_match.action.typed_config.CopyFrom(pb.pack(route))

"""The pure half of the ADS server: resource versions, diffs and the push plan.

Nothing here does I/O or locking, so every decision the server makes about *what* to
send (and in which order) can be unit-tested without a proxy:

- :func:`resource_version` gives each resource a version (a hash of its deterministic
  serialisation), so "changed" means "different bytes", whoever built the message.
- :func:`plan_update` turns (what the proxy was given, what it should have) into
  make-before-break phases: clusters and endpoints first (old clusters kept), then
  listeners, scoped routes and routes, then the removal of what is no longer referenced.
- :func:`sotw_push` / :func:`delta_push` decide the content of the next response of one
  type from (staged view, subscription, what the proxy is believed to have).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from meshpilot.xds.held import (
    WILDCARD,
    Have,
    Push,
    Subscription,
    apply_push,
    delta_push,
    next_push,
    sotw_push,
)
from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ORDER,
    ROUTE,
    SCOPED_ROUTE,
    order_key,
)
from meshpilot.xds.views import (
    NO_CHANGES,
    Entry,
    EntryView,
    LayeredView,
    SharedMemo,
    View,
    fact,
    resource_version,
    to_entries,
    versions,
    versions_of,
    view_changes,
    view_digest,
)

__all__ = [
    "WILDCARD",
    "Entry",
    "EntryView",
    "Have",
    "LayeredView",
    "Phase",
    "Push",
    "Subscription",
    "View",
    "apply_push",
    "consistency_problems",
    "delta_push",
    "eds_name",
    "next_push",
    "plan_update",
    "rds_names",
    "referenced",
    "resource_version",
    "scope_route_name",
    "sorted_types",
    "sotw_push",
    "to_entries",
    "versions",
    "view_changes",
    "view_digest",
]

# --- references ---------------------------------------------------------------------


def eds_name(cluster: Message) -> str | None:
    """The ClusterLoadAssignment an EDS cluster waits for (None for other cluster types)."""
    if not isinstance(cluster, cluster_pb2.Cluster):
        return None
    if cluster.HasField("type") and cluster.type == cluster_pb2.Cluster.EDS:
        return cluster.eds_cluster_config.service_name or cluster.name
    return None


def rds_names(listener: Message) -> set[str]:
    """Route configurations a listener's HTTP connection managers fetch over RDS."""
    if not isinstance(listener, listener_pb2.Listener):
        return set()
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    names: set[str] = set()
    for chain in chains:
        for flt in chain.filters:
            if flt.HasField("typed_config") and flt.typed_config.Is(
                hcm_pb2.HttpConnectionManager.DESCRIPTOR
            ):
                hcm = hcm_pb2.HttpConnectionManager()
                flt.typed_config.Unpack(hcm)
                if hcm.HasField("rds"):
                    names.add(hcm.rds.route_config_name)
    return names


def scope_route_name(scope: Message) -> str | None:
    """The RouteConfiguration a routing scope (SRDS) points at, fetched over RDS."""
    if isinstance(scope, scoped_route_pb2.ScopedRouteConfiguration):
        return scope.route_configuration_name or None
    return None


_REFS_FACT = {CLUSTER: "refs:" + CLUSTER, LISTENER: "refs:" + LISTENER,
              SCOPED_ROUTE: "refs:" + SCOPED_ROUTE}


def _refs(kind: str, view: Mapping[str, Entry]) -> frozenset[str]:
    """The names a view's resources refer to (EDS by clusters, RDS by listeners and
    scopes): once per shared view; a layered view's from its layers' when it can."""
    if type(view) is LayeredView:
        return fact(_REFS_FACT[kind], view, _layered_refs, kind, view)  # type: ignore[no-any-return]
    return fact(_REFS_FACT[kind], view, _own_refs, kind, view)  # type: ignore[no-any-return]


def _own_refs(kind: str, view: Mapping[str, Entry]) -> frozenset[str]:
    if kind == CLUSTER:
        return frozenset(n for e in view.values() if (n := eds_name(e.message)))
    if kind == LISTENER:
        return frozenset(n for e in view.values() for n in rds_names(e.message))
    return frozenset(n for e in view.values() if (n := scope_route_name(e.message)))


def _layered_refs(kind: str, view: LayeredView) -> frozenset[str]:
    if any(n in view.base for n in view.top):
        return _own_refs(kind, view)
    below, above = _refs(kind, view.base), _refs(kind, view.top)
    return below | above if above else below  # the class's very set, if it can


def referenced(target: Mapping[str, Mapping[str, Entry]]) -> dict[str, set[str]]:
    """EDS names referenced by the clusters; RDS names referenced by the listeners and
    by the routing scopes."""
    return {ENDPOINT: set(referenced_eds(target)), ROUTE: set(referenced_rds(target))}


def referenced_eds(target: Mapping[str, Mapping[str, Entry]]) -> frozenset[str]:
    return _refs(CLUSTER, target.get(CLUSTER, {}))


def referenced_rds(target: Mapping[str, Mapping[str, Entry]]) -> frozenset[str]:
    return (_refs(LISTENER, target.get(LISTENER, {}))
            | _refs(SCOPED_ROUTE, target.get(SCOPED_ROUTE, {})))


def consistency_problems(target: Mapping[str, Mapping[str, Entry]]) -> list[str]:
    """go-control-plane's snapshot check: every referenced EDS/RDS name exists."""
    refs = referenced(target)
    problems = []
    for type_url, names in refs.items():
        missing = sorted(names - set(target.get(type_url, {})))
        if missing:
            problems.append(f"{type_url.rsplit('.', 1)[-1]} missing: {', '.join(missing)}")
    return problems


# --- the push plan --------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One step of an update: stage these views, then wait for these ACKs.

    ``stage``: type -> the complete view the proxy should now be given for that type.
    ``resend``: names to send again even if the proxy has them at the same version.
    ``expect``: type -> name -> version that must be ACKed before the next phase; every
    type in ``stage`` is listed (possibly with no names: "its responses are answered").
    """

    name: str
    stage: dict[str, dict[str, Entry]]
    resend: dict[str, frozenset[str]]
    expect: dict[str, dict[str, str]]

    @cached_property
    def stage_order(self) -> tuple[str, ...]:
        """The staged types in push order."""
        return tuple(sorted_types(self.stage))

    @cached_property
    def staging(self) -> tuple[tuple[str, Mapping[str, Entry], str, frozenset[str]], ...]:
        """(type, view, its digest, names to resend) in push order: worked out once for
        every proxy that follows this plan."""
        return tuple((t, self.stage[t], view_digest(self.stage[t]),
                      self.resend.get(t) or frozenset()) for t in self.stage_order)

    @cached_property
    def expect_order(self) -> tuple[str, ...]:
        """The expected types in push order."""
        return tuple(sorted_types(self.expect))


def _merge(cur: Mapping[str, Entry], new: Mapping[str, Entry],
           removed: frozenset[str]) -> Mapping[str, Entry]:
    """``{**cur, **new}``; ``new`` itself when ``cur`` has no name ``new`` lacks (views are
    never mutated, so a shared view can be staged as it is)."""
    if cur is new or not removed:
        return new
    return {**cur, **new}


_EMPTY_VIEW: Mapping[str, Entry] = EntryView()
_KNOWN = frozenset(ORDER)


class _Diffs:
    """view_changes between the views of one plan, each pair looked at once."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], tuple[frozenset[str], frozenset[str]]] = {}

    def __call__(self, old: Mapping[str, Entry], new: Mapping[str, Entry]
                 ) -> tuple[frozenset[str], frozenset[str]]:
        if old is new:
            return NO_CHANGES
        key = (id(old), id(new))
        got = self._seen.get(key)
        if got is None:
            got = self._seen[key] = view_changes(old, new)
        return got


_PLANS = SharedMemo(256)
"""Plans shared by the proxies that make the same move."""


def _plan_key(
    current: Mapping[str, Mapping[str, Entry]], target: Mapping[str, Mapping[str, Entry]],
) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """What a plan depends on, when every view that changes is one a whole class of
    proxies shares (then every proxy of the class making this move gets the same plan);
    None otherwise. Unchanged views matter only through the names they reference."""
    key: list[Any] = []
    keep: list[Any] = []
    moved = False
    types = ORDER if target.keys() == _KNOWN and current.keys() == _KNOWN else (
        dict.fromkeys((*ORDER, *target, *current)))
    for t in types:
        cur, new = current.get(t), target.get(t)
        if cur is new and cur is not None:
            if type(new) is EntryView:  # shared and unchanged: its content is its id
                key.append((t, id(new)))
                keep.append(new)
            continue  # a proxy's own view, unchanged: only the names it references count
        if type(new) is not EntryView or (cur is not None and type(cur) is not EntryView):
            return None  # a proxy's own views change, or a first sync: plan for it alone
        key.append((t, id(cur), id(new)))
        keep += (cur, new)
        moved = True
    if not moved:
        return (), ()  # nothing changed
    eds = referenced_eds(target)
    listeners = target.get(LISTENER, _EMPTY_VIEW)
    scopes = target.get(SCOPED_ROUTE, _EMPTY_VIEW)
    key += [id(eds), _refs(LISTENER, listeners), id(scopes)]
    keep += [eds, scopes]
    return tuple(key), tuple(keep)


def plan_update(
    current: Mapping[str, Mapping[str, Entry]],
    target: Mapping[str, Mapping[str, Entry]],
) -> list[Phase]:
    """Make-before-break phases (see :func:`_plan`), computed once for all the proxies
    of a class that make the same move. The phases are shared: never mutate them."""
    found = _plan_key(current, target)
    if found is None:
        return _plan(current, target)
    key, keep = found
    if not key:
        return []
    return _PLANS.get(key, keep, lambda: _plan(current, target))


def _plan(
    current: Mapping[str, Mapping[str, Entry]],
    target: Mapping[str, Mapping[str, Entry]],
) -> list[Phase]:
    """Make-before-break phases from the staged ``current`` views to ``target``.

    1. ``make``: clusters = current + target (new/changed clusters added, stale ones
       kept), endpoints likewise; the endpoints of a changed cluster are sent again
       (a re-created cluster warms on them). Wait for the new/changed clusters and the
       referenced new/changed endpoints to be ACKed.
    2. ``switch``: listeners = target (full set), scoped routes = current + target,
       routes = current + target; other types = target. Wait for the new/changed
       listeners, scopes and referenced routes. Scopes and the routes they name are staged
       together: Envoy asks for a scope's RouteConfiguration only once it holds the
       scope, and gets it at once from the staged view.
    3. ``break``: every type = target: stale clusters, endpoints, scopes and routes go,
       after nothing points at them any more.

    A type absent from ``current`` was never staged (new stream): it is staged in its
    phase even when empty, so the proxy's first request for it gets an answer.

    Runs once per proxy per change, so the common case (a few views changed, the rest
    the very same objects) looks only at what changed.
    """
    phases: list[Phase] = []
    staged: dict[str, Any] = dict(current)  # views are never mutated: no copies
    diff = _Diffs()

    def stage_merge(type_url: str, stage: dict[str, Any]) -> frozenset[str]:
        cur = staged.get(type_url, _EMPTY_VIEW)
        new = target.get(type_url, _EMPTY_VIEW)
        changed, removed = diff(cur, new)
        if type_url not in staged or changed:
            stage[type_url] = _merge(cur, new, removed)
        return changed

    def same(type_url: str) -> bool:
        """The staged view of ``type_url`` already is the target one."""
        if type_url not in staged:
            return False
        cur, new = staged[type_url], target.get(type_url, _EMPTY_VIEW)
        if cur is new:
            return True
        if len(cur) != len(new):
            return False
        changed, removed = diff(cur, new)
        return not changed and not removed

    # 1. clusters, endpoints
    stage1: dict[str, Mapping[str, Entry]] = {}
    changed_clusters = stage_merge(CLUSTER, stage1)
    changed_eds = stage_merge(ENDPOINT, stage1)
    new_clusters = target.get(CLUSTER, _EMPTY_VIEW)
    new_eds = target.get(ENDPOINT, _EMPTY_VIEW)
    resend_eds: set[str] = set()
    if ENDPOINT in staged and changed_clusters:
        resend_eds = {
            n for c in changed_clusters if (n := eds_name(new_clusters[c].message))
            and n in new_eds and n not in changed_eds
        }
        if resend_eds and ENDPOINT not in stage1:
            stage1[ENDPOINT] = dict(staged[ENDPOINT])
    if stage1:
        expect1: dict[str, dict[str, str]] = {t: {} for t in stage1}
        expect1.setdefault(CLUSTER, {}).update(_expected(new_clusters, changed_clusters))
        want_eds = changed_eds | resend_eds
        if want_eds:
            want_eds &= referenced_eds(target)
        if want_eds:
            expect1.setdefault(ENDPOINT, {}).update(_expected(new_eds, want_eds))
        resend = {ENDPOINT: frozenset(resend_eds)} if resend_eds else {}
        phases.append(Phase("make", stage1, resend, expect1))
        staged.update(stage1)

    # 2. listeners (full), routes (merged), any other type (full)
    stage2: dict[str, Mapping[str, Entry]] = {}
    new_listeners = target.get(LISTENER, _EMPTY_VIEW)
    changed_listeners = diff(staged.get(LISTENER, _EMPTY_VIEW), new_listeners)[0]
    if not same(LISTENER):
        stage2[LISTENER] = new_listeners
    changed_scopes = stage_merge(SCOPED_ROUTE, stage2) if (
        SCOPED_ROUTE in target or SCOPED_ROUTE in staged) else frozenset()
    changed_routes = stage_merge(ROUTE, stage2)
    others = [t for t in target if t not in _KNOWN]
    others += [t for t in staged if t not in _KNOWN and t not in target]
    for type_url in others:
        if not same(type_url):
            stage2[type_url] = target.get(type_url, _EMPTY_VIEW)
    if stage2:
        expect2: dict[str, dict[str, str]] = {t: {} for t in stage2}
        expect2.setdefault(LISTENER, {}).update(
            {n: new_listeners[n].version for n in changed_listeners})
        if changed_scopes:
            new_scopes = target.get(SCOPED_ROUTE, _EMPTY_VIEW)
            expect2.setdefault(SCOPED_ROUTE, {}).update(_expected(new_scopes, changed_scopes))
        if changed_routes:
            by_listeners = _refs(LISTENER, target.get(LISTENER, _EMPTY_VIEW))
            by_scopes = _refs(SCOPED_ROUTE, target.get(SCOPED_ROUTE, _EMPTY_VIEW))
            new_routes = target.get(ROUTE, _EMPTY_VIEW)
            want_rds = _expected(new_routes, changed_routes & (by_listeners | by_scopes))
            if want_rds:
                expect2.setdefault(ROUTE, {}).update(want_rds)
        for type_url in others:
            if type_url in stage2:
                new = target.get(type_url, _EMPTY_VIEW)
                expect2[type_url] = dict(
                    _expected(new, diff(staged.get(type_url, _EMPTY_VIEW), new)[0]))
        phases.append(Phase("switch", stage2, {}, expect2))
        staged.update(stage2)

    # 3. remove what is no longer referenced
    stage3: dict[str, Mapping[str, Entry]] = {}
    for type_url in (*ORDER, *others):
        if (type_url in staged or type_url in target) and not same(type_url):
            stage3[type_url] = target.get(type_url, _EMPTY_VIEW)
    if stage3:
        phases.append(Phase("break", stage3, {}, {t: {} for t in stage3}))
    return phases


def _expected(view: Mapping[str, Entry], names: frozenset[str]) -> Mapping[str, str]:
    """name -> version in ``view`` of ``names`` (a subset of its names). All of them, as
    in a first sync, is the view's own map, built once per shared view: a thousand
    proxies' first syncs asked 3,000 clusters' versions one by one each. Read only."""
    if len(names) == len(view):
        return versions_of(view)
    return {n: view[n].version for n in names}


def sorted_types(type_urls: Iterable[str]) -> list[str]:
    return sorted(type_urls, key=order_key)

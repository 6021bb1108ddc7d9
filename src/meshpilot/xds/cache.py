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

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    FULL_STATE_TYPES,
    LISTENER,
    ORDER,
    ROUTE,
    SCOPED_ROUTE,
    order_key,
)

WILDCARD = "*"


def resource_version(message: Message) -> str:
    """A stable per-resource version: equal bytes, equal version."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:16]


@dataclass(frozen=True)
class Entry:
    """One resource ready to send: its name, version and the packed ``Any``."""

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


_TYPE_PREFIX = "type.googleapis.com/"

View = Mapping[str, Entry]
"""name -> Entry for one type."""


class EntryView(dict):  # type: ignore[type-arg]
    """A prebuilt, immutable name -> Entry view (possibly shared by many proxies).

    :func:`to_entries` passes it through as it is, so a stream's staged view can be the
    very object other streams hold, and per-view facts (digest, references, diffs) are
    computed once per view instead of once per proxy. Never mutate one.
    """

    __slots__ = ()


def to_entries(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Entry]]:
    """Messages → Entries; an :class:`EntryView` is taken as it is."""
    return {
        type_url: by_name if isinstance(by_name, EntryView)
        else {name: Entry.of(name, msg) for name, msg in by_name.items()}
        for type_url, by_name in resources.items()
    }



class _ViewMemo:
    """Facts about immutable :class:`EntryView` s, computed once however many streams ask.

    Keyed by the views' ids; each entry holds the views themselves, so an id cannot be
    reused by another object while its entry lives. Bounded (least recently used out).
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, tuple[int, ...]], tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, kind: str, views: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        key = (kind, tuple(id(v) for v in views))
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[1]
        value = compute()
        with self._lock:
            self._items[key] = (views, value)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_MEMO = _ViewMemo()


def _shared(*views: Any) -> bool:
    return all(isinstance(v, EntryView) for v in views)


def versions(view: Mapping[str, Entry]) -> dict[str, str]:
    return {name: e.version for name, e in view.items()}


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
    if _shared(view):
        return _MEMO.get("digest", (view,), lambda: _digest(view))
    return _digest(view)


def _diff(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> tuple[frozenset[str],
                                                                         frozenset[str]]:
    changed = frozenset(
        n for n, e in new.items()
        if (c := old.get(n)) is None or (c is not e and c.version != e.version))
    return changed, frozenset(old.keys() - new.keys())


def view_changes(
    old: Mapping[str, Entry], new: Mapping[str, Entry]
) -> tuple[frozenset[str], frozenset[str]]:
    """(names added or changed, names removed) from ``old`` to ``new``; computed once per
    pair of shared views, whichever stream asks."""
    if old is new:
        return frozenset(), frozenset()
    if _shared(old, new):
        return _MEMO.get("diff", (old, new), lambda: _diff(old, new))
    return _diff(old, new)




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


def _refs(kind: str, view: Mapping[str, Entry]) -> frozenset[str]:
    def compute() -> frozenset[str]:
        if kind == CLUSTER:
            return frozenset(n for e in view.values() if (n := eds_name(e.message)))
        if kind == LISTENER:
            return frozenset(n for e in view.values() for n in rds_names(e.message))
        return frozenset(n for e in view.values() if (n := scope_route_name(e.message)))

    return _MEMO.get("refs:" + kind, (view,), compute) if _shared(view) else compute()


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


def _changed(cur: Mapping[str, Entry], new: Mapping[str, Entry]) -> set[str]:
    return set(view_changes(cur, new)[0])


def _same(a: Mapping[str, Entry], b: Mapping[str, Entry]) -> bool:
    if a is b:
        return True
    if len(a) != len(b):
        return False
    changed, removed = view_changes(a, b)
    return not changed and not removed


def _merge(cur: Mapping[str, Entry], new: Mapping[str, Entry]) -> Mapping[str, Entry]:
    """``{**cur, **new}``; ``new`` itself when ``cur`` has no name ``new`` lacks (views are
    never mutated, so a shared view can be staged as it is)."""
    if cur is new or not view_changes(cur, new)[1]:
        return new
    return {**cur, **new}


def plan_update(
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
    """
    phases: list[Phase] = []
    staged: dict[str, Any] = dict(current)  # views are never mutated: no copies

    def stage_merge(type_url: str, stage: dict[str, Any]) -> set[str]:
        cur = staged.get(type_url, {})
        new = target.get(type_url, {})
        changed = _changed(cur, new)
        if type_url not in staged or changed:
            stage[type_url] = _merge(cur, new)
        return changed

    # 1. clusters, endpoints
    stage1: dict[str, dict[str, Entry]] = {}
    changed_clusters = stage_merge(CLUSTER, stage1)
    changed_eds = stage_merge(ENDPOINT, stage1)
    new_clusters = target.get(CLUSTER, {})
    new_eds = target.get(ENDPOINT, {})
    resend_eds: set[str] = set()
    if ENDPOINT in staged:
        resend_eds = {
            n for c in changed_clusters if (n := eds_name(new_clusters[c].message))
        } & set(new_eds)
        resend_eds -= changed_eds
        if resend_eds and ENDPOINT not in stage1:
            stage1[ENDPOINT] = dict(staged[ENDPOINT])
    if stage1:
        expect1: dict[str, dict[str, str]] = {t: {} for t in stage1}
        expect1.setdefault(CLUSTER, {}).update(
            {n: new_clusters[n].version for n in changed_clusters})
        want_eds = changed_eds | resend_eds
        if want_eds:
            want_eds &= referenced_eds(target)
        if want_eds:
            expect1.setdefault(ENDPOINT, {}).update({n: new_eds[n].version for n in want_eds})
        resend = {ENDPOINT: frozenset(resend_eds)} if resend_eds else {}
        phases.append(Phase("make", stage1, resend, expect1))
        staged.update(stage1)

    # 2. listeners (full), routes (merged), any other type (full)
    stage2: dict[str, dict[str, Entry]] = {}
    new_listeners = target.get(LISTENER, {})
    changed_listeners = _changed(staged.get(LISTENER, {}), new_listeners)
    if LISTENER not in staged or not _same(staged[LISTENER], new_listeners):
        stage2[LISTENER] = new_listeners
    changed_scopes = stage_merge(SCOPED_ROUTE, stage2) if SCOPED_ROUTE in (
        set(target) | set(staged)) else set()
    changed_routes = stage_merge(ROUTE, stage2)
    others = sorted((set(target) | set(staged)) - set(ORDER), key=order_key)
    for type_url in others:
        new = target.get(type_url, {})
        if type_url not in staged or not _same(staged[type_url], new):
            stage2[type_url] = new
    if stage2:
        expect2: dict[str, dict[str, str]] = {t: {} for t in stage2}
        expect2.setdefault(LISTENER, {}).update(
            {n: new_listeners[n].version for n in changed_listeners})
        if changed_scopes:
            new_scopes = target.get(SCOPED_ROUTE, {})
            expect2.setdefault(SCOPED_ROUTE, {}).update(
                {n: new_scopes[n].version for n in changed_scopes})
        want_rds = changed_routes & referenced_rds(target) if changed_routes else set()
        new_routes = target.get(ROUTE, {})
        if want_rds:
            expect2.setdefault(ROUTE, {}).update({n: new_routes[n].version for n in want_rds})
        for type_url in others:
            if type_url in stage2:
                new = target.get(type_url, {})
                expect2[type_url] = {
                    n: new[n].version for n in _changed(staged.get(type_url, {}), new)}
        phases.append(Phase("switch", stage2, {}, expect2))
        staged.update(stage2)

    # 3. remove what is no longer referenced
    stage3: dict[str, dict[str, Entry]] = {}
    for type_url in sorted(set(staged) | set(target), key=order_key):
        new = target.get(type_url, {})
        if type_url not in staged or not _same(staged[type_url], new):
            stage3[type_url] = new
    if stage3:
        phases.append(Phase("break", stage3, {}, {t: {} for t in stage3}))
    return phases


# --- subscriptions and response content ----------------------------------------------


@dataclass
class Subscription:
    """What a proxy asked for, for one type: everything (wildcard) or these names."""

    wildcard: bool = False
    names: set[str] = field(default_factory=set)

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def visible(self, view: Mapping[str, Entry]) -> dict[str, Entry]:
        if self.wildcard:
            return dict(view)
        return {n: e for n, e in view.items() if n in self.names}


@dataclass(frozen=True)
class Push:
    """The content of one response: resources to (re)send and names to remove."""

    resources: dict[str, Entry]
    removed: tuple[str, ...] = ()
    full_state: bool = False  # SotW CDS/LDS: ``resources`` is the proxy's whole set

    def names(self) -> tuple[str, ...]:
        return tuple(self.resources)


def sotw_push(
    type_url: str, staged: Mapping[str, Entry], subs: Subscription,
    sent: Mapping[str, str], *, force: bool = False,
) -> Push | None:
    """Next SotW response for one type, or None when the proxy is up to date.

    Listener/Cluster: the full visible set whenever it differs from what was sent.
    Other types: only the subscribed resources whose version differs from what the
    proxy has (Envoy keeps the RDS/EDS resources a response does not mention).
    ``force`` (an initial request) answers full-state types even when nothing changed.
    """
    visible = subs.visible(staged)
    if type_url in FULL_STATE_TYPES:
        if force or versions(visible) != dict(sent):
            return Push(dict(sorted(visible.items())), (), True)
        return None
    changed = {n: e for n, e in sorted(visible.items()) if sent.get(n) != e.version}
    return Push(changed) if changed else None


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
    visible = subs.visible(staged)
    upserts = {n: e for n, e in sorted(visible.items()) if sent.get(n) != e.version}
    removed = tuple(sorted(n for n in sent if n not in visible and subs.wants(n)))
    if upserts or removed or force:
        return Push(upserts, removed)
    return None


def apply_push(sent: dict[str, str], push: Push, subs: Subscription) -> None:
    """Update what the proxy is believed to have after ``push`` is sent."""
    if push.full_state:
        sent.clear()
    for name, e in push.resources.items():
        sent[name] = e.version
    for name in push.removed:
        sent.pop(name, None)
    if not subs.wildcard:
        for name in sent.keys() - subs.names:
            del sent[name]


def sorted_types(type_urls: Iterable[str]) -> list[str]:
    return sorted(type_urls, key=order_key)

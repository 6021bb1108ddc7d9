"""Build each proxy's resources once per *kind of proxy*, and each service once per change.

:func:`meshpilot.xds.translate.build_resources` is the reference: a pure function of
(snapshot, node). Most of what it returns does not depend on the node at all, or only on
its namespace (short-name spellings, DestinationRule tie-breaks) and, when some rule looks
at proxy labels (DestinationRule ``workloadSelector``, VirtualService ``sourceLabels``),
its labels. :class:`SharedBuilder` returns the same resources, as prebuilt
:class:`~meshpilot.xds.cache.EntryView` s (serialised and hashed once), built:

- per **proxy class** ``(gateway or not, namespace, labels if any rule reads them)`` and
  snapshot: outbound clusters, their ClusterLoadAssignments, the per-service route
  configurations and routing scopes. Every proxy of a class gets the very same view
  objects, so streams can also share per-view work (digests, references, diffs);
- per **service**, across snapshots: a service's clusters are rebuilt only when the
  service, its endpoints or the DestinationRule chosen for it change; its route config
  only when the service, its spellings, its VirtualService, or the services and rules
  its routes point at change (inputs are compared by equality, so the memo is keyed by
  inputs, never by time). A weight change in one VirtualService rebuilds one route config;
- per **node**: its listeners and inbound clusters, rebuilt only when the node changes.
  Inbound route configs (``inbound|<port>||``, with one telemetry virtual cluster per
  known caller) are the same for every pod with that container port: they are part of
  the class's routes, built once per port and set of known callers;
- a node's own resources are layered over its class's views (:class:`LayeredView`), so a
  proxy costs a few references, not a copy of the mesh; and a node whose class and own
  views did not change gets the very same views back, at the cost of a look-up.

Old entries are dropped once unused for two snapshots. Thread-safe; no I/O.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from meshpilot.mesh.model import MeshService, MeshSnapshot, ProxyNode, same_objects
from meshpilot.xds.cache import consistency_problems
from meshpilot.xds.translate import (
    clusters,
    http_inbound_ports,
    inbound_route,
    index,
    node_resources,
    route_config,
    scopes,
    sidecar_own,
)
from meshpilot.xds.translate import telemetry as build_telemetry
from meshpilot.xds.translate.vhosts import service_route_table, sidecar_plan
from meshpilot.xds.types import CLUSTER, ENDPOINT, LISTENER, ORDER, ROUTE, SCOPED_ROUTE
from meshpilot.xds.views import EMPTY, Entry, EntryView, LayeredView, OwnView

log = logging.getLogger(__name__)

Entries = dict[str, EntryView]
Views = dict[str, EntryView | LayeredView]
_KEEP = 2
"""Snapshots (generations) a class or node entry survives unused."""


@dataclass
class _Memo:
    inputs: Any
    out: list[tuple[str, Entry]]


@dataclass
class _Class:
    key: Hashable
    snapshot: MeshSnapshot | None = None
    gen: int = 0
    views: Entries = field(default_factory=dict)
    """Every type -> the class's view (EMPTY where it has none), once built: a proxy's
    views start as a copy of it."""
    clusters: dict[str, _Memo] = field(default_factory=dict)  # host -> clusters + CLAs
    routes: dict[str, _Memo] = field(default_factory=dict)  # host -> route config + scopes
    built_from: MeshSnapshot | None = None  # the snapshot the memos were last checked on
    plan: list[Any] = field(default_factory=list)  # sidecar_plan for built_from
    inbound: list[tuple[str, Entry]] = field(default_factory=list)  # its inbound routes


@dataclass(frozen=True)
class _Moves:
    """What changed between the snapshot a class was built from and the next one, in
    the terms its memos depend on (every object compared by identity: the snapshot
    builder keeps the objects of what did not change)."""

    rules: bool  # any DestinationRule
    services: bool  # any service (added, removed, replaced)
    vs_hosts: frozenset[str] | None  # hosts whose VirtualService may differ; None: any

    @classmethod
    def between(cls, old: MeshSnapshot | None, new: MeshSnapshot) -> _Moves | None:
        if old is None:
            return None
        return cls(
            rules=not same_objects(old.destination_rules, new.destination_rules),
            services=not (old.services.keys() == new.services.keys() and same_objects(
                tuple(old.services.values()), tuple(new.services.values()))),
            vs_hosts=index.changed_vs_hosts(old.virtual_services, new.virtual_services),
        )

    def vs_same(self, host: str) -> bool:
        return self.vs_hosts is not None and host not in self.vs_hosts


@dataclass
class _Node:
    inputs: Any = None
    own: Entries = field(default_factory=dict)
    gen: int = 0
    snapshot: MeshSnapshot | None = None
    layered: dict[str, tuple[EntryView, EntryView, LayeredView]] = field(default_factory=dict)
    """type -> (class view, own view, the layered view of both), while both stay."""
    out: Views = field(default_factory=dict)
    out_of: tuple[Any, ...] = ()  # the (class views, own views) ``out`` was made of
    key: Hashable = None  # its class key ...
    key_of: MeshSnapshot | None = None  # ... for this snapshot
    plain_key: Hashable = None  # its class key while no rule reads proxy labels


def _entries(items: Iterable[tuple[str, Message]]) -> list[tuple[str, Entry]]:
    return [(name, Entry.of(name, msg)) for name, msg in items]


def _rebuilt(memo: _Memo | None, inputs: Any, out: list[tuple[str, Entry]]) -> _Memo:
    """A new memo for ``out``, keeping the old Entry object of every resource whose bytes
    did not change (so views holding only those stay the same objects)."""
    if memo is not None:
        old = dict(memo.out)
        out = [(n, o if (o := old.get(n)) is not None and o.version == e.version else e)
               for n, e in out]
    return _Memo(inputs, out)


def _view(items: Iterable[tuple[str, Entry]], old: EntryView | None,
          kind: type[EntryView] = EntryView) -> EntryView:
    """A view of ``items``; the ``old`` object itself when it holds the very same entries,
    so an unchanged type stays the same object from one snapshot to the next."""
    view = kind(items)
    if old is not None and len(old) == len(view) and all(
            old.get(n) is e for n, e in view.items()):
        return old
    return view


class SharedBuilder:
    """``entries(snapshot, node)``: what :func:`build_resources` gives, as shared Entries."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._classes: dict[Hashable, _Class] = {}
        self._nodes: dict[str, _Node] = {}
        self._snapshot: MeshSnapshot | None = None
        self._sensitive = False  # whether some rule of the snapshot reads proxy labels
        self._gen = 0
        self._known: tuple[str, ...] = ()
        self._sources_of: MeshSnapshot | None = None
        self._inbound_routes: dict[int, Entry] = {}  # container port -> its route config
        self._ports: set[int] = set()  # HTTP container ports of the sidecars seen
        self.builds: Counter[str] = Counter()
        """How many times each part was (re)built: ``clusters`` / ``routes`` per service,
        ``node`` per proxy, ``class`` per proxy class and snapshot (for tests and
        benchmarks)."""

    # --- public ---------------------------------------------------------------------------
    def entries(self, snapshot: MeshSnapshot, node: ProxyNode) -> Views:
        with self._lock:
            self._advance(snapshot)
            state = self._nodes.get(node.id)
            if state is None:
                state = self._nodes[node.id] = _Node()
            if state.inputs is not node and node.kind != "gateway":
                self._note_ports(node)
            if state.key_of is not snapshot:
                if not self._sensitive and state.plain_key is not None:
                    state.key = state.plain_key  # labels do not matter: same class as before
                else:
                    state.key = self.class_key(snapshot, node)
                    state.plain_key = None if self._sensitive else state.key
                state.key_of = snapshot
            cls = self._class(snapshot, node, state.key)
            self._node(snapshot, node, state)
            own = state.own
            parts = (cls.views, *own.values())
            last = state.out_of
            if same_objects(parts, last):
                return state.out  # nothing this proxy gets changed: the same views
            out: Views = {**cls.views}
            for t, mine in own.items():
                if mine:
                    shared = out[t]
                    out[t] = self._layer(state, t, shared, mine) if shared else mine
            state.out, state.out_of = out, parts
            return out

    def class_key(self, snapshot: MeshSnapshot, node: ProxyNode) -> Hashable:
        """Proxies with the same key get the same shared views for a snapshot."""
        labels = (tuple(sorted(node.labels.items()))
                  if index.of(snapshot).label_sensitive else None)
        return (node.kind == "gateway", node.namespace, labels)

    # --- generations ----------------------------------------------------------------------
    def _advance(self, snapshot: MeshSnapshot) -> None:
        if snapshot is self._snapshot:
            return
        self._snapshot = snapshot
        self._sensitive = index.of(snapshot).label_sensitive
        self._gen += 1
        floor = self._gen - _KEEP
        for key in [k for k, c in self._classes.items() if c.gen < floor]:
            del self._classes[key]
        for key in [k for k, n in self._nodes.items() if n.gen < floor]:
            del self._nodes[key]

    # --- per class ------------------------------------------------------------------------
    def _class(self, snapshot: MeshSnapshot, node: ProxyNode, key: Hashable) -> _Class:
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = _Class(key)
        cls.gen = self._gen
        if cls.snapshot is snapshot:
            return cls
        self.builds["class"] += 1
        moves = _Moves.between(cls.built_from, snapshot)
        cluster_memos: dict[str, _Memo] = {}
        changed = False
        for host, service in snapshot.services.items():
            if "*" in host:
                continue
            memo = self._service_clusters(cls, snapshot, node, service, moves)
            cluster_memos[host] = memo
            changed = changed or memo is not cls.clusters.get(host)
        changed = changed or len(cluster_memos) != len(cls.clusters)
        views: Entries = dict(cls.views)
        if changed or CLUSTER not in views:
            cluster_items: list[tuple[str, Entry]] = []
            eds_items: list[tuple[str, Entry]] = []
            for host in sorted(cluster_memos):
                for name, e in cluster_memos[host].out:
                    if name.startswith("eds:"):
                        eds_items.append((name[4:], e))
                    else:
                        cluster_items.append((name, e))
            views[CLUSTER] = _view(cluster_items, cls.views.get(CLUSTER))
            views[ENDPOINT] = _view(eds_items, cls.views.get(ENDPOINT))
        cls.clusters = cluster_memos
        if not key[0]:  # type: ignore[index]  # sidecars and the mesh proxy: SRDS + RDS
            if moves is None or moves.services or not cls.plan:
                cls.plan = sidecar_plan(snapshot, node)
            route_memos: dict[str, _Memo] = {}
            changed = False
            for service, ports, spellings in cls.plan:
                memo = self._service_routes(cls, snapshot, node, service, ports, spellings,
                                            moves)
                route_memos[service.host] = memo
                changed = changed or memo is not cls.routes.get(service.host)
            changed = changed or len(route_memos) != len(cls.routes)
            inbound = self._inbound_entries(snapshot)
            if changed or inbound != cls.inbound or ROUTE not in views:
                route_items = [route_memos[h].out[0] for h in route_memos]
                scope_items = [e for h in route_memos for e in route_memos[h].out[1:]]
                views[SCOPED_ROUTE] = _view(scope_items, cls.views.get(SCOPED_ROUTE))
                views[ROUTE] = _view(route_items + inbound, cls.views.get(ROUTE))
            cls.routes, cls.inbound = route_memos, inbound
        for t in ORDER:
            views.setdefault(t, EMPTY)
        if any(views[t] is not cls.views.get(t) for t in ORDER):
            for problem in consistency_problems({**views, LISTENER: {}}):
                log.warning("proxy class %s at version %s: %s", key, snapshot.version, problem)
            cls.views = views  # a new object only when a view moved: compared by identity
        cls.snapshot = cls.built_from = snapshot
        return cls

    def _service_clusters(
        self, cls: _Class, snapshot: MeshSnapshot, node: ProxyNode, service: MeshService,
        moves: _Moves | None,
    ) -> _Memo:
        memo = cls.clusters.get(service.host)
        endpoints = snapshot.endpoints.get(service.host, ())
        if memo is not None and moves is not None and not moves.rules and \
                memo.inputs[0] is service and memo.inputs[2] is endpoints:
            return memo  # the same service, endpoints and rules: nothing to look at
        rule = index.destination_rule_named(snapshot, service.host, node)
        inputs = (service, rule, endpoints)
        if memo is not None and memo.inputs == inputs:
            return memo
        self.builds["clusters"] += 1
        out: list[tuple[str, Entry]] = []
        for cluster, assignment in clusters.for_service(
                snapshot, service, rule.obj if rule else None):
            out.append((cluster.name, Entry.of(cluster.name, cluster)))
            if assignment is not None:
                name = assignment.cluster_name
                out.append(("eds:" + name, Entry.of(name, assignment)))
        return _rebuilt(memo, inputs, out)

    def _service_routes(
        self, cls: _Class, snapshot: MeshSnapshot, node: ProxyNode, service: MeshService,
        ports: list[int], spellings: list[str], moves: _Moves | None,
    ) -> _Memo:
        memo = cls.routes.get(service.host)
        if memo is not None and moves is not None and not moves.rules and \
                not moves.services and moves.vs_same(service.host) and \
                memo.inputs[0] is service and \
                memo.inputs[1] == tuple(ports) and memo.inputs[2] == tuple(spellings) and all(
                    snapshot.services.get(h) is svc for h, svc, _ in memo.inputs[4]):
            return memo  # the same service, VirtualService, destinations and rules
        vs = index.mesh_virtual_service(snapshot, service.host)
        hosts = {service.host}
        if vs is not None:
            for http in vs.obj.spec.http:
                dests = [d.destination for d in http.route]
                dests += [m.destination for m in http.mirrors]
                if http.mirror is not None:
                    dests.append(http.mirror)
                hosts.update(index.service(snapshot, d.host, vs.namespace)[0] for d in dests)
        deps = tuple((h, snapshot.services.get(h), index.destination_rule_named(snapshot, h, node))
                     for h in sorted(hosts))
        inputs = (service, tuple(ports), tuple(spellings), vs, deps)
        if memo is not None and memo.inputs == inputs:
            return memo
        self.builds["routes"] += 1
        table = service_route_table(snapshot, node, service, ports, spellings)
        config = route_config(table)
        out = [(config.name, Entry.of(config.name, config)),
               *_entries((s.name, s) for s in scopes(table))]
        return _rebuilt(memo, inputs, out)

    # --- per node ---------------------------------------------------------------------------
    def _node(self, snapshot: MeshSnapshot, node: ProxyNode, state: _Node) -> _Node:
        state.gen = self._gen
        if node.kind == "gateway":  # its routes read the whole snapshot: rebuilt per snapshot
            if state.snapshot is snapshot and state.inputs == node:
                return state
            self.builds["node"] += 1
            own = node_resources(snapshot, node)
            state.own = {t: _view(_entries(own[t].items()), state.own.get(t), OwnView)
                         for t in ORDER if own.get(t)}
            state.inputs, state.snapshot = node, snapshot
            return state
        if state.inputs is not None and (state.inputs is node or state.inputs == node):
            return state
        self.builds["node"] += 1
        own = sidecar_own(node)
        state.own = {t: _view(_entries(own[t].items()), state.own.get(t), OwnView)
                     for t in ORDER if own.get(t)}
        state.inputs = node
        return state

    # --- inbound routes (shared by every sidecar with that container port) -----------------
    def _note_ports(self, node: ProxyNode) -> None:
        """A container port no proxy had before: every sidecar class's routes gain its
        inbound route config (unreferenced route configs are never sent: RDS is asked
        for by name)."""
        ports = http_inbound_ports(node)
        if all(p in self._ports for p in ports):
            return
        self._ports.update(ports)
        for cls in self._classes.values():
            cls.snapshot = None  # rebuilt on next use, from the memos (cheap)

    def _sources(self, snapshot: MeshSnapshot) -> tuple[str, ...]:
        """The snapshot's known telemetry sources, the very same tuple while they stay."""
        if snapshot is not self._sources_of:
            sources = tuple(build_telemetry.known_sources(snapshot))
            if sources != self._known:
                self._known = sources
                self._inbound_routes = {}
            self._sources_of = snapshot
        return self._known

    def _inbound_entries(self, snapshot: MeshSnapshot) -> list[tuple[str, Entry]]:
        """``inbound|<port>||`` for every container port seen, counting the known sources."""
        sources = self._sources(snapshot)
        out = []
        for port in sorted(self._ports):
            entry = self._inbound_routes.get(port)
            if entry is None:
                config = inbound_route(port, sources)
                entry = self._inbound_routes[port] = Entry.of(config.name, config)
            out.append((entry.name, entry))
        return out

    def _layer(self, state: _Node, t: str, shared: EntryView, own: OwnView) -> LayeredView:
        last = state.layered.get(t)
        if last is not None and last[0] is shared and last[1] is own:
            return last[2]
        layered = LayeredView(shared, own)
        state.layered[t] = (shared, own, layered)
        return layered

"""Build each proxy's resources once per *kind of proxy*, and each service once per change.

:func:`meshpilot.xds.build.build_resources` is the reference: a pure function of
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
- per **node**: its listeners and inbound clusters, rebuilt only when the node or the
  set of known telemetry sources changes (gateways: on every snapshot; there are few).

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

from meshpilot.mesh.model import MeshService, MeshSnapshot, ProxyNode
from meshpilot.xds.build import clusters, index, node_resources, route_config, scopes
from meshpilot.xds.build import telemetry as build_telemetry
from meshpilot.xds.build.vhosts import service_route_table, sidecar_plan
from meshpilot.xds.cache import Entry, EntryView, consistency_problems
from meshpilot.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SCOPED_ROUTE

log = logging.getLogger(__name__)

TYPES = (CLUSTER, ENDPOINT, LISTENER, SCOPED_ROUTE, ROUTE)
Entries = dict[str, EntryView]
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
    clusters: dict[str, _Memo] = field(default_factory=dict)  # host -> clusters + CLAs
    routes: dict[str, _Memo] = field(default_factory=dict)  # host -> route config + scopes


@dataclass
class _Node:
    inputs: Any = None
    own: Entries = field(default_factory=dict)
    gen: int = 0
    snapshot: MeshSnapshot | None = None
    merged: dict[str, tuple[EntryView, EntryView, EntryView]] = field(default_factory=dict)
    """type -> (class view, own view, their merge), kept while both stay the same."""


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


def _view(items: Iterable[tuple[str, Entry]], old: EntryView | None) -> EntryView:
    """A view of ``items``; the ``old`` object itself when it holds the very same entries,
    so an unchanged type stays the same object from one snapshot to the next."""
    view = EntryView(items)
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
        self._gen = 0
        self.builds: Counter[str] = Counter()
        """How many times each part was (re)built: ``clusters`` / ``routes`` per service,
        ``node`` per proxy, ``class`` per proxy class and snapshot (for tests and
        benchmarks)."""

    # --- public ---------------------------------------------------------------------------
    def entries(self, snapshot: MeshSnapshot, node: ProxyNode) -> Entries:
        with self._lock:
            self._advance(snapshot)
            cls = self._class(snapshot, node)
            state = self._node(snapshot, node)
            out: Entries = {}
            for t in TYPES:
                shared, own = cls.views.get(t), state.own.get(t)
                if not own:
                    out[t] = shared if shared is not None else EntryView()
                elif not shared:
                    out[t] = own
                else:
                    out[t] = self._merge(state, t, shared, own)
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
        self._gen += 1
        floor = self._gen - _KEEP
        for key in [k for k, c in self._classes.items() if c.gen < floor]:
            del self._classes[key]
        for key in [k for k, n in self._nodes.items() if n.gen < floor]:
            del self._nodes[key]

    # --- per class ------------------------------------------------------------------------
    def _class(self, snapshot: MeshSnapshot, node: ProxyNode) -> _Class:
        key = self.class_key(snapshot, node)
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = _Class(key)
        cls.gen = self._gen
        if cls.snapshot is snapshot:
            return cls
        self.builds["class"] += 1
        cluster_items: list[tuple[str, Entry]] = []
        eds_items: list[tuple[str, Entry]] = []
        kept: dict[str, _Memo] = {}
        for host in sorted(snapshot.services):
            if "*" in host:
                continue
            memo = self._service_clusters(cls, snapshot, node, snapshot.services[host])
            kept[host] = memo
            for name, e in memo.out:
                (eds_items if name.startswith("eds:") else cluster_items).append(
                    (name[4:], e) if name.startswith("eds:") else (name, e))
        cls.clusters = kept
        views: Entries = {
            CLUSTER: _view(cluster_items, cls.views.get(CLUSTER)),
            ENDPOINT: _view(eds_items, cls.views.get(ENDPOINT)),
        }
        if not key[0]:  # type: ignore[index]  # sidecars and the mesh proxy: SRDS + RDS
            route_items: list[tuple[str, Entry]] = []
            scope_items: list[tuple[str, Entry]] = []
            kept = {}
            for service, ports, spellings in sidecar_plan(snapshot, node):
                memo = self._service_routes(cls, snapshot, node, service, ports, spellings)
                kept[service.host] = memo
                route_items.append(memo.out[0])
                scope_items.extend(memo.out[1:])
            cls.routes = kept
            views[SCOPED_ROUTE] = _view(scope_items, cls.views.get(SCOPED_ROUTE))
            views[ROUTE] = _view(route_items, cls.views.get(ROUTE))
        for problem in consistency_problems({**views, LISTENER: {}}):
            log.warning("proxy class %s at version %s: %s", key, snapshot.version, problem)
        cls.views = views
        cls.snapshot = snapshot
        return cls

    def _service_clusters(
        self, cls: _Class, snapshot: MeshSnapshot, node: ProxyNode, service: MeshService
    ) -> _Memo:
        rule = index.destination_rule_named(snapshot, service.host, node)
        inputs = (service, rule, snapshot.endpoints.get(service.host, ()))
        memo = cls.clusters.get(service.host)
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
        ports: list[int], spellings: list[str],
    ) -> _Memo:
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
        memo = cls.routes.get(service.host)
        if memo is not None and memo.inputs == inputs:
            return memo
        self.builds["routes"] += 1
        table = service_route_table(snapshot, node, service, ports, spellings)
        config = route_config(table)
        out = [(config.name, Entry.of(config.name, config)),
               *_entries((s.name, s) for s in scopes(table))]
        return _rebuilt(memo, inputs, out)

    # --- per node ---------------------------------------------------------------------------
    def _node(self, snapshot: MeshSnapshot, node: ProxyNode) -> _Node:
        state = self._nodes.get(node.id)
        if state is None:
            state = self._nodes[node.id] = _Node()
        state.gen = self._gen
        if node.kind == "gateway":  # its routes read the whole snapshot: rebuilt per snapshot
            if state.snapshot is snapshot and state.inputs == node:
                return state
            inputs: Any = node
        else:
            inputs = (node, build_telemetry.known_sources(snapshot))
            if state.inputs is not None and state.inputs == inputs:
                return state
        self.builds["node"] += 1
        own = node_resources(snapshot, node)
        state.own = {t: _view(_entries(own[t].items()), state.own.get(t)) for t in TYPES
                     if own.get(t)}
        state.inputs = inputs
        state.snapshot = snapshot if node.kind == "gateway" else None
        return state

    def _merge(self, state: _Node, t: str, shared: EntryView, own: EntryView) -> EntryView:
        last = state.merged.get(t)
        if last is not None and last[0] is shared and last[1] is own:
            return last[2]
        merged = EntryView(shared)
        merged.update(own)
        state.merged[t] = (shared, own, merged)
        return merged

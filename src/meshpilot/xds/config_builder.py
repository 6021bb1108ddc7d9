"""Build each proxy's config once per *kind of proxy*, and each service once per change.

:func:`meshpilot.xds.translate.build_resources` is the reference: a pure function of
(snapshot, node). Most of what it returns does not depend on the node at all, or only on
its namespace (short-name spellings, DestinationRule tie-breaks) and, when some rule looks
at proxy labels (DestinationRule ``workloadSelector``, VirtualService ``sourceLabels``),
its labels. :class:`ProxyConfigBuilder` returns the same resources, as immutable
resource sets (serialised and hashed once), built:

- per **proxy class** ``(gateway or not, namespace, labels if any rule reads them,
  egress scope, locality if any DestinationRule balances by it)`` and snapshot:
  outbound clusters, their ClusterLoadAssignments, the per-service route
  configurations, the routing scopes, and the inbound route configurations of the
  snapshot's sidecar ports. Every proxy of a class gets the very same set objects, so
  streams also share per-set work (digests, references, diffs, plans);
- per **service**, across snapshots: a service's clusters are rebuilt only when the
  service, its endpoints or the DestinationRule chosen for it change; its route config
  only when the service, its spellings, its VirtualService, or the services and rules
  its routes point at change (inputs are compared by equality, so the memo is keyed by
  inputs, never by time). A weight change in one VirtualService rebuilds one route config;
- per **node**: its listeners and inbound clusters (and the inbound route of a port the
  snapshot does not know), rebuilt only when the node changes; a sidecar's outbound TCP
  listeners also when a service it lists, its VirtualService or a destination's service
  changes (a ``tcp`` route's weights live in the listener: tcp_proxy has no RDS).

A node's own resources are layered over its class's sets (:class:`LayeredSet`), so a
proxy costs a few references, not a copy of the mesh; and a node whose class and own sets
did not change gets the very same config back, at the cost of a look-up. Old entries are
dropped once unused for two snapshots. Thread-safe; no I/O.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from google.protobuf.message import Message

from meshpilot.api.mesh_config import MeshConfig, OutboundMode
from meshpilot.mesh import index, sidecar_ingress
from meshpilot.mesh.model import MeshService, MeshSnapshot, ProxyNode, same_objects
from meshpilot.xds.consistency import class_names, consistency_problems, referenced_names
from meshpilot.xds.patched_config import RouteMemo, patched
from meshpilot.xds.resources import (
    EMPTY_SET,
    CheckedConfig,
    LayeredSet,
    OwnSet,
    PreparedResource,
    ResourceSet,
    SharedSet,
    same_names_as,
)
from meshpilot.xds.sequence import ORDER
from meshpilot.xds.translate import (
    clusters,
    egress,
    envoy_filter,
    failure_reports,
    gateway_own,
    http_inbound_ports,
    inbound_route,
    locality,
    networks,
    retry_on_primary,
    route_config,
    scopes,
    sidecar_own,
    tcp_listeners,
    wildcards,
)
from meshpilot.xds.translate.client_credentials import client_credential_secrets, is_credential
from meshpilot.xds.translate.gateway_tls import secret_index
from meshpilot.xds.translate.secrets import (
    ROOT_SECRET,
    WORKLOAD_SECRET,
    SecretMaterial,
    root_secret,
    workload_secret,
)
from meshpilot.xds.translate.sidecar_tcp import inputs as sidecar_tcp_inputs
from meshpilot.xds.translate.vhosts import (
    Planned,
    known_authorities,
    service_route_table,
    sidecar_plan,
)
from meshpilot.xds.translate.workload_security import InboundSecurity, inbound_security
from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    SECRET,
)

log = logging.getLogger(__name__)

Sets = dict[str, SharedSet]
Config = dict[str, ResourceSet]
Items = list[tuple[str, PreparedResource]]
_KEEP = 2
"""Snapshots (generations) a class or node entry survives unused."""
_AGGREGATE = "|aggregate|"
"""Marks a route memo's retry-on-primary clusters among its scopes (no scope name,
a host spelling, holds ``|``)."""
_CLASS_TYPES = tuple(t for t in ORDER if t != SECRET)
"""Every type a class has a set of (EMPTY_SET where it has none): secrets are never a
class's, a proxy's keys are its own."""


@dataclass
class _Memo:
    inputs: Any
    out: Items


class ClassKey(NamedTuple):
    """What proxies that share one build have in common (see ``class_key``)."""

    gateway: bool
    namespace: str
    labels: tuple[tuple[str, str], ...] | None
    egress_scope: Hashable
    via_gateway: tuple[str, int] | None
    seen_from: locality.CallerKey | None
    outbound_mode: OutboundMode
    network: str = ""  # the named network its proxies are on (split-horizon endpoints)


@dataclass
class _Class:
    key: ClassKey
    snapshot: MeshSnapshot | None = None
    gen: int = 0
    sets: Sets = field(default_factory=dict)
    """Every type -> the class's set (EMPTY_SET where it has none), once built."""
    clusters: dict[str, _Memo] = field(default_factory=dict)  # host -> clusters + CLAs
    routes: dict[str, _Memo] = field(default_factory=dict)  # host -> route config + scopes
    credentials: OwnSet | None = None  # the client credentials its clusters name ...
    credentials_of: tuple[Any, ...] = ()  # ... for these names and Secrets
    built_from: MeshSnapshot | None = None  # the snapshot the memos were last checked on
    plan: list[Planned] = field(default_factory=list)  # sidecar_plan for built_from
    inbound: Items = field(default_factory=list)  # its inbound route configs
    cluster_items: Items = field(default_factory=list)  # its clusters but ...
    aggregates: Items = field(default_factory=list)  # ... the ones its routes ask for
    policy_of: tuple[Any, ...] = ()  # the (scopes, mode, mesh config) its ECDS set is for
    names: tuple[frozenset[str], ...] = ()
    """What consistency reads of its sets (their names, the names they give): the same
    object while all of those are equal."""

    @property
    def gateway(self) -> bool:
        return self.key.gateway

    @property
    def via_gateway(self) -> tuple[str, int] | None:
        """The east-west gateway its proxies reach the control-plane host's pods through
        (none: they reach them directly)."""
        return self.key.via_gateway

    @property
    def seen_from(self) -> locality.CallerKey | None:
        """Where its proxies see the endpoints from, when that matters
        (:func:`locality.caller_key`)."""
        return self.key.seen_from


@dataclass(frozen=True)
class _Moves:
    """What changed between the snapshot a class was built from and the next one, in
    the terms its memos depend on (every object compared by identity: the snapshot
    builder keeps the objects of what did not change)."""

    rules: bool  # any DestinationRule, or PeerAuthentication (it decides endpoints' mTLS)
    services: bool  # any service (added, removed, replaced)
    vs_hosts: frozenset[str] | None  # hosts whose VirtualService may differ; None: any

    @classmethod
    def between(cls, old: MeshSnapshot | None, new: MeshSnapshot) -> _Moves | None:
        if old is None:
            return None
        return cls(
            rules=not same_objects(old.destination_rules, new.destination_rules)
            or old.peer_authentications is not new.peer_authentications
            or old.trust_domain != new.trust_domain,
            services=not (old.services.keys() == new.services.keys() and same_objects(
                tuple(old.services.values()), tuple(new.services.values()))),
            vs_hosts=index.changed_vs_hosts(old.virtual_services, new.virtual_services),
        )

    def vs_same(self, host: str) -> bool:
        return self.vs_hosts is not None and host not in self.vs_hosts


@dataclass
class _Node:
    inputs: Any = None
    own: Sets = field(default_factory=dict)
    gen: int = 0
    snapshot: MeshSnapshot | None = None
    layered: dict[str, tuple[SharedSet, SharedSet, LayeredSet]] = field(default_factory=dict)
    """type -> (class set, own set, the layered set of both), while both stay."""
    out: Config = field(default_factory=dict)
    out_of: tuple[Any, ...] = ()  # the (class sets, own sets) ``out`` was made of
    key: ClassKey | None = None  # its class key ...
    key_of: MeshSnapshot | None = None  # ... for this snapshot
    plain_key: ClassKey | None = None  # its class key while no rule reads labels ...
    plain_of: tuple[Any, ...] | None = None  # ... and the Sidecars stay these ...
    plain_via: tuple[Any, ...] = ()  # ... and its gateway and network stay these
    material: SecretMaterial | None = None  # what its workload secrets were made from
    workload_secrets: OwnSet | None = None  # default, ROOTCA
    served_secrets: OwnSet | None = None  # the certificates a gateway's servers present
    client_secrets: OwnSet | None = None  # the client credentials its class's clusters name
    secrets: OwnSet | None = None  # all of them, as one set ...
    secret_parts: tuple[Any, ...] = ()  # ... made of these
    problems: list[Any] = field(default_factory=list)  # what a gateway last left out
    verdict: tuple[Any, ...] | None = None  # (class names, own sets, problems) last found
    security: InboundSecurity | None = None  # what its inbound side enforces ...
    wild: wildcards.WildScopes = ()  # the wildcard hosts its outbound listener keys
    retrying: bool = False  # its class holds retry-on-primary clusters (counted apart)
    policies_of: tuple[Any, ...] = ()  # ... for these policies of a snapshot
    own_ports: list[int] = field(default_factory=list)
    """Its HTTP container ports that no workload of the snapshot has (their inbound
    routes are its own) ..."""
    ports_of: frozenset[int] | None = None  # ... for these sidecar ports of a snapshot
    listeners: SharedSet | None = None  # its listeners but the outbound TCP ones ...
    tcp_inputs: Any = None  # ... what its outbound TCP listeners were built from ...
    tcp_items: Items = field(default_factory=list)  # ... those listeners ...
    tcp_merged_of: tuple[Any, ...] = ()  # ... and the (listeners, TCP items) merged
    filters_of: tuple[Any, ...] = ()  # the EnvoyFilters ``out`` was patched with


@dataclass(frozen=True)
class _Egress:
    """What the outbound traffic policy adds to every sidecar class, the same whatever the
    class and its mode, for one mesh config (see :mod:`meshpilot.xds.translate.egress`)."""

    config: MeshConfig
    clusters: Items
    routes: Items
    scopes: Items
    filter: tuple[str, PreparedResource]

    @classmethod
    def of(cls, config: MeshConfig) -> _Egress:
        passthrough = egress.passthrough_filter(config)
        return cls(config, _prepared((c.name, c) for c in egress.clusters(config)),
                   _prepared((r.name, r) for r in egress.route_configs()),
                   _prepared((s.name, s) for s in egress.scopes()),
                   (passthrough.name, PreparedResource.of(passthrough.name, passthrough)))


def _prepared(items: Iterable[tuple[str, Message]]) -> Items:
    return [(name, PreparedResource.of(name, msg)) for name, msg in items]


def _rebuilt(memo: _Memo | None, inputs: Any, out: Items) -> _Memo:
    """A new memo for ``out``, keeping the old object of every resource whose bytes did
    not change (so sets holding only those stay the same objects)."""
    if memo is not None:
        old = dict(memo.out)
        out = [(n, o if (o := old.get(n)) is not None and o.version == e.version else e)
               for n, e in out]
    return _Memo(inputs, out)


def _reused(items: Iterable[tuple[str, PreparedResource]], old: SharedSet | None,
            kind: type[SharedSet] = SharedSet) -> SharedSet:
    """A set of ``items``; the ``old`` object itself when it holds the very same
    resources, so an unchanged type stays the same object from one snapshot to the next."""
    new = kind(items)
    if old is None:
        return new
    if len(old) == len(new) and all(old.get(n) is e for n, e in new.items()):
        return old
    same_names_as(new, old)
    return new


def _moved(memos: Mapping[str, _Memo], before: Mapping[str, _Memo]) -> bool:
    return len(memos) != len(before) or any(m is not before.get(h) for h, m in memos.items())


def _route_hosts(snapshot: MeshSnapshot, service: MeshService, namespace: str) -> set[str]:
    """The service's host and every host its VirtualService (as proxies of ``namespace``
    see it, and the delegates it names) routes (``http`` and ``tls``) or mirrors to."""
    hosts = {service.host}
    vs = index.mesh_virtual_service(snapshot, service.host, namespace)
    for named in (vs, *index.delegates_of(snapshot, vs)):
        if named is None:
            continue
        for http in named.obj.spec.http:
            dests = [d.destination for d in http.route]
            dests += [m.destination for m in http.mirrors]
            if http.mirror is not None:
                dests.append(http.mirror)
            hosts.update(index.service(snapshot, d.host, named.namespace)[0] for d in dests)
        for tls in named.obj.spec.tls:  # a tunnel's route (xds.translate.tunnels)
            hosts.update(index.service(snapshot, d.destination.host, named.namespace)[0]
                         for d in tls.route)
    return hosts


class ProxyConfigBuilder:
    """``config_for(snapshot, node)``: what :func:`build_resources` gives, as shared sets.
    The control plane owns one; two control planes share nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._classes: dict[ClassKey, _Class] = {}
        self._nodes: dict[str, _Node] = {}
        self._snapshot: MeshSnapshot | None = None
        self._sensitive = False  # whether some rule of the snapshot reads proxy labels
        self._retargeted = False  # whether some Service port decides an inbound protocol
        self._inbound_sidecars = False  # whether some Sidecar changes an inbound side
        self._canary_targets: frozenset[tuple[str, str]] = frozenset()
        """Whose sidecars report their failures (``translate.failure_reports``)."""
        self._gen = 0
        self._patched_routes = RouteMemo()  # route configs as EnvoyFilters patched them
        self._inbound_routes: dict[tuple[int, tuple[str, ...], str], PreparedResource] = {}
        """(container port, known sources, trust domain) -> its inbound route config."""
        self._roots: tuple[bytes, PreparedResource | None] = (b"", None)
        self._policies: tuple[Any, ...] = ()
        self._egress_items: _Egress | None = None
        """The current snapshot's security policies: the same object while they stay."""
        """The last trust bundle and its ``ROOTCA`` secret, shared by every node."""
        self.builds: Counter[str] = Counter()
        """How many times each part was (re)built: ``clusters`` / ``routes`` per service,
        ``node`` per proxy, ``class`` per proxy class and snapshot (for tests and
        benchmarks)."""

    # --- public ---------------------------------------------------------------------------
    def config_for(self, snapshot: MeshSnapshot, node: ProxyNode,
                   secrets: SecretMaterial | None = None) -> Config:
        """``node``'s config at ``snapshot``; with ``secrets``, its SDS secrets too (the
        very same object again means the same secrets). Its inbound ports speak what
        the Service ports targeting them say (:func:`index.with_service_protocols`)."""
        with self._lock:
            if snapshot is not self._snapshot:
                self._advance(snapshot)
            if self._retargeted:  # some Service port says more than HTTP: a look-up per port
                node = index.with_service_protocols(snapshot, node)
            if self._inbound_sidecars:  # some Sidecar has ingress listeners or a pool
                node = sidecar_ingress.applied(snapshot, node)
            node = failure_reports.marked(node, self._canary_targets)
            state = self._nodes.get(node.id)
            if state is None:
                state = self._nodes[node.id] = _Node()
            key = state.key if state.key_of is snapshot else \
                self._class_key(snapshot, node, state)
            cls = self._classes.get(key)
            if cls is None or cls.snapshot is not snapshot:
                cls = self._class(snapshot, node, key)
            else:
                cls.gen = self._gen
            self._node(snapshot, node, state, bool(cls.aggregates))
            if secrets is not state.material:
                self._secrets(state, secrets)
            if cls.credentials is not state.client_secrets:
                state.client_secrets = cls.credentials
                self._merge_secrets(state)
            parts = (cls.sets, *state.own.values())
            chosen = envoy_filter.selected(snapshot, node)
            if same_objects(parts, state.out_of) and same_objects(chosen, state.filters_of):
                return state.out  # nothing this proxy gets changed: the same sets
            out = CheckedConfig(cls.sets)
            for t, mine in state.own.items():
                if mine:
                    shared = cls.sets.get(t)
                    out[t] = self._layer(state, t, shared, mine) if shared else mine
            out.problems = self._verdict(state, cls, parts[1:], out)
            if chosen:  # EnvoyFilters select it: its config patched, in sets of its own
                out = self._patched(node, out, chosen)
            state.out, state.out_of, state.filters_of = out, parts, chosen
            return out

    def _patched(self, node: ProxyNode, config: CheckedConfig,
                 chosen: tuple[Any, ...]) -> CheckedConfig:
        self.builds["patched"] += 1
        out, problems = patched(config, node, chosen, self._patched_routes)
        for problem in problems:
            log.warning("proxy %s: %s", node.id, problem)
        return out

    @staticmethod
    def _verdict(state: _Node, cls: _Class, own: tuple[Any, ...], config: Config
                 ) -> tuple[str, ...]:
        """The config's consistency problems: those found for the last config of the node
        while its own sets and its class's names are the same objects (consistency is a
        matter of names only: a weight change keeps the verdict), else checked now."""
        last = state.verdict
        if last is not None and last[0] is cls.names and same_objects(last[1], own):
            return last[2]  # type: ignore[no-any-return]
        problems = tuple(consistency_problems(config))
        state.verdict = (cls.names, own, problems)
        return problems

    def class_key(self, snapshot: MeshSnapshot, node: ProxyNode) -> ClassKey:
        """Proxies with the same key get the same shared sets for a snapshot: the same
        kind, namespace, egress scope (their Sidecar's hosts) and, when some rule reads
        them, labels; the same east-west gateway to this host's pods (none here) and
        named network (the endpoints of other networks are seen at their gateways); and,
        when some DestinationRule balances by locality, the same view of the endpoints'
        localities (:func:`locality.caller_key`: their locality, mostly); and the same
        outbound traffic policy mode. A changed Sidecar is a new scope, so a new class,
        built afresh."""
        labels = (tuple(sorted(node.labels.items()))
                  if index.of(snapshot).label_sensitive else None)
        return ClassKey(node.kind == "gateway", node.namespace, labels,
                        index.egress_scope(snapshot, node), node.via_gateway,
                        locality.caller_key(snapshot, node),
                        egress.outbound_mode(snapshot, node), node.network)

    def _class_key(self, snapshot: MeshSnapshot, node: ProxyNode, state: _Node) -> ClassKey:
        if state.key_of is not snapshot:
            via = (node.via_gateway, node.network)  # set by the control plane, may move
            if not self._sensitive and state.plain_key is not None and \
                    state.plain_of is snapshot.sidecars and state.plain_via == via:
                state.key = state.plain_key  # labels do not matter: same class as before
            else:
                state.key = self.class_key(snapshot, node)
                state.plain_key = None if self._sensitive else state.key
                state.plain_of, state.plain_via = snapshot.sidecars, via
            state.key_of = snapshot
        return state.key

    # --- generations ----------------------------------------------------------------------
    def _advance(self, snapshot: MeshSnapshot) -> None:
        self._snapshot = snapshot
        policies = (snapshot.peer_authentications, snapshot.authorization_policies,
                    snapshot.request_authentications, snapshot.trust_domain)
        if not same_objects(policies, self._policies):
            self._policies = policies  # one object while the security policies stay
        self._sensitive = index.of(snapshot).label_sensitive or \
            locality.facts(snapshot).sensitive
        self._retargeted = bool(index.of(snapshot).target_protocols())
        self._inbound_sidecars = sidecar_ingress.has_effect(snapshot.sidecars)
        self._canary_targets = failure_reports.canary_targets(snapshot)
        self._gen += 1
        self._patched_routes.advance()
        floor = self._gen - _KEEP
        for key in [k for k, c in self._classes.items() if c.gen < floor]:
            del self._classes[key]
        for key in [k for k, n in self._nodes.items() if n.gen < floor]:
            del self._nodes[key]

    # --- per class ------------------------------------------------------------------------
    def _class(self, snapshot: MeshSnapshot, node: ProxyNode, key: ClassKey) -> _Class:
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = _Class(key)
        cls.gen = self._gen
        if cls.snapshot is snapshot:
            return cls
        self.builds["class"] += 1
        moves = _Moves.between(cls.built_from, snapshot)
        sets: Sets = dict(cls.sets)
        self._class_clusters(cls, snapshot, node, moves, sets)
        if not cls.gateway:  # sidecars and the mesh proxy: SRDS + RDS, ECDS
            self._class_routes(cls, snapshot, node, moves, sets)
            self._class_policy(cls, snapshot, sets)
        for t in _CLASS_TYPES:
            sets.setdefault(t, EMPTY_SET)
        if any(sets[t] is not cls.sets.get(t) for t in _CLASS_TYPES):
            cls.sets = sets  # a new object only when a set moved: compared by identity
            cls.names = class_names(sets, cls.names)
        self._class_credentials(cls, snapshot, node.namespace)
        cls.snapshot = cls.built_from = snapshot
        return cls

    @staticmethod
    def _class_credentials(cls: _Class, snapshot: MeshSnapshot, namespace: str) -> None:
        """The SDS secrets of the client credentials (DestinationRule ``credentialName``)
        the class's clusters name, from its namespace's Secrets: rebuilt only when those
        names or the snapshot's Secrets change."""
        names = referenced_names({CLUSTER: cls.sets[CLUSTER]}, SECRET)
        inputs = (names, snapshot.secrets)
        if same_objects(inputs, cls.credentials_of):
            return
        cls.credentials_of = inputs
        wanted = [n for n in names if is_credential(n)]
        if not wanted:
            cls.credentials = None
            return
        built, problems = client_credential_secrets(
            secret_index(snapshot.secrets), namespace, wanted)
        for problem in problems:
            log.warning("proxies in %s at mesh version %d: %s; the clusters naming it "
                        "fail their connections until it is there", namespace,
                        snapshot.version, problem)
        cls.credentials = OwnSet(_prepared((s.name, s) for s in built)) if built else None

    def _class_clusters(self, cls: _Class, snapshot: MeshSnapshot, node: ProxyNode,
                        moves: _Moves | None, sets: Sets) -> None:
        memos = {host: self._service_clusters(cls, snapshot, node, service, moves)
                 for host, service in index.visible_services(snapshot, node).items()}
        if _moved(memos, cls.clusters) or CLUSTER not in sets:
            cluster_items: Items = []
            assignment_items: Items = []
            for host in sorted(memos):
                for name, e in memos[host].out:
                    if name.startswith("eds:"):
                        assignment_items.append((name[4:], e))
                    else:
                        cluster_items.append((name, e))
            if not cls.gateway:
                cluster_items += self._egress(snapshot).clusters
            cls.cluster_items = cluster_items
            sets[CLUSTER] = _reused(cluster_items + cls.aggregates, cls.sets.get(CLUSTER))
            sets[ENDPOINT] = _reused(assignment_items, cls.sets.get(ENDPOINT))
        cls.clusters = memos

    def _class_routes(self, cls: _Class, snapshot: MeshSnapshot, node: ProxyNode,
                      moves: _Moves | None, sets: Sets) -> None:
        if moves is None or moves.services or not cls.plan:
            cls.plan = sidecar_plan(snapshot, node)
        memos = {service.host: self._service_routes(cls, snapshot, node, service, ports,
                                                    spellings, moves)
                 for service, ports, spellings in cls.plan}
        inbound = self._inbound(snapshot, snapshot.sidecar_ports)
        if _moved(memos, cls.routes) or inbound != cls.inbound or ROUTE not in sets:
            policy = self._egress(snapshot)
            route_items = [memo.out[0] for memo in memos.values()] + policy.routes
            scope_items = [e for memo in memos.values() for e in memo.out[1:]
                           if not e[0].startswith(_AGGREGATE)] + policy.scopes
            self._aggregates(cls, memos, sets)
            sets[SCOPED_ROUTE] = _reused(scope_items, cls.sets.get(SCOPED_ROUTE))
            sets[ROUTE] = _reused(route_items + inbound, cls.sets.get(ROUTE))
        cls.routes, cls.inbound = memos, inbound

    @staticmethod
    def _aggregates(cls: _Class, memos: Mapping[str, _Memo], sets: Sets) -> None:
        """The retry-on-primary aggregate clusters the class's routes name join its
        clusters (:mod:`~meshpilot.xds.translate.retry_on_primary`); none, and the
        cluster set untouched, while no VirtualService asks for them."""
        found = dict(e for memo in memos.values() for e in memo.out[1:]
                     if e[0].startswith(_AGGREGATE))
        items = [(name[len(_AGGREGATE):], found[name]) for name in sorted(found)]
        if len(items) == len(cls.aggregates) and all(
                a[0] == b[0] and a[1] is b[1] for a, b in zip(items, cls.aggregates, strict=True)):
            return
        cls.aggregates = items
        sets[CLUSTER] = _reused(cls.cluster_items + items, sets.get(CLUSTER))

    def _egress(self, snapshot: MeshSnapshot) -> _Egress:
        """The outbound traffic policy's clusters, route configs, scopes and passthrough
        filter: prepared once per mesh config (so the very same objects in every class)."""
        found = self._egress_items
        if found is None or found.config is not snapshot.mesh_config:
            found = self._egress_items = _Egress.of(snapshot.mesh_config)
        return found

    def _class_policy(self, cls: _Class, snapshot: MeshSnapshot, sets: Sets) -> None:
        """The class's ECDS set: the policy filter (the class's scope keys and mode) and
        the passthrough filter; rebuilt only when the scopes (services coming and going)
        or the mode change, never on a route change."""
        scope_set = sets[SCOPED_ROUTE]
        mode = cls.key.outbound_mode
        inputs = (scope_set, cls.plan, mode, snapshot.mesh_config)  # plan: the keys' ports
        if EXTENSION_CONFIG in cls.sets and same_objects(inputs, cls.policy_of):
            sets[EXTENSION_CONFIG] = cls.sets[EXTENSION_CONFIG]
            return
        lua = egress.policy_filter(known_authorities(cls.plan), mode)
        items = [(lua.name, PreparedResource.of(lua.name, lua)), self._egress(snapshot).filter]
        sets[EXTENSION_CONFIG] = _reused(items, cls.sets.get(EXTENSION_CONFIG))
        cls.policy_of = inputs

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
        seen_from = cls.seen_from
        inputs = (service, rule, endpoints, snapshot.peer_authentications,
                  snapshot.trust_domain, seen_from, cls.via_gateway, cls.key.network,
                  snapshot.mesh_config.dns_resolvers)  # DNS clusters ask them
        if memo is not None and memo.inputs == inputs:
            return memo
        self.builds["clusters"] += 1
        out: Items = []
        caller = locality.caller_of(node) if seen_from is not None else None
        for cluster, assignment in clusters.for_service(
                snapshot, service, rule.obj if rule else None, caller):
            out.append((cluster.name, PreparedResource.of(cluster.name, cluster)))
            if assignment is not None:
                assignment = networks.seen_by(assignment, cls.key.network,
                                              snapshot.mesh_config.networks, cls.via_gateway)
                name = assignment.cluster_name
                out.append(("eds:" + name, PreparedResource.of(name, assignment)))
        return _rebuilt(memo, inputs, out)

    def _service_routes(
        self, cls: _Class, snapshot: MeshSnapshot, node: ProxyNode, service: MeshService,
        ports: list[int], spellings: list[str], moves: _Moves | None,
    ) -> _Memo:
        memo = cls.routes.get(service.host)
        if memo is not None and self._routes_unmoved(memo, snapshot, service, ports,
                                                     spellings, moves):
            return memo  # the same service, VirtualService, destinations and rules
        deps = tuple((h, snapshot.services.get(h),
                      index.destination_rule_named(snapshot, h, node))
                     for h in sorted(_route_hosts(snapshot, service, node.namespace)))
        vs = index.mesh_virtual_service(snapshot, service.host, node.namespace)
        inputs = (service, tuple(ports), tuple(spellings), vs, deps,
                  index.delegates_of(snapshot, vs))
        if memo is not None and memo.inputs == inputs:
            return memo
        self.builds["routes"] += 1
        table = service_route_table(snapshot, node, service, ports, spellings)
        config = route_config(table)
        out = [(config.name, PreparedResource.of(config.name, config)),
               *_prepared((s.name, s) for s in scopes(table)),
               *_prepared((_AGGREGATE + n, retry_on_primary.aggregate_cluster(n))
                          for n in table.aggregates)]
        return _rebuilt(memo, inputs, out)

    @staticmethod
    def _routes_unmoved(memo: _Memo, snapshot: MeshSnapshot, service: MeshService,
                        ports: list[int], spellings: list[str], moves: _Moves | None) -> bool:
        """Whether nothing a service's routes were built from moved (by identity)."""
        if moves is None or moves.rules or moves.services or not moves.vs_same(service.host):
            return False
        built_service, built_ports, built_spellings, _, deps, _ = memo.inputs
        return built_service is service and built_ports == tuple(ports) and \
            built_spellings == tuple(spellings) and all(
                snapshot.services.get(h) is svc for h, svc, _ in deps)

    # --- per node ---------------------------------------------------------------------------
    def _node(self, snapshot: MeshSnapshot, node: ProxyNode, state: _Node,
              retrying: bool) -> None:
        state.gen = self._gen
        if node.kind == "gateway":  # its routes read the whole snapshot: rebuilt per snapshot
            if state.snapshot is not snapshot or state.inputs != node:
                own, problems = gateway_own(snapshot, node)
                if problems != state.problems:  # said once, not on every rebuild
                    for problem in problems:
                        log.warning("gateway %s at mesh version %d leaves out: %s", node.id,
                                    snapshot.version, problem)
                    state.problems = problems
                self._own_sets(state, own)
                state.inputs, state.snapshot = node, snapshot
            return
        self._inbound_side(snapshot, node, state, retrying)
        self._tcp_side(snapshot, node, state)
        if state.ports_of is not snapshot.sidecar_ports:
            state.own_ports = [p for p in http_inbound_ports(node)
                               if p not in snapshot.sidecar_ports]
            state.ports_of = snapshot.sidecar_ports
        if state.own_ports or ROUTE in state.own:  # a port no other sidecar has
            routes = _reused(self._inbound(snapshot, state.own_ports),
                             state.own.get(ROUTE), OwnSet)
            if routes:
                state.own[ROUTE] = routes
            else:
                del state.own[ROUTE]

    def _inbound_side(self, snapshot: MeshSnapshot, node: ProxyNode, state: _Node,
                      retrying: bool) -> None:
        """The node's listeners and inbound clusters: rebuilt when the node changes, or
        when the snapshot's security policies moved and what they make it enforce did,
        or when its class starts or stops holding retry-on-primary clusters
        (``retrying``: its outbound listener then counts who answered their requests)."""
        policies = self._policies
        moved = state.inputs is None or not (state.inputs is node or state.inputs == node) \
            or retrying != state.retrying
        wild = wildcards.scope_rules(snapshot, node)
        if not moved and policies is state.policies_of and wild == state.wild:
            return
        security = inbound_security(snapshot, node)
        state.policies_of = policies
        if moved or security != state.security or wild != state.wild:
            self._own_sets(state, sidecar_own(node, security, wild, retrying=retrying))
            state.inputs, state.security, state.ports_of = node, security, None
            state.wild, state.retrying = wild, retrying

    def _tcp_side(self, snapshot: MeshSnapshot, node: ProxyNode, state: _Node) -> None:
        """Its outbound TCP and TLS listeners (:mod:`~meshpilot.xds.translate.sidecar_tcp`)
        merged into its listeners: rebuilt when what they read changed (a weight change
        of a ``tcp`` route rebuilds those of the pods that list that service only)."""
        if not node.tcp_outbound and not state.tcp_items:
            return
        wanted = sidecar_tcp_inputs(snapshot, node)
        if wanted != state.tcp_inputs:
            self.builds["tcp"] += 1
            old = dict(state.tcp_items)
            state.tcp_items = [
                (n, o if (o := old.get(n)) is not None and o.version == e.version else e)
                for n, e in _prepared((listener.name, listener)
                                      for listener in tcp_listeners(snapshot, node))]
            state.tcp_inputs = wanted
        parts = (state.listeners, state.tcp_items)
        if same_objects(parts, state.tcp_merged_of):
            return
        base = list(state.listeners.items()) if state.listeners else []
        merged = _reused(base + state.tcp_items, state.own.get(LISTENER), OwnSet)
        if merged:
            state.own[LISTENER] = merged
        state.tcp_merged_of = parts

    def _own_sets(self, state: _Node, own: Mapping[str, Mapping[str, Message]]) -> None:
        self.builds["node"] += 1
        state.own = {t: _reused(_prepared(own[t].items()), state.own.get(t), OwnSet)
                     for t in ORDER if own.get(t) and t != SECRET}
        state.listeners = state.own.get(LISTENER)
        served = own.get(SECRET)  # a gateway's certificates for its Gateway servers
        state.served_secrets = _reused(_prepared(served.items()), state.served_secrets,
                                       OwnSet) if served else None
        self._merge_secrets(state)

    def _secrets(self, state: _Node, material: SecretMaterial | None) -> None:
        """The node's workload secrets: the same set while its credential is the same
        object; the roots one resource for every node while the bundle stays."""
        state.material = material
        if material is None:
            state.workload_secrets = None
        else:
            if self._roots[0] != material.roots_pem:
                self._roots = (material.roots_pem, PreparedResource.of(
                    ROOT_SECRET, root_secret(material.roots_pem)))
            state.workload_secrets = OwnSet((
                (WORKLOAD_SECRET,
                 PreparedResource.of(WORKLOAD_SECRET, workload_secret(material))),
                (ROOT_SECRET, self._roots[1])))
        self._merge_secrets(state)

    @staticmethod
    def _merge_secrets(state: _Node) -> None:
        """The node's SECRET set: its workload secrets, the certificates it serves (a
        gateway's) and the client credentials its clusters name, one set object while the
        parts are the same objects. Workload names never clash with the others
        (``kubernetes://<name>``); a credential both served and used as a client one is
        made from the same Secret."""
        parts = (state.workload_secrets, state.served_secrets, state.client_secrets)
        if not same_objects(parts, state.secret_parts):
            present = [p for p in parts if p]
            state.secrets = present[0] if len(present) == 1 else OwnSet(
                dict((n, e) for p in present for n, e in p.items()).items()) \
                if present else None
            state.secret_parts = parts
        if state.secrets:
            state.own[SECRET] = state.secrets
        else:
            state.own.pop(SECRET, None)

    # --- inbound routes (shared by every sidecar with that container port) -----------------
    def _inbound(self, snapshot: MeshSnapshot, ports: Iterable[int]) -> Items:
        """``inbound|<port>||`` for each port, counting the snapshot's known callers; the
        same resource objects while the callers stay."""
        sources = index.of(snapshot).sources
        out: Items = []
        kept: dict[tuple[int, tuple[str, ...], str], PreparedResource] = {}
        for port in sorted(ports):
            key = (port, sources, snapshot.trust_domain)
            entry = self._inbound_routes.get(key)
            if entry is None:
                config = inbound_route(port, sources, snapshot.trust_domain)
                entry = PreparedResource.of(config.name, config)
            kept[key] = entry
            out.append((entry.name, entry))
        self._inbound_routes.update(kept)
        if len(self._inbound_routes) > 4 * (len(kept) + 64):
            self._inbound_routes = kept  # bounded: the ports and callers in use now
        return out

    def _layer(self, state: _Node, t: str, shared: SharedSet, own: SharedSet) -> LayeredSet:
        last = state.layered.get(t)
        if last is not None and last[0] is shared and last[1] is own:
            return last[2]
        layered = LayeredSet(shared, own)  # type: ignore[arg-type]
        state.layered[t] = (shared, own, layered)
        return layered

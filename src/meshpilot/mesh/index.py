"""Look-ups over a snapshot: which rule applies to which host, for which proxy.

Where Istio would need a tie-break (two rules for one host), the more specific host
wins, then the rule in the proxy's namespace, then the service's namespace, then
(namespace, name) order — so the choice never depends on dict or store order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from meshpilot.api.hosts import fqdn, host_matches
from meshpilot.api.networking import Delegate, DestinationRule, Sidecar, VirtualService
from meshpilot.mesh.model import MeshService, MeshSnapshot, Named, ProxyNode, same_objects
from meshpilot.mesh.sources import known_sources

MESH = "mesh"
ROOT_NAMESPACE = "istio-system"
"""Istio's root namespace: its Sidecar without a selector is every namespace's default."""

EgressScope = tuple[tuple[str, str], ...]
"""A Sidecar's egress hosts as (namespace pattern, host pattern), ``.`` resolved: the
services a proxy under it knows. None where no Sidecar applies: every service."""


def exported_to(export_to: Sequence[str], owner: str, namespace: str | None) -> bool:
    """Whether an object of namespace ``owner`` with Istio's ``exportTo`` is visible to
    proxies of ``namespace`` (None: no proxy in particular, e.g. validation): empty or
    ``*`` everywhere, ``.`` its own namespace, ``~`` nowhere, else the namespaces named."""
    if not export_to or namespace is None:
        return True
    return any(e in ("*", namespace) or (e == "." and owner == namespace) for e in export_to)


def _specificity(pattern: str, host: str) -> int:
    return 0 if pattern == host else 1 if pattern != "*" else 2


RuleFacts = tuple[tuple[str, ...], bool]
"""A rule's host patterns, and whether its choice depends on the proxy's labels."""


class SnapshotIndex:
    """Host -> candidate rules, and the known calling workloads, for one snapshot.

    Exact host patterns are looked up in a dict; only wildcard patterns are matched one
    by one, so a look-up costs O(rules for that host + wildcard rules), not O(rules).
    Built from the previous snapshot's index when there is one: a rule that is the very
    same object (the snapshot builder keeps unchanged ones) keeps its parsed facts, and
    the same endpoint tuples keep their callers, so a new index costs a look-up per rule.
    """

    def __init__(self, snapshot: MeshSnapshot, previous: SnapshotIndex | None = None) -> None:
        known = previous._facts if previous is not None else {}
        self._facts: dict[int, tuple[Named[Any], RuleFacts]] = {}
        self._dr_exact: dict[str, list[tuple[str, Named[DestinationRule]]]] = {}
        self._dr_wild: list[tuple[str, Named[DestinationRule]]] = []
        sensitive = False
        for named in snapshot.destination_rules:
            (pattern,), selects = self._rule_facts(named, known)
            sensitive = sensitive or selects
            bucket = self._dr_wild if "*" in pattern else self._dr_exact.setdefault(pattern, [])
            bucket.append((pattern, named))
        self._vs_exact: dict[str, list[tuple[str, Named[VirtualService]]]] = {}
        self._vs_wild: list[tuple[str, Named[VirtualService]]] = []
        self._delegates: dict[tuple[str, str], Named[VirtualService]] = {}
        for named in snapshot.virtual_services:
            if not named.obj.spec.hosts:  # a delegate: reached only through a root's rule
                self._delegates[(named.namespace, named.name)] = named
            patterns, selects = self._rule_facts(named, known)
            sensitive = sensitive or selects
            gateways = named.obj.spec.gateways
            if gateways and MESH not in gateways:
                continue
            for pattern in patterns:
                bucket = (self._vs_wild if "*" in pattern
                          else self._vs_exact.setdefault(pattern, []))
                bucket.append((pattern, named))
        self._mesh_vs: dict[tuple[str, str | None], Named[VirtualService] | None] = {}
        self._services = snapshot.services
        self._endpoint_map = snapshot.endpoints
        self._exported = any(s.export_to for s in snapshot.services.values())
        self._visible: dict[tuple[str, EgressScope | None], Mapping[str, MeshService]] = {}
        self._sidecars = snapshot.sidecars
        sensitive = sensitive or any(_selector(s) for s in snapshot.sidecars)
        self.label_sensitive = sensitive
        """Whether any rule's choice depends on the proxy's labels (DestinationRule
        workloadSelector, VirtualService sourceLabels)."""
        self.derived: dict[Any, Any] = {}
        """Values the layers above derive from this snapshot (keyed by what they are), kept
        as long as the snapshot."""
        self._endpoints = tuple(snapshot.endpoints.values())
        self._sources: tuple[str, ...] | None = None
        self._target: Mapping[tuple[str, int], str] | None = None
        if previous is not None and same_objects(self._endpoints, previous._endpoints):
            self._sources = previous._sources  # the same endpoints: the same callers
            if same_objects(tuple(snapshot.services.values()),
                            tuple(previous._services.values())):
                self._target = previous._target  # ... and services: the same targets

    def _rule_facts(self, named: Named[Any],
                    known: dict[int, tuple[Named[Any], RuleFacts]]) -> RuleFacts:
        hit = known.get(id(named))
        facts = hit[1] if hit is not None and hit[0] is named else _parse_facts(named)
        self._facts[id(named)] = (named, facts)
        return facts

    def rules_for(self, host: str) -> list[tuple[str, Named[DestinationRule]]]:
        exact = self._dr_exact.get(host, [])
        wild = [(p, n) for p, n in self._dr_wild if host_matches(p, host)]
        return exact + wild if wild else exact

    def delegate(self, namespace: str, name: str) -> Named[VirtualService] | None:
        """The VirtualService without hosts called ``name`` in ``namespace``, if any."""
        return self._delegates.get((namespace, name))

    def visible_services(self, namespace: str, scope: EgressScope | None = None
                         ) -> Mapping[str, MeshService]:
        """The services exported to ``namespace`` and within a Sidecar's egress
        ``scope``: the snapshot's own mapping (the same object) while neither narrows."""
        if not self._exported and scope is None:
            return self._services
        found = self._visible.get((namespace, scope))
        if found is None:
            found = self._visible[(namespace, scope)] = {
                h: s for h, s in self._services.items()
                if exported_to(s.export_to, s.namespace, namespace)
                and (scope is None or _in_scope(scope, s))}
        return found

    def target_protocols(self) -> Mapping[tuple[str, int], str]:
        """(workload address, container port) -> the protocol of the Service ports that
        target it, where they say more than the default HTTP and agree (a conflict, or a
        plain HTTP Service port, leaves the port to its own name)."""
        found = self._target
        if found is None:
            seen: dict[tuple[str, int], set[str]] = {}
            for host, eps in self._endpoint_map.items():
                service = self._services.get(host)
                for e in eps if service is not None else ():
                    port = service.port(e.service_port)
                    if port is not None and port.protocol != "HTTP":
                        seen.setdefault((e.address, e.port), set()).add(port.protocol)
            found = self._target = MappingProxyType(
                {k: next(iter(v)) for k, v in seen.items() if len(v) == 1})
        return found

    def sidecar_for(self, namespace: str, labels: Mapping[str, str]) -> Named[Sidecar] | None:
        """The Sidecar that applies to a workload (:func:`pick_sidecar`)."""
        return pick_sidecar(self._sidecars, namespace, labels)

    def mesh_virtual_service(self, host: str, namespace: str | None = None
                             ) -> Named[VirtualService] | None:
        """The mesh VirtualService for ``host`` among those exported to ``namespace``."""
        try:
            return self._mesh_vs[(host, namespace)]
        except KeyError:
            pass
        best: tuple[tuple[int, str, str], Named[VirtualService]] | None = None
        candidates = self._vs_exact.get(host, []) + [
            (p, n) for p, n in self._vs_wild if host_matches(p, host)]
        for pattern, named in candidates:
            if not exported_to(named.obj.spec.export_to, named.namespace, namespace):
                continue
            key = (_specificity(pattern, host), named.namespace, named.name)
            if best is None or key < best[0]:
                best = (key, named)
        out = self._mesh_vs[(host, namespace)] = best[1] if best else None
        return out

    @property
    def sources(self) -> tuple[str, ...]:
        """Every calling workload the snapshot knows, as source ids (sorted)."""
        if self._sources is None:
            self._sources = known_sources(self._endpoints)
        return self._sources


def pick_sidecar(sidecars: Sequence[Named[Sidecar]], namespace: str,
                 labels: Mapping[str, str]) -> Named[Sidecar] | None:
    """The Sidecar of ``sidecars`` that applies to a workload, as Istio picks it: the
    oldest in its namespace whose selector matches, else the oldest without a selector
    there, else the oldest without a selector in the root namespace."""
    own = [s for s in sidecars if s.namespace == namespace]
    for candidates in ([s for s in own if _selector(s) and labels_match(_selector(s), labels)],
                       [s for s in own if not _selector(s)],
                       [s for s in sidecars
                        if s.namespace == ROOT_NAMESPACE and not _selector(s)]):
        if candidates:
            return min(candidates, key=_age)
    return None


def _selector(named: Named[Sidecar]) -> dict[str, str]:
    selector = named.obj.spec.workload_selector
    return dict(selector.labels) if selector else {}


def _age(named: Named[Sidecar]) -> tuple[str, str, str]:
    """Oldest first (an object not stored yet, without a timestamp, last), then name."""
    return (named.obj.metadata.creation_timestamp or "~", named.namespace, named.name)


def _in_scope(scope: EgressScope, service: MeshService) -> bool:
    return any(ns in ("*", service.namespace) and host_matches(host, service.host)
               for ns, host in scope)


def egress_scope(snapshot: MeshSnapshot, node: ProxyNode) -> EgressScope | None:
    """The egress hosts of the Sidecar applying to ``node`` (a sidecar or the mesh proxy;
    a gateway has none), or None when none applies. A Sidecar's hosts are the union of
    its egress listeners' (ports are not told apart here); ``.`` is the workload's own
    namespace, which makes a root-namespace default of ``./*`` mean "each namespace its
    own", as in Istio."""
    if node.kind == "gateway":
        return None
    found = of(snapshot).sidecar_for(node.namespace, node.labels)
    if found is None or not found.obj.spec.egress:
        return None
    pairs: list[tuple[str, str]] = []
    for listener in found.obj.spec.egress:
        for entry in listener.hosts:
            ns, _, host = entry.partition("/")
            pairs.append((node.namespace if ns == "." else ns, host))
    return tuple(dict.fromkeys(pairs))


def _parse_facts(named: Named[Any]) -> RuleFacts:
    spec = named.obj.spec
    if isinstance(named.obj, DestinationRule):
        return ((fqdn(spec.host, named.namespace),),
                bool(spec.workload_selector and spec.workload_selector.match_labels))
    return (tuple(vs_hosts(named)), any(m.source_labels for h in spec.http for m in h.match))


_INDEX_ATTR = "_mesh_index"


def of(snapshot: MeshSnapshot) -> SnapshotIndex:
    """The snapshot's index, built on first use and kept with the (immutable) snapshot."""
    found = snapshot.__dict__.get(_INDEX_ATTR)
    if found is None:
        found = attach(snapshot, SnapshotIndex(snapshot))
    return found  # type: ignore[no-any-return]


def attach(snapshot: MeshSnapshot, index: SnapshotIndex) -> SnapshotIndex:
    """Keep ``index`` with ``snapshot`` (the snapshot builder does, for the index it built
    from the previous one); the snapshot stays immutable in everything it says."""
    object.__setattr__(snapshot, _INDEX_ATTR, index)
    return index


def destination_rule(snapshot: MeshSnapshot, host: str, node: ProxyNode) -> DestinationRule | None:
    """The DestinationRule governing traffic from ``node`` to ``host``, if any."""
    found = destination_rule_named(snapshot, host, node)
    return found.obj if found else None


def destination_rule_named(
    snapshot: MeshSnapshot, host: str, node: ProxyNode
) -> Named[DestinationRule] | None:
    service = snapshot.services.get(host)
    svc_ns = service.namespace if service else ""
    best: tuple[tuple[int, bool, bool, str, str], Named[DestinationRule]] | None = None
    for pattern, named in of(snapshot).rules_for(host):
        if not exported_to(named.obj.spec.export_to, named.namespace, node.namespace):
            continue
        selector = named.obj.spec.workload_selector
        if selector and not labels_match(selector.match_labels, node.labels):
            continue
        key = (
            _specificity(pattern, host),
            named.namespace != node.namespace,
            named.namespace != svc_ns,
            named.namespace,
            named.name,
        )
        if best is None or key < best[0]:
            best = (key, named)
    return best[1] if best else None


def labels_match(selector: dict[str, str] | None, labels: object) -> bool:
    """Whether every selector label is present with the same value (``{}`` matches all)."""
    if not selector:
        return True
    get = getattr(labels, "get", None)
    return get is not None and all(get(k) == v for k, v in selector.items())


def vs_hosts(named: Named[VirtualService]) -> list[str]:
    return [fqdn(h, named.namespace) for h in named.obj.spec.hosts]


def changed_vs_hosts(
    old: Iterable[Named[VirtualService]], new: Iterable[Named[VirtualService]],
) -> frozenset[str] | None:
    """Hosts whose VirtualService may differ between two snapshots' VirtualServices
    (objects compared by identity: an unchanged one is the same object); None when a
    wildcard host or a delegate (no hosts) is involved, so any host may."""
    before = {id(n): n for n in old}
    after = {id(n): n for n in new}
    moved = [n for k, n in before.items() if k not in after]
    moved += [n for k, n in after.items() if k not in before]
    hosts: set[str] = set()
    for named in moved:
        if not named.obj.spec.hosts:  # a delegate: the roots naming it may be anywhere
            return None
        for pattern in vs_hosts(named):
            if "*" in pattern:
                return None
            hosts.add(pattern)
    return frozenset(hosts)


def mesh_virtual_service(snapshot: MeshSnapshot, host: str, namespace: str | None = None
                         ) -> Named[VirtualService] | None:
    """The VirtualService bound to the mesh (sidecars) for ``host``, if any, among those
    exported to proxies of ``namespace`` (any, when None)."""
    return of(snapshot).mesh_virtual_service(host, namespace)


def with_service_protocols(snapshot: MeshSnapshot, node: ProxyNode) -> ProxyNode:
    """``node`` with each inbound port's protocol taken from the Service ports that
    target it, as Istio selects a workload's inbound protocol (the Service port's
    ``appProtocol`` or name, not the container port's name); ``node`` itself when that
    changes nothing, so an unchanged node stays the same object."""
    if node.kind == "gateway" or not node.inbound:
        return node
    protocols = of(snapshot).target_protocols()
    if not protocols or all(protocols.get((node.ip, p.container_port), p.protocol) ==
                            p.protocol for p in node.inbound):
        return node  # the common case, a dict look-up per port: every proxy, every change
    ports = tuple(replace(p, protocol=protocols.get((node.ip, p.container_port), p.protocol))
                  for p in node.inbound)
    return replace(node, inbound=ports)  # type: ignore[arg-type]


def visible_services(snapshot: MeshSnapshot, node: ProxyNode) -> Mapping[str, MeshService]:
    """The services ``node`` knows: those exported to its namespace and within its
    Sidecar's egress hosts; the snapshot's mapping itself when neither narrows."""
    return of(snapshot).visible_services(node.namespace, egress_scope(snapshot, node))


def delegate_target(snapshot: MeshSnapshot, delegate: Delegate, root_namespace: str
                    ) -> Named[VirtualService] | None:
    """The VirtualService a root's ``delegate`` names (its namespace defaults to the
    root's), if it exists, has no hosts and is exported to the root's namespace, as
    Istio requires of a delegate."""
    found = of(snapshot).delegate(delegate.namespace or root_namespace, delegate.name)
    if found is None or not exported_to(found.obj.spec.export_to, found.namespace,
                                        root_namespace):
        return None
    return found


def delegates_of(snapshot: MeshSnapshot, named: Named[VirtualService] | None
                 ) -> tuple[Named[VirtualService] | None, ...]:
    """The delegates a VirtualService's rules name, in rule order (None for one missing):
    what its routes are built from besides itself."""
    if named is None:
        return ()
    return tuple(delegate_target(snapshot, http.delegate, named.namespace)
                 for http in named.obj.spec.http if http.delegate is not None)


def gateway_ref(ref: str, namespace: str) -> str:
    """``name`` or ``ns/name`` as written in a VirtualService → ``ns/name``."""
    return ref if "/" in ref or ref == MESH else f"{namespace}/{ref}"


def gateway_virtual_services(
    snapshot: MeshSnapshot, gateway_refs: Iterable[str], namespace: str | None = None,
) -> Iterator[Named[VirtualService]]:
    """VirtualServices (in namespace/name order) that list one of the gateways, among
    those exported to the gateway proxy's ``namespace`` (any, when None)."""
    wanted = set(gateway_refs)
    for named in sorted(snapshot.virtual_services, key=lambda n: (n.namespace, n.name)):
        refs = {gateway_ref(g, named.namespace) for g in named.obj.spec.gateways}
        if refs & wanted and exported_to(named.obj.spec.export_to, named.namespace,
                                         namespace):
            yield named


def service(snapshot: MeshSnapshot, host: str, namespace: str) -> tuple[str, MeshService | None]:
    """A destination host as written (short or FQDN) → its FQDN and service, if known;
    a name only a wildcard ServiceEntry host covers is that entry's (its most specific
    pattern), as Istio sends it to the entry's cluster."""
    full = fqdn(host, namespace)
    found = snapshot.services.get(full)
    if found is None and "*" not in full:
        covering = wildcard_for(snapshot, full)
        if covering is not None:
            return covering.host, covering
    return full, found


def wildcard_for(snapshot: MeshSnapshot, host: str) -> MeshService | None:
    """The wildcard service (``*.suffix``) covering ``host`` most specifically, if any."""
    wild = of(snapshot).derived.get("wildcard services")
    if wild is None:
        wild = of(snapshot).derived["wildcard services"] = tuple(sorted(
            (s for h, s in snapshot.services.items() if h.startswith("*.")),
            key=lambda s: -len(s.host)))
    return next((s for s in wild if host_matches(s.host, host)), None)


def destination_port(service: MeshService | None, wanted: int | None, listener_port: int) -> int:
    """Istio's destination-port rule, with a fall-back when the port does not exist.

    ``destination.port`` if set, else the service's only port, else the listener
    (vhost) port. If the service lacks that port, the listener port is used when the
    service has it, else the service's first port, so a stale rule still routes.
    """
    if service is None or not service.ports:
        return wanted or listener_port
    if wanted is None and len(service.ports) == 1:
        return service.ports[0].port
    port = wanted or listener_port
    if service.port(port) is not None:
        return port
    if service.port(listener_port) is not None:
        return listener_port
    return service.ports[0].port

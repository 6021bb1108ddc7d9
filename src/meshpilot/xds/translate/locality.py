"""Locality load balancing: endpoints grouped by locality, and the priorities and weights
of those groups as the *calling* proxy sees them (DestinationRule
``trafficPolicy.loadBalancer.localityLbSetting``), the way Istio computes them.

An assignment lists one ``LocalityLbEndpoints`` per locality of the endpoints (a mesh
where nothing has a locality keeps its single group, byte for byte). Then, when the
cluster's effective policy asks for it:

- ``distribute``: the first rule whose ``from`` covers the caller's locality gives each
  group covered by a ``to`` pattern its share of that pattern's weight (in proportion to
  the group's own weight); groups no pattern covers get no endpoints, and the cluster
  balances over localities by weight (``locality_weighted_lb_config``).
- failover (only with ``outlierDetection``: without it nothing would ever leave the first
  priority): ``failoverPriority`` splits the groups by how many of the named labels an
  endpoint shares with the caller, in order; then (or alone) each group's priority is its
  distance from the caller (same subzone, zone, region, elsewhere), with a region outside
  a ``failover`` rule's ``to`` put last. Priorities are then numbered 0.. without gaps.

With no ``localityLbSetting`` the mesh default applies, as Istio's default mesh config
has it: enabled, so a policy with outlier detection fails over by distance. ``enabled:
false`` turns it off. The result depends on the caller only through
:class:`Caller`, which :func:`caller_key` names for sharing: proxies with the same key
get the same assignments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2

from meshpilot.api.networking import (
    DestinationRule,
    LocalityFailover,
    LocalityLoadBalancerSetting,
    PortTrafficPolicy,
    TrafficPolicy,
)
from meshpilot.mesh import index, locality
from meshpilot.mesh.locality import Locality
from meshpilot.mesh.model import Endpoint, MeshSnapshot, ProxyNode

LABEL_VALUE_SEPARATOR = "="
"""A ``failoverPriority`` entry ``label=value`` compares endpoints with that value rather
than with the caller's label (Istio's override form)."""


@dataclass(frozen=True)
class Caller:
    """What of the calling proxy its assignments depend on."""

    locality: Locality = field(default_factory=Locality)
    labels: Mapping[str, str] = field(default_factory=dict)
    """Its labels, with the topology labels of its locality filled in."""


def caller_of(node: ProxyNode) -> Caller:
    where = locality.of_workload(node.locality, node.labels)
    return Caller(locality.parse(where), locality.with_topology(node.labels, where))


def setting(policy: TrafficPolicy | None) -> LocalityLoadBalancerSetting | None:
    """The locality setting in force for a cluster under ``policy`` (None: off)."""
    lb = policy.load_balancer if policy else None
    own = lb.locality_lb_setting if lb else None
    if own is None:  # Istio's default mesh config: locality load balancing on
        return LocalityLoadBalancerSetting(enabled=True)
    return None if own.enabled is False else own


def depends_on_caller(policy: TrafficPolicy | None) -> bool:
    """Whether a cluster's assignment under ``policy`` differs from caller to caller."""
    chosen = setting(policy)
    return chosen is not None and (bool(chosen.distribute) or (
        policy is not None and policy.outlier_detection is not None))


def _policies(rule: DestinationRule) -> Iterable[TrafficPolicy | PortTrafficPolicy]:
    tops = [rule.spec.traffic_policy, *(s.traffic_policy for s in rule.spec.subsets)]
    for top in tops:
        if top is not None:
            yield top
            yield from top.port_level_settings


@dataclass(frozen=True)
class SnapshotFacts:
    """Of one snapshot: whether some cluster's assignment depends on the caller, and the
    labels some ``failoverPriority`` compares."""

    sensitive: bool
    labels: tuple[str, ...]


def facts(snapshot: MeshSnapshot) -> SnapshotFacts:
    """The snapshot's :class:`SnapshotFacts`, worked out once per snapshot."""
    derived = index.of(snapshot).derived
    found = derived.get(SnapshotFacts)
    if found is None:
        sensitive, labels = False, set()
        for named in snapshot.destination_rules:
            for policy in _policies(named.obj):
                if _may_depend(policy):
                    sensitive = True
                    lb = policy.load_balancer
                    priority = lb.locality_lb_setting.failover_priority \
                        if lb and lb.locality_lb_setting else []
                    labels.update(p.split(LABEL_VALUE_SEPARATOR, 1)[0] for p in priority)
        found = derived[SnapshotFacts] = SnapshotFacts(sensitive, tuple(sorted(labels)))
    return found  # type: ignore[no-any-return]


def _may_depend(policy: TrafficPolicy | PortTrafficPolicy) -> bool:
    """A policy that, merged with a subset's or a port's, may make a cluster depend on
    its caller: one with outlier detection or a locality setting."""
    lb = policy.load_balancer
    return policy.outlier_detection is not None or (
        lb is not None and lb.locality_lb_setting is not None)


CallerKey = tuple[str, bool, tuple[str, ...]]


def caller_key(snapshot: MeshSnapshot, node: ProxyNode) -> CallerKey | None:
    """What of ``node`` its assignments depend on at ``snapshot``: its locality, whether
    it has labels at all, and the values of the labels some ``failoverPriority`` names;
    None where nothing does (every proxy sees the same assignments)."""
    known = facts(snapshot)
    if not known.sensitive:
        return None
    caller = caller_of(node)
    return (str(caller.locality), bool(caller.labels),
            tuple(caller.labels.get(k, "") for k in known.labels))


# --- the assignment ------------------------------------------------------------------------


def groups(endpoints: Sequence[Endpoint]) -> list[tuple[str, list[Endpoint]]]:
    """The endpoints by locality, localities in order ("" first), each in given order."""
    out: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        out.setdefault(e.locality, []).append(e)
    return sorted(out.items())


def _lb_endpoint(e: Endpoint) -> ec.LbEndpoint:
    return ec.LbEndpoint(
        endpoint=ec.Endpoint(address={"socket_address": {"address": e.address,
                                                          "port_value": e.port}}),
        load_balancing_weight={"value": max(e.weight, 1)})


def assignment(cluster: str, endpoints: Sequence[Endpoint],
               mark: Callable[[Endpoint, ec.LbEndpoint], None] = lambda e, lb: None,
               ) -> tuple[endpoint_pb2.ClusterLoadAssignment, list[list[Endpoint]]]:
    """The assignment of ``endpoints``, one group per locality (``mark`` may add to each
    endpoint's entry), and the endpoints of each group in the same order."""
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster)
    members: list[list[Endpoint]] = []
    for where, chosen in groups(endpoints):
        group = out.endpoints.add()
        if where:
            region, zone, subzone = locality.parse(where)
            group.locality.region, group.locality.zone = region, zone
            group.locality.sub_zone = subzone
        for e in chosen:
            lb = _lb_endpoint(e)
            mark(e, lb)
            group.lb_endpoints.append(lb)
        members.append(chosen)
    return out, members


def apply(out: endpoint_pb2.ClusterLoadAssignment, members: list[list[Endpoint]],
          caller: Caller, policy: TrafficPolicy | None) -> bool:
    """Give ``out``'s groups the priorities and weights ``policy`` asks for, as ``caller``
    sees them; True when the cluster must balance over localities by weight."""
    chosen = setting(policy)
    if chosen is None:
        return False
    if chosen.distribute:
        _distribute(out, caller, chosen)
        return True
    if policy is None or policy.outlier_detection is None:
        return False
    if not chosen.failover_priority:
        _by_distance(out, caller, chosen.failover)
        return False
    if caller.labels:  # a caller with no labels at all has nothing to compare
        _by_labels(out, members, caller, chosen.failover_priority)
    if chosen.failover:  # given with failoverPriority: the regions order within it
        _by_distance(out, caller, chosen.failover)
    return False


def _locality_of(group: ec.LocalityLbEndpoints) -> Locality:
    return Locality(group.locality.region, group.locality.zone, group.locality.sub_zone)


def _distribute(out: endpoint_pb2.ClusterLoadAssignment, caller: Caller,
                chosen: LocalityLoadBalancerSetting) -> None:
    for group in out.endpoints:  # every locality weighs what its endpoints weigh
        group.load_balancing_weight.value = sum(
            lb.load_balancing_weight.value for lb in group.lb_endpoints)
    rule = next((d for d in chosen.distribute if locality.covered(caller.locality, d.from_)),
                None)
    if rule is None:
        return
    left = set(range(len(out.endpoints)))
    for pattern, weight in sorted(rule.to.items()):
        hit = [i for i in sorted(left) if locality.covered(_locality_of(out.endpoints[i]),
                                                           pattern)]
        left.difference_update(hit)
        total = sum(out.endpoints[i].load_balancing_weight.value for i in hit)
        for i in hit:
            share = out.endpoints[i].load_balancing_weight.value * weight / total
            if share > 0:
                out.endpoints[i].load_balancing_weight.value = math.ceil(share)
    for i in left:
        del out.endpoints[i].lb_endpoints[:]


def _by_distance(out: endpoint_pb2.ClusterLoadAssignment, caller: Caller,
                 failover: Sequence[LocalityFailover]) -> None:
    for group in out.endpoints:
        where = _locality_of(group)
        far = locality.priority(caller.locality, where)
        if far == 3:
            rule = next((f for f in failover if f.from_ == caller.locality.region), None)
            if rule is not None and where.region != rule.to:
                far = 4
        group.priority = group.priority * 5 + far
    _compact(out.endpoints)


def _label_rank(caller: Caller, labels: Mapping[str, str], names: Sequence[str]) -> int:
    """0 when the endpoint agrees with the caller on every label named; else the number
    of names from the first it disagrees on (the first disagreeing ranks last)."""
    for j, name in enumerate(names):
        label, _, value = name.partition(LABEL_VALUE_SEPARATOR)
        wanted = value if value else caller.labels.get(label, "")
        if labels.get(label, "") != wanted:
            return len(names) - j
    return 0


def _by_labels(out: endpoint_pb2.ClusterLoadAssignment, members: list[list[Endpoint]],
               caller: Caller, names: Sequence[str]) -> None:
    split: list[ec.LocalityLbEndpoints] = []
    for group, chosen in zip(out.endpoints, members, strict=True):
        ranks: dict[int, list[int]] = {}
        for i, e in enumerate(chosen):
            labels = locality.with_topology(e.labels, e.locality)
            ranks.setdefault(_label_rank(caller, labels, names), []).append(i)
        for rank in sorted(ranks):
            part = ec.LocalityLbEndpoints()
            part.CopyFrom(group)
            del part.lb_endpoints[:]
            part.lb_endpoints.extend(group.lb_endpoints[i] for i in ranks[rank])
            part.priority = rank
            part.load_balancing_weight.value = sum(
                lb.load_balancing_weight.value for lb in part.lb_endpoints)
            split.append(part)
    del out.endpoints[:]
    out.endpoints.extend(split)
    _compact(out.endpoints)


def _compact(groups: Sequence[ec.LocalityLbEndpoints]) -> None:
    """Priorities renumbered 0, 1, ... in order, without gaps (Envoy's requirement)."""
    order = {p: i for i, p in enumerate(sorted({g.priority for g in groups}))}
    for g in groups:
        g.priority = order[g.priority]

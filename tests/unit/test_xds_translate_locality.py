"""Locality load balancing in the translation: endpoints grouped by locality, priorities
and weights as the calling proxy sees them.

Each case follows Istio's behaviour as its task pages "Locality failover" and "Locality
weighted distribution" describe it, and as its load balancer code numbers priorities
(same subzone 0, same zone 1, same region 2, elsewhere 3, outside a failover target 4,
then renumbered without gaps; ``failoverPriority`` ranks by the first label that differs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import yaml
from envoy.config.endpoint.v3 import endpoint_pb2

from meshpilot.api.networking import DestinationRule, HTTPRetry
from meshpilot.mesh.locality import from_labels, parse
from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot, Named, ProxyNode, ServicePort
from meshpilot.proxy.bootstrap import bootstrap
from meshpilot.xds.config_builder import ProxyConfigBuilder
from meshpilot.xds.translate import TYPE_CLUSTER, TYPE_ENDPOINT, build_resources
from meshpilot.xds.translate.routes import retry_policy
from meshpilot.xds.types import ENDPOINT

HOST = "myapp.default.svc.cluster.local"
CLUSTER = f"outbound|8080||{HOST}"
SERVICE = MeshService(HOST, "myapp", "default", (ServicePort(8080, "http"),))


def ep(address: str, where: str, **labels: str) -> Endpoint:
    return Endpoint(HOST, 8080, address, 8080, labels=labels, workload="myapp",
                    locality=where)


ENDPOINTS = (
    ep("127.20.0.1", "r1/z1/s1"),
    ep("127.20.0.2", "r1/z1/s2"),
    ep("127.20.0.3", "r1/z2"),
    ep("127.20.0.4", "r2/z1"),
    ep("127.20.0.5", "r3/z1"),
)


def rule(policy: str) -> Named[DestinationRule]:
    body = yaml.safe_load(f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: myapp, namespace: default}}
spec:
  host: myapp
  trafficPolicy:
{policy}
""")
    obj = DestinationRule.model_validate(body)
    return Named("default", "myapp", obj)


OUTLIERS = """
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}
"""


def snapshot(*rules: Named[DestinationRule], endpoints: tuple[Endpoint, ...] = ENDPOINTS
             ) -> MeshSnapshot:
    return MeshSnapshot(version=1, services={HOST: SERVICE}, endpoints={HOST: endpoints},
                        destination_rules=rules)


def caller(where: str = "r1/z1/s1", **labels: str) -> ProxyNode:
    return ProxyNode(id=f"sidecar~{where}", kind="sidecar", namespace="default",
                     ip="127.10.0.9", labels=labels, locality=where)


def by_priority(snap: MeshSnapshot, node: ProxyNode) -> dict[int, list[str]]:
    cla: endpoint_pb2.ClusterLoadAssignment = build_resources(snap, node)[TYPE_ENDPOINT][CLUSTER]
    out: dict[int, list[str]] = {}
    for group in cla.endpoints:
        out.setdefault(group.priority, []).extend(
            lb.endpoint.address.socket_address.address for lb in group.lb_endpoints)
    return {p: sorted(a) for p, a in sorted(out.items())}


def test_locality_read_from_labels_as_istio_reads_a_pods() -> None:
    assert from_labels({"topology.kubernetes.io/region": "us-east",
                        "topology.kubernetes.io/zone": "us-east-1a",
                        "topology.istio.io/subzone": "rack7"}) == "us-east/us-east-1a/rack7"
    assert from_labels({"topology.kubernetes.io/region": "us-east"}) == "us-east"
    # istio-locality (dots: a label value has no '/') wins over the topology labels
    assert from_labels({"istio-locality": "eu.eu-1b",
                        "topology.kubernetes.io/region": "us-east"}) == "eu/eu-1b"
    assert from_labels({"app": "x"}) == ""
    assert parse("r/z") == ("r", "z", "")


def test_endpoints_are_grouped_by_locality_with_the_locality_set() -> None:
    cla = build_resources(snapshot(), caller())[TYPE_ENDPOINT][CLUSTER]
    assert [(g.locality.region, g.locality.zone, g.locality.sub_zone) for g in cla.endpoints] \
        == [("r1", "z1", "s1"), ("r1", "z1", "s2"), ("r1", "z2", ""), ("r2", "z1", ""),
            ("r3", "z1", "")]
    assert {g.priority for g in cla.endpoints} == {0}  # no rule: no priorities


def test_no_locality_anywhere_keeps_one_group_without_a_locality() -> None:
    plain = tuple(ep(f"127.20.0.{i}", "") for i in (1, 2))
    cla = build_resources(snapshot(rule(OUTLIERS), endpoints=plain),
                          caller(""))[TYPE_ENDPOINT][CLUSTER]
    assert len(cla.endpoints) == 1
    assert not cla.endpoints[0].HasField("locality")
    assert cla.endpoints[0].priority == 0


def test_failover_by_distance_needs_outlier_detection() -> None:
    """Locality failover: with outlier detection, nearer localities come first (the
    mesh default enables it); without, Envoy could never leave the first priority, so
    Istio leaves the priorities alone."""
    assert by_priority(snapshot(rule(OUTLIERS)), caller()) == {
        0: ["127.20.0.1"], 1: ["127.20.0.2"], 2: ["127.20.0.3"],
        3: ["127.20.0.4", "127.20.0.5"]}
    without = rule("    loadBalancer: {localityLbSetting: {enabled: true}}")
    assert by_priority(snapshot(without), caller()) == {0: [f"127.20.0.{i}" for i in range(1, 6)]}
    off = rule("    loadBalancer: {localityLbSetting: {enabled: false}}\n" + OUTLIERS)
    assert set(by_priority(snapshot(off), caller())) == {0}


def test_failover_region_rule_puts_other_regions_last() -> None:
    """Locality failover's ``failover: [{from: r1, to: r3}]``: r3 is tried before r2."""
    policy = """
    loadBalancer:
      localityLbSetting:
        failover: [{from: r1, to: r3}]
""" + OUTLIERS
    got = by_priority(snapshot(rule(policy)), caller())
    assert got[3] == ["127.20.0.5"] and got[4] == ["127.20.0.4"]
    # a caller in another region reads its own distances; the rule is not its
    assert by_priority(snapshot(rule(policy)), caller("r2/z1"))[0] == ["127.20.0.4"]


def test_distribute_weighs_localities_for_callers_it_covers() -> None:
    """Locality weighted distribution: from r1/z1/* 80% to r1/z1, 20% to r1/z2; the rest
    get nothing, and the cluster balances over localities by weight."""
    policy = """
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: r1/z1/*
          to: {"r1/z1/*": 80, "r1/z2/*": 20}
"""
    snap = snapshot(rule(policy))
    res = build_resources(snap, caller())
    cla = res[TYPE_ENDPOINT][CLUSTER]
    weights = {(g.locality.region, g.locality.zone, g.locality.sub_zone):
               (g.load_balancing_weight.value, len(g.lb_endpoints)) for g in cla.endpoints}
    # the two subzones of r1/z1 share 80 by their weights; r2 and r3 are emptied
    assert weights == {("r1", "z1", "s1"): (40, 1), ("r1", "z1", "s2"): (40, 1),
                       ("r1", "z2", ""): (20, 1), ("r2", "z1", ""): (1, 0),
                       ("r3", "z1", ""): (1, 0)}
    assert res[TYPE_CLUSTER][CLUSTER].common_lb_config.HasField("locality_weighted_lb_config")
    # a caller the rule does not cover keeps every locality at its own weight
    other = build_resources(snap, caller("r2/z1"))[TYPE_ENDPOINT][CLUSTER]
    assert all(len(g.lb_endpoints) == 1 for g in other.endpoints)


def test_failover_priority_ranks_by_the_first_label_that_differs() -> None:
    """failoverPriority [network, region]: all the same first, then the same network,
    then the rest (and the ``label=value`` form compares with that value)."""
    endpoints = (
        ep("127.20.0.1", "r1/z1", net="n1"),
        ep("127.20.0.2", "r2/z1", net="n1"),
        ep("127.20.0.3", "r1/z1", net="n2"),
    )
    policy = """
    loadBalancer:
      localityLbSetting:
        failoverPriority: [net, topology.kubernetes.io/region]
""" + OUTLIERS
    snap = snapshot(rule(policy), endpoints=endpoints)
    assert by_priority(snap, caller("r1/z1", net="n1")) == {
        0: ["127.20.0.1"], 1: ["127.20.0.2"], 2: ["127.20.0.3"]}
    override = policy.replace("[net,", "[net=n2,")
    assert by_priority(snapshot(rule(override), endpoints=endpoints),
                       caller("r1/z1", net="n1"))[0] == ["127.20.0.3"]


def test_proxies_share_assignments_per_locality_only_when_a_rule_reads_it() -> None:
    builder = ProxyConfigBuilder()
    plain = snapshot()
    a1, a2 = caller("r1/z1/s1"), replace(caller("r1/z1/s1"), id="other-a")
    b = caller("r2/z1")
    sets = [builder.config_for(plain, n)[ENDPOINT] for n in (a1, a2, b)]
    assert sets[0] is sets[1] is sets[2]  # nothing reads localities: one class for all

    failover = snapshot(rule(OUTLIERS))
    got: list[Any] = [builder.config_for(failover, n)[ENDPOINT] for n in (a1, a2, b)]
    assert got[0] is got[1]  # the same locality: the same assignments
    assert got[0].get(CLUSTER).version != got[2].get(CLUSTER).version
    for node in (a1, b):  # what the builder serves is what the reference gives
        reference = build_resources(failover, node)[TYPE_ENDPOINT][CLUSTER]
        served = builder.config_for(failover, node)[ENDPOINT].get(CLUSTER)
        assert served.message == reference


def test_dns_entry_endpoints_are_grouped_and_prioritised_too() -> None:
    """A ServiceEntry resolved by DNS lists its endpoints in the cluster itself; Istio
    applies the same locality priorities there."""
    ext = "api.example.com"
    service = MeshService(ext, ext, "default", (ServicePort(80, "http"),),
                          origin="ServiceEntry", resolution="DNS", location="MESH_EXTERNAL")
    named = (Endpoint(ext, 80, "near.example.net", 80, workload="n", locality="r1/z1"),
             Endpoint(ext, 80, "far.example.net", 80, workload="f", locality="r2/z1"))
    dr = rule(OUTLIERS).obj.model_copy(deep=True)
    dr.spec.host = ext
    snap = MeshSnapshot(version=1, services={ext: service}, endpoints={ext: named},
                        destination_rules=(Named("default", "ext", dr),))
    cluster = build_resources(snap, caller("r1/z1"))[TYPE_CLUSTER][f"outbound|80||{ext}"]
    assert cluster.type == cluster.STRICT_DNS
    got = {g.locality.region: g.priority for g in cluster.load_assignment.endpoints}
    assert got == {"r1": 0, "r2": 1}


def test_retry_remote_localities_moves_retries_to_other_priorities() -> None:
    policy = retry_policy(HTTPRetry(attempts=2, retry_remote_localities=True))
    assert policy is not None
    assert policy.retry_priority.name == "envoy.retry_priorities.previous_priorities"
    plain = retry_policy(HTTPRetry(attempts=2))
    assert plain is not None and not plain.HasField("retry_priority")


def test_a_proxy_tells_its_locality_in_its_envoy_node() -> None:
    """Istio's sidecars carry their locality in the Envoy node (``node.locality``): from
    the pod's labels here, or as the node names it (a joined host's entry)."""
    labelled = ProxyNode(id="p", kind="sidecar", namespace="default", ip="127.10.0.5",
                         labels={"topology.kubernetes.io/region": "r1",
                                 "topology.kubernetes.io/zone": "z2"})
    doc = bootstrap(labelled, xds_host="127.0.0.1", xds_port=15010)
    assert doc["node"]["locality"] == {"region": "r1", "zone": "z2", "sub_zone": ""}
    named = replace(labelled, labels={}, locality="eu/west/rack1")
    assert bootstrap(named, xds_host="127.0.0.1", xds_port=15010)["node"]["locality"] == {
        "region": "eu", "zone": "west", "sub_zone": "rack1"}
    nowhere = replace(labelled, labels={})
    assert "locality" not in bootstrap(nowhere, xds_host="127.0.0.1", xds_port=15010)["node"]


def test_failover_priority_with_failover_orders_regions_within_each_rank() -> None:
    """Both given (Istio: the label ranks first, then the regions within each, the
    ``failover`` target before other regions)."""
    endpoints = (
        ep("127.20.0.1", "r1/z1", net="n1"),
        ep("127.20.0.2", "r2/z1", net="n1"),
        ep("127.20.0.3", "r3/z1", net="n1"),
        ep("127.20.0.4", "r1/z1", net="n2"),
    )
    policy = """
    loadBalancer:
      localityLbSetting:
        failoverPriority: [net]
        failover: [{from: r1, to: r3}]
""" + OUTLIERS
    snap = snapshot(rule(policy), endpoints=endpoints)
    assert by_priority(snap, caller("r1/z1", net="n1")) == {
        0: ["127.20.0.1"], 1: ["127.20.0.3"], 2: ["127.20.0.2"], 3: ["127.20.0.4"]}

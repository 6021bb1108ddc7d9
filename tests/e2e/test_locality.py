"""Locality load balancing end to end: pods labelled with their region and zone, a caller
pod in one locality, real Envoys choosing endpoints by the priorities and weights the
control plane gives them as that caller sees them.

Each case follows one of Istio's task pages (written anew from their behaviour):
"Locality failover" (the nearest endpoints take all traffic; when they fail, outlier
detection ejects them and traffic moves to the region ``failover`` names, not to any
other) and "Locality weighted distribution" (``distribute`` sends a caller's requests to
localities by weight).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from tests.builders import demo_deployment
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh, pod_of
from tests.e2e.scenario import Given, When
from tests.e2e.security import as_pod

Body = dict[str, Any]
REGION, ZONE = "topology.kubernetes.io/region", "topology.kubernetes.io/zone"


def placed(name: str, version: str, region: str, zone: str, *, app: str = "myapp",
           args: str = "") -> Body:
    """Demo app pods of ``name`` in ``region``/``zone`` (the topology labels Istio reads
    a pod's locality from)."""
    body = demo_deployment(name, version, app=app, args=args)
    body["spec"]["template"]["metadata"]["labels"].update({REGION: region, ZONE: zone})
    return body


def caller() -> Body:
    """The calling workload (Istio's sleep), in region1/zone1."""
    return placed("sleep", "v1", "region1", "zone1", app="sleep")


def answered_by(client: httpx.Client, n: int) -> list[tuple[int, str]]:
    return [(r.status_code, pod_of(r)) for r in (client.get(URL) for _ in range(n))]


def deployment_of(pod: str) -> str:
    return pod.rsplit("-", 2)[0]


def test_locality_failover_moves_traffic_to_the_failover_region(
        mesh: Mesh, given: Given, when: When) -> None:
    """Locality failover: caller in region1/zone1; helloworld in region1/zone1, region2
    and region3, ``failover: region1 -> region3``. All traffic stays in region1/zone1;
    once its endpoint fails and is ejected, traffic goes to region3, never to region2."""
    rule = myapp.subsets("a", "b", "c", traffic_policy="""
        loadBalancer:
          simple: ROUND_ROBIN
          localityLbSetting:
            enabled: true
            failover: [{from: region1, to: region3}]
        outlierDetection:
          consecutive5xxErrors: 1
          interval: 1s
          baseEjectionTime: 1m
          maxEjectionPercent: 100
        """)
    given.applied(caller(), myapp.service(), rule,
                  placed("myapp-a", "a", "region1", "zone1"),
                  placed("myapp-b", "b", "region2", "zone3"),
                  placed("myapp-c", "c", "region3", "zone4"))
    with as_pod(mesh, "default", "sleep") as sleep:
        near = answered_by(sleep, 20)
        assert {deployment_of(p) for _, p in near} == {"myapp-a"}, near
        assert {code for code, _ in near} == {200}

        # the region1/zone1 endpoint is replaced by one failing every request
        old = {p for _, p in near}
        when.apply(placed("myapp-a", "a", "region1", "zone1", args="--error-rate=1.0"))
        when.until(lambda: {p["metadata"]["name"] for p in mesh.pods_of("myapp-a")}
                   .isdisjoint(old), 60, "the old myapp-a pod gone")
        when.converges()
        after = answered_by(sleep, 30)
    failed = [p for code, p in after if code == 500]
    assert failed and {deployment_of(p) for p in failed} == {"myapp-a"}, after
    # ejected after its first failure: every later request is served by region3
    served = after[after.index(next(a for a in after if a[0] == 500)) + 1:]
    assert len(served) >= 25, after
    assert {code for code, _ in served} == {200}, after
    assert {deployment_of(p) for _, p in served} == {"myapp-c"}, after


def test_locality_weighted_distribution_splits_by_weight(mesh: Mesh, given: Given) -> None:
    """Locality weighted distribution: from region1/zone1, 80% to region1/zone1 and 20%
    to region1/zone2, counted over real requests; a caller elsewhere (the mesh proxy,
    with no locality) is not covered and reaches both as usual."""
    rule = myapp.subsets("a", "b", traffic_policy="""
        loadBalancer:
          localityLbSetting:
            enabled: true
            distribute:
            - from: region1/zone1/*
              to:
                "region1/zone1/*": 80
                "region1/zone2/*": 20
        """)
    given.applied(caller(), myapp.service(), rule,
                  placed("myapp-a", "a", "region1", "zone1"),
                  placed("myapp-b", "b", "region1", "zone2"))
    with as_pod(mesh, "default", "sleep") as sleep:
        counted = Counter(deployment_of(p) for code, p in answered_by(sleep, 200)
                          if code == 200)
    assert sum(counted.values()) == 200, counted
    # binomial(200, 0.2) for zone2: mean 40, sd 5.7; the bands are 4 sd wide each side
    assert 17 <= counted["myapp-b"] <= 63, counted
    assert counted["myapp-a"] == 200 - counted["myapp-b"]
    both = Counter(deployment_of(pod_of(mesh.http.get(URL))) for _ in range(20))
    assert set(both) == {"myapp-a", "myapp-b"}, both

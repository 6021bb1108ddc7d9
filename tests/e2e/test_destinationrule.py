"""DestinationRule end to end: subsets with their own policy, load balancing, circuit
breaking and outlier detection, observed on real requests through the mesh proxy."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from tests.builders import demo_deployment
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh, pod_of
from tests.e2e.scenario import Given, When
from tests.e2e.traffic import concurrent_get

USERS = [f"user-{i}" for i in range(12)]
SLOW = "http://myapp:8080/delay/500"


def _hash_rule(key: str) -> dict[str, object]:
    return myapp.subsets("v1", traffic_policy=f"loadBalancer:\n  consistentHash:\n    {key}\n")


def _sticky(mapping: dict[str, Counter[str]]) -> None:
    """Every user always lands on one pod; the users together use more than one pod."""
    for user, pods in mapping.items():
        assert len(pods) == 1, f"{user} was spread over {dict(pods)}"
        assert next(iter(pods)).startswith("myapp-v1-"), pods
    used = {next(iter(p)) for p in mapping.values()}
    assert len(used) >= 2, f"every user hashed to the same pod: {mapping}"


def given_three_pods(mesh: Mesh, given: Given, rule: dict[str, object]) -> None:
    """Given three pods of myapp v1 behind ``rule``."""
    given.applied(myapp.version("v1", replicas=3), myapp.service(), rule)
    assert len(mesh.pods_of("myapp-v1")) == 3


@pytest.mark.parametrize("kind", ["header", "query", "cookie"])
def test_consistent_hash_keeps_a_key_on_one_pod(mesh: Mesh, given: Given, kind: str) -> None:
    key = {
        "header": "httpHeaderName: x-user",
        "query": "httpQueryParameterName: user",
        "cookie": "httpCookie: {name: session, ttl: 60s}",
    }[kind]
    given_three_pods(mesh, given, _hash_rule(key))

    mapping: dict[str, Counter[str]] = {}
    for user in USERS:
        if kind == "header":
            mapping[user] = mesh.by_pod(URL, 5, headers={"x-user": user})
        elif kind == "query":
            mapping[user] = mesh.by_pod(URL + f"?user={user}", 5)
        else:
            with mesh.client() as client:
                client.cookies.set("session", user)
                mapping[user] = Counter(pod_of(client.get(URL)) for _ in range(5))
    _sticky(mapping)

    if kind == "cookie":
        # No cookie yet and a ttl: Envoy makes one up, and the client that keeps it sticks.
        with mesh.client() as client:
            first = client.get(URL)
            assert first.status_code == 200
            assert "session=" in first.headers.get("set-cookie", ""), first.headers
            assert {pod_of(client.get(URL)) for _ in range(5)} == {pod_of(first)}


def test_consistent_hash_by_source_ip(mesh: Mesh, given: Given) -> None:
    given_three_pods(mesh, given, _hash_rule("useSourceIp: true"))
    mapping: dict[str, Counter[str]] = {}
    for i in range(12):
        source = f"127.0.0.{40 + i}"
        # httpx ignores local_address when it uses a proxy: talk to the mesh proxy as a
        # plain server instead (origin-form request; Envoy routes on the Host header).
        transport = httpx.HTTPTransport(local_address=source)
        with mesh.client(transport=transport) as client:
            mapping[source] = Counter(
                pod_of(client.get(mesh.mesh_proxy + "/", headers={"Host": "myapp:8080"}))
                for _ in range(5)
            )
    _sticky(mapping)


def test_round_robin_spreads_over_every_pod(mesh: Mesh, given: Given) -> None:
    round_robin = myapp.subsets("v1", traffic_policy="loadBalancer: {simple: ROUND_ROBIN}")
    given_three_pods(mesh, given, round_robin)
    counts = mesh.by_pod(URL, 30)
    assert len(counts) == 3, counts
    assert all(name.startswith("myapp-v1-") for name in counts), counts
    assert min(counts.values()) >= 5, counts  # round robin: about 10 each


def test_subset_has_its_own_traffic_policy(mesh: Mesh, given: Given) -> None:
    rule = """\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: myapp}
        spec:
          host: myapp
          trafficPolicy:
            loadBalancer: {simple: ROUND_ROBIN}
          subsets:
          - name: v1
            labels: {version: v1}
            trafficPolicy:
              loadBalancer:
                consistentHash: {httpHeaderName: x-user}
          - name: v2
            labels: {version: v2}
        """
    route = """\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: myapp}
        spec:
          hosts: [myapp]
          http:
          - match: [{headers: {x-subset: {exact: v2}}}]
            route: [{destination: {host: myapp, subset: v2}}]
          - route: [{destination: {host: myapp, subset: v1}}]
        """
    given.applied(myapp.version("v1", replicas=2), myapp.version("v2", replicas=2),
                  myapp.service(), rule, route)

    clusters = mesh.clusters()
    v1 = clusters["outbound|8080|v1|myapp.default.svc.cluster.local"]
    v2 = clusters["outbound|8080|v2|myapp.default.svc.cluster.local"]
    assert v1["lb_policy"] == "RING_HASH"
    assert v2.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"  # the enum default

    # v1 (its own consistent hash): one user, one pod.
    mapping = {u: mesh.by_pod(URL, 4, headers={"x-user": u}) for u in USERS}
    _sticky(mapping)
    # v2 (the rule's round robin): the same user is spread over both v2 pods.
    spread = mesh.by_pod(URL, 10, headers={"x-user": USERS[0], "x-subset": "v2"})
    assert len(spread) == 2 and all(p.startswith("myapp-v2-") for p in spread), spread


def test_connection_pool_limits_trip_the_circuit_breaker(
    mesh: Mesh, given: Given, when: When
) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    without = concurrent_get(mesh, SLOW, 8)
    assert [r.status_code for r in without] == [200] * len(without)

    when.apply(myapp.subsets("v1", traffic_policy="""
        connectionPool:
          tcp: {maxConnections: 1}
          http: {http1MaxPendingRequests: 1}
        """))
    limited = concurrent_get(mesh, SLOW, 8)
    codes = Counter(r.status_code for r in limited)
    assert codes[200] >= 1, codes
    assert codes[503] >= 1, codes  # refused by Envoy's breaker, not by the app
    assert set(codes) <= {200, 503}, codes
    for r in limited:
        if r.status_code == 503:
            assert r.headers.get("x-envoy-overloaded") == "true", r.headers
            assert "x-pod" not in r.headers  # never reached a pod


def test_outlier_detection_ejects_the_failing_pod(
    mesh: Mesh, given: Given, when: When
) -> None:
    given.applied(myapp.version("v1"),
                  demo_deployment("myapp-v1-bad", "v1", args="--error-rate=1.0"),
                  myapp.service())
    bad_pod = mesh.pods_of("myapp-v1-bad")[0]["metadata"]["name"]
    good_pod = mesh.pods_of("myapp-v1")[0]["metadata"]["name"]
    # Without outlier detection both pods keep getting traffic.
    before = Counter(mesh.http.get(URL).status_code for _ in range(30))
    assert before[500] >= 1 and before[200] >= 1, before

    when.apply(myapp.subsets("v1", traffic_policy="""
        outlierDetection:
          consecutive5xxErrors: 2
          interval: 1s
          baseEjectionTime: 120s
          maxEjectionPercent: 100
        """))
    warmup = [mesh.http.get(URL) for _ in range(20)]
    assert any(r.status_code == 500 and pod_of(r) == bad_pod for r in warmup), (
        "the failing pod was never tried"
    )
    after = [mesh.http.get(URL) for _ in range(40)]
    ok = [r for r in after if r.status_code == 200]
    assert len(ok) >= 36, Counter((r.status_code, pod_of(r)) for r in after)
    assert {pod_of(r) for r in ok} == {good_pod}

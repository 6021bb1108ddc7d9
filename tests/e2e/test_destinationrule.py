"""DestinationRule end to end: subsets with their own policy, load balancing, circuit
breaking and outlier detection, observed on real requests through the mesh proxy."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import Mesh, demo_deployment, service
from tests.e2e.traffic import by_pod, destination_rule, mesh_client, pod_of, pods_of

URL = "http://myapp:8080/"
USERS = [f"user-{i}" for i in range(12)]


def _hash_rule(key: str) -> str:
    return destination_rule(
        versions=("v1",), traffic_policy=f"loadBalancer:\n  consistentHash:\n    {key}\n"
    )


def _sticky(mapping: dict[str, Counter[str]]) -> None:
    """Every user always lands on one pod; the users together use more than one pod."""
    for user, pods in mapping.items():
        assert len(pods) == 1, f"{user} was spread over {dict(pods)}"
        assert next(iter(pods)).startswith("myapp-v1-"), pods
    used = {next(iter(p)) for p in mapping.values()}
    assert len(used) >= 2, f"every user hashed to the same pod: {mapping}"


def _three_pods(mesh: Mesh, rule: str) -> None:
    mesh.apply(demo_deployment("myapp-v1", "v1", replicas=3), service(), rule)
    mesh.converge()
    assert len(pods_of(mesh, "myapp-v1")) == 3


@pytest.mark.parametrize("kind", ["header", "query", "cookie"])
def test_consistent_hash_keeps_a_key_on_one_pod(mesh: Mesh, kind: str) -> None:
    key = {
        "header": "httpHeaderName: x-user",
        "query": "httpQueryParameterName: user",
        "cookie": "httpCookie: {name: session, ttl: 60s}",
    }[kind]
    _three_pods(mesh, _hash_rule(key))

    mapping: dict[str, Counter[str]] = {}
    for user in USERS:
        if kind == "header":
            mapping[user] = by_pod(mesh, URL, 5, headers={"x-user": user})
        elif kind == "query":
            mapping[user] = by_pod(mesh, URL + f"?user={user}", 5)
        else:
            with mesh_client(mesh) as client:
                client.cookies.set("session", user)
                mapping[user] = Counter(pod_of(client.get(URL)) for _ in range(5))
    _sticky(mapping)

    if kind == "cookie":
        # No cookie yet and a ttl: Envoy makes one up, and the client that keeps it sticks.
        with mesh_client(mesh) as client:
            first = client.get(URL)
            assert first.status_code == 200
            assert "session=" in first.headers.get("set-cookie", ""), first.headers
            assert {pod_of(client.get(URL)) for _ in range(5)} == {pod_of(first)}


def test_consistent_hash_by_source_ip(mesh: Mesh) -> None:
    _three_pods(mesh, _hash_rule("useSourceIp: true"))
    mapping: dict[str, Counter[str]] = {}
    for i in range(12):
        source = f"127.0.0.{40 + i}"
        # httpx ignores local_address when it uses a proxy: talk to the mesh proxy as a
        # plain server instead (origin-form request; Envoy routes on the Host header).
        transport = httpx.HTTPTransport(local_address=source)
        with mesh_client(mesh, transport=transport) as client:
            mapping[source] = Counter(
                pod_of(client.get(mesh.mesh_proxy + "/", headers={"Host": "myapp:8080"}))
                for _ in range(5)
            )
    _sticky(mapping)


def test_round_robin_spreads_over_every_pod(mesh: Mesh) -> None:
    _three_pods(
        mesh,
        destination_rule(
            versions=("v1",),
            traffic_policy="""\
        loadBalancer: {simple: ROUND_ROBIN}
        """,
        ),
    )
    counts = by_pod(mesh, URL, 30)
    assert len(counts) == 3, counts
    assert all(name.startswith("myapp-v1-") for name in counts), counts
    assert min(counts.values()) >= 5, counts  # round robin: about 10 each


def test_subset_has_its_own_traffic_policy(mesh: Mesh) -> None:
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
    mesh.apply(
        demo_deployment("myapp-v1", "v1", replicas=2),
        demo_deployment("myapp-v2", "v2", replicas=2),
        service(),
        rule,
        route,
    )
    mesh.converge()

    clusters = {
        c["cluster"]["name"]: c["cluster"] for c in mesh.proxy_config("mesh-proxy", "clusters")
    }
    v1 = clusters["outbound|8080|v1|myapp.default.svc.cluster.local"]
    v2 = clusters["outbound|8080|v2|myapp.default.svc.cluster.local"]
    assert v1["lb_policy"] == "RING_HASH"
    assert v2.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"  # the enum default

    # v1 (its own consistent hash): one user, one pod.
    mapping = {u: by_pod(mesh, URL, 4, headers={"x-user": u}) for u in USERS}
    _sticky(mapping)
    # v2 (the rule's round robin): the same user is spread over both v2 pods.
    spread = by_pod(mesh, URL, 10, headers={"x-user": USERS[0], "x-subset": "v2"})
    assert len(spread) == 2 and all(p.startswith("myapp-v2-") for p in spread), spread


def _concurrent_slow_requests(mesh: Mesh, n: int = 8) -> list[httpx.Response]:
    barrier = threading.Barrier(n)

    def one(_: int) -> httpx.Response:
        with mesh_client(mesh) as client:
            barrier.wait(timeout=10)
            return client.get("http://myapp:8080/delay/500")

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_connection_pool_limits_trip_the_circuit_breaker(mesh: Mesh) -> None:
    mesh.apply(demo_deployment("myapp-v1", "v1"), service())
    mesh.converge()
    without = _concurrent_slow_requests(mesh)
    assert [r.status_code for r in without] == [200] * len(without)

    mesh.apply(
        destination_rule(
            versions=("v1",),
            traffic_policy="""\
        connectionPool:
          tcp: {maxConnections: 1}
          http: {http1MaxPendingRequests: 1}
        """,
        )
    )
    mesh.converge()
    limited = _concurrent_slow_requests(mesh)
    codes = Counter(r.status_code for r in limited)
    assert codes[200] >= 1, codes
    assert codes[503] >= 1, codes  # refused by Envoy's breaker, not by the app
    assert set(codes) <= {200, 503}, codes
    for r in limited:
        if r.status_code == 503:
            assert r.headers.get("x-envoy-overloaded") == "true", r.headers
            assert "x-pod" not in r.headers  # never reached a pod


def test_outlier_detection_ejects_the_failing_pod(mesh: Mesh) -> None:
    mesh.apply(
        demo_deployment("myapp-v1", "v1"),
        demo_deployment("myapp-v1-bad", "v1", args="--error-rate=1.0"),
        service(),
    )
    mesh.converge()
    bad_pod = pods_of(mesh, "myapp-v1-bad")[0]["metadata"]["name"]
    good_pod = pods_of(mesh, "myapp-v1")[0]["metadata"]["name"]
    # Without outlier detection both pods keep getting traffic.
    before = Counter(mesh.http.get(URL).status_code for _ in range(30))
    assert before[500] >= 1 and before[200] >= 1, before

    mesh.apply(
        destination_rule(
            versions=("v1",),
            traffic_policy="""\
        outlierDetection:
          consecutive5xxErrors: 2
          interval: 1s
          baseEjectionTime: 120s
          maxEjectionPercent: 100
        """,
        )
    )
    mesh.converge()
    warmup = [mesh.http.get(URL) for _ in range(20)]
    assert any(r.status_code == 500 and pod_of(r) == bad_pod for r in warmup), (
        "the failing pod was never tried"
    )
    after = [mesh.http.get(URL) for _ in range(40)]
    ok = [r for r in after if r.status_code == 200]
    assert len(ok) >= 36, Counter((r.status_code, pod_of(r)) for r in after)
    assert {pod_of(r) for r in ok} == {good_pod}

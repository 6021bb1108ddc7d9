"""DestinationRule connection-pool limits and outlier-detection knobs against real Envoy.

Each test applies one setting and sends real requests through the mesh proxy, then checks
what happened by status codes, the pod that answered (``X-Pod``) and the mesh proxy's own
view from its admin API: cluster stats (``cluster.<name>.<stat>``) and, per host,
``/clusters`` (connection counters and the ``failed_outlier_check`` health flag). Time is
asserted only where the feature is a timeout, and then with coarse bounds.

The mesh's Envoys keep only the stats in :data:`meshpilot.proxy.stats.KEPT_STATS` (an
inclusion list, as Istio's proxies do): ``upstream_rq_*``, a few ``upstream_cx_*`` and
``outlier_detection.ejections_active``. Counters such as ``upstream_cx_connect_timeout``,
``upstream_cx_idle_timeout``, ``upstream_cx_max_requests``, ``lb_healthy_panic`` or
``ejections_overflow`` are never instantiated, so the tests use what is kept.

Helpers outside the mesh, started by the tests themselves on loopback:

- a listener that never accepts (its accept queue filled first), so connects hang;
- an HTTP server answering 502 to everything (a gateway error the demo app cannot make).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from meshpilot.proxy.admin import AdminClient
from tests.builders import demo_deployment, workload_entry
from tests.conftest import serve_http, wait_for
from tests.e2e import myapp
from tests.e2e.mesh import Mesh, pod_of
from tests.e2e.scenario import Given, When
from tests.e2e.traffic import concurrent_get

URL = "http://myapp:8080"
MYAPP = "outbound|8080||myapp.default.svc.cluster.local"


# --- helpers ----------------------------------------------------------------------------


@pytest.fixture
def admin(mesh: Mesh) -> Iterator[AdminClient]:
    client = mesh.proxy_admin()
    try:
        yield client
    finally:
        client.close()


def cluster_stats(admin: AdminClient, cluster: str = MYAPP) -> Counter[str]:
    """The cluster's counters and gauges, keyed without the ``cluster.<name>.`` prefix."""
    prefix = f"cluster.{cluster}."
    raw = admin.stats_dict("^" + re.escape(prefix))
    return Counter({k[len(prefix) :]: int(v) for k, v in raw.items() if k.startswith(prefix)})


def delta(before: Counter[str], after: Counter[str], name: str) -> int:
    return after[name] - before[name]


def cluster_config(mesh: Mesh, name: str = MYAPP) -> dict[str, Any]:
    return mesh.clusters()[name]


def hosts(admin: AdminClient, cluster: str = MYAPP) -> dict[str, dict[str, Any]]:
    """``/clusters`` per host ``ip:port``: its stats, and ``ejected`` (outlier detection)."""
    out: dict[str, dict[str, Any]] = {}
    for status in admin.clusters_json().get("cluster_statuses", []):
        if status.get("name") != cluster:
            continue
        for host in status.get("host_statuses", []):
            sock = host["address"]["socket_address"]
            doc: dict[str, Any] = {
                st["name"]: int(st.get("value", 0)) for st in host.get("stats", [])
            }
            doc["ejected"] = bool(host.get("health_status", {}).get("failed_outlier_check"))
            out[f"{sock['address']}:{sock['port_value']}"] = doc
    return out


def ejected_ips(admin: AdminClient, cluster: str = MYAPP) -> set[str]:
    return {a.rpartition(":")[0] for a, h in hosts(admin, cluster).items() if h["ejected"]}


def pod_ips(mesh: Mesh, deployment: str) -> dict[str, str]:
    """Pod IP → pod name, for the pods of ``deployment``."""
    return {p["status"]["podIP"]: p["metadata"]["name"] for p in mesh.pods_of(deployment)}


def rule(traffic_policy: str, host: str = "myapp") -> dict[str, Any]:
    """A DestinationRule for ``host`` (subset v1) with the ``traffic_policy`` YAML."""
    return myapp.subsets("v1", traffic_policy=traffic_policy, host=host)


def v1_entry(name: str, port: int, app: str = "myapp") -> dict[str, Any]:
    """A WorkloadEntry ``app: <app>, version: v1`` on loopback ``port``."""
    return workload_entry(name, port=port, labels={"app": app, "version": "v1"})


@contextlib.contextmanager
def unaccepting_listener() -> Iterator[int]:
    """A loopback port whose connects hang: listen backlog 0, queue filled, never accepted.

    Linux drops a SYN while the accept queue is full, so a new connect sees no answer at
    all (neither accept nor refusal) until its own timeout.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)
        # Self-check: a fresh connect must hang (not be accepted, not be refused).
        with pytest.raises(TimeoutError), socket.create_connection(("127.0.0.1", port), 0.3):
            pass
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


class Answer502(BaseHTTPRequestHandler):
    """An HTTP server answering every request with 502 (X-Pod: gateway-502): a gateway
    error the demo app cannot make."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b"bad gateway"
        self.send_response(502)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Pod", "gateway-502")
        self.end_headers()
        self.wfile.write(body)


def send_until(
    mesh: Mesh, done: Callable[[], bool], limit: int = 100, path: str = "/"
) -> list[httpx.Response]:
    """Sequential requests until ``done()`` (checked after each), at most ``limit``."""
    sent = []
    for _ in range(limit):
        sent.append(mesh.http.get(URL + path))
        if done():
            return sent
    raise AssertionError(
        f"condition not reached after {limit} requests: "
        f"{Counter((r.status_code, pod_of(r)) for r in sent)}"
    )


# --- connectionPool.tcp.connectTimeout ----------------------------------------------------


def test_connect_timeout_fails_a_hanging_connect_fast(
    mesh: Mesh, given: Given, when: When, admin: AdminClient
) -> None:
    cluster = "outbound|8080||blackhole.default.svc.cluster.local"
    url = "http://blackhole:8080/"
    with unaccepting_listener() as port:
        # Given a service whose only endpoint never completes a TCP handshake, no retries
        given.applied(
            v1_entry("blackhole-vm", port, app="blackhole"),
            myapp.service("blackhole"),
            myapp.routes(
                "- route: [{destination: {host: blackhole}}]\n  retries: {attempts: 0}",
                host="blackhole",
            ),
        )
        # Without a connectTimeout (default 10s) Envoy is still connecting after 1.5 s.
        before = cluster_stats(admin, cluster)
        with (
            httpx.Client(proxy=mesh.mesh_proxy, trust_env=False, timeout=1.5) as client,
            pytest.raises(httpx.TimeoutException),
        ):
            client.get(url)
        assert delta(before, cluster_stats(admin, cluster), "upstream_cx_connect_fail") == 0

        # When the DestinationRule sets connectTimeout 0.5s
        when.apply(
            rule("connectionPool:\n  tcp: {connectTimeout: 0.5s}", host="blackhole")
        )
        assert cluster_config(mesh, cluster)["connect_timeout"] == "0.500s"
        before = cluster_stats(admin, cluster)
        for _ in range(2):
            started = time.monotonic()
            r = mesh.http.get(url)
            elapsed = time.monotonic() - started
            # Then Envoy gives up on the connect after about half a second: its own 503
            assert r.status_code == 503, r.text
            assert "connection timeout" in r.text, r.text
            assert "x-pod" not in r.headers
            assert 0.3 < elapsed < 3.0, elapsed
        after = cluster_stats(admin, cluster)
        assert delta(before, after, "upstream_cx_connect_fail") == 2, after
        assert delta(before, after, "upstream_rq_pending_failure_eject") == 2, after


# --- connectionPool.http.http2MaxRequests -------------------------------------------------


def test_http2_max_requests_caps_requests_in_flight(
    mesh: Mesh, given: Given, when: When, admin: AdminClient
) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    # Without limits, 8 concurrent slow requests all succeed.
    assert {r.status_code for r in concurrent_get(mesh, URL + "/delay/1000", 8)} == {200}

    # When at most 2 requests may be in flight to the cluster (no other limit set)
    when.apply(rule("connectionPool:\n  http: {http2MaxRequests: 2}"))
    thresholds = cluster_config(mesh)["circuit_breakers"]["thresholds"][0]
    assert thresholds["max_requests"] == 2, thresholds
    before = cluster_stats(admin)
    responses = concurrent_get(mesh, URL + "/delay/1000", 8)
    after = cluster_stats(admin)

    # Then two are served and the rest are refused by Envoy's breaker, never reaching a pod
    codes = Counter(r.status_code for r in responses)
    assert 1 <= codes[200] <= 2 and codes[503] == 8 - codes[200], codes
    for r in responses:
        if r.status_code == 503:
            assert r.headers.get("x-envoy-overloaded") == "true", r.headers
            assert "x-pod" not in r.headers
    # Counted as the requests breaker's overflow, not the pending queue's
    assert delta(before, after, "upstream_rq_active_overflow") == codes[503], after
    assert delta(before, after, "upstream_rq_pending_overflow") == 0, after
    assert delta(before, after, "upstream_rq_total") == codes[200], after


# --- connectionPool.http.maxRequestsPerConnection -----------------------------------------


def test_max_requests_per_connection_recycles_connections(
    mesh: Mesh, given: Given, when: When, admin: AdminClient
) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    # Without the setting, sequential requests reuse one keep-alive connection.
    before = cluster_stats(admin)
    assert {mesh.http.get(URL + "/").status_code for _ in range(10)} == {200}
    after = cluster_stats(admin)
    assert delta(before, after, "upstream_cx_total") <= 2, after
    assert delta(before, after, "upstream_cx_destroy") == 0, after

    # When each upstream connection may carry one request
    when.apply(rule("connectionPool:\n  http: {maxRequestsPerConnection: 1}"))
    before = cluster_stats(admin)
    assert {mesh.http.get(URL + "/").status_code for _ in range(10)} == {200}
    after = wait_for(
        lambda: (s := cluster_stats(admin))["upstream_cx_active"] == 0 and s, timeout=5
    )
    # Then every request opens a new connection, closed after its one request
    assert delta(before, after, "upstream_cx_total") == 10, after
    assert delta(before, after, "upstream_cx_destroy") >= 10, after


# --- connectionPool.http.maxRetries -------------------------------------------------------

RETRY_ROUTE = """\
    - route: [{destination: {host: myapp}}]
      retries: {attempts: 2, retryOn: "503", backoff: 1s}
    """


def test_max_retries_caps_concurrent_retries(
    mesh: Mesh, given: Given, when: When, admin: AdminClient
) -> None:
    # Given a route that retries 503s twice (backoff 1s: a retry waits, holding its slot)
    given.applied(
        myapp.version("v1"), myapp.service(), myapp.routes(RETRY_ROUTE)
    )
    # Without a limit every failing request is retried twice.
    before = cluster_stats(admin)
    responses = concurrent_get(mesh, URL + "/status/503", 6)
    after = cluster_stats(admin)
    assert {(r.status_code, "x-pod" in r.headers) for r in responses} == {(503, True)}
    assert delta(before, after, "upstream_rq_retry") == 12, after
    assert delta(before, after, "upstream_rq_retry_overflow") == 0, after

    # When at most one retry may be outstanding for the cluster
    when.apply(rule("connectionPool:\n  http: {maxRetries: 1}"))
    thresholds = cluster_config(mesh)["circuit_breakers"]["thresholds"][0]
    assert thresholds["max_retries"] == 1, thresholds
    before = cluster_stats(admin)
    responses = concurrent_get(mesh, URL + "/status/503", 6)
    after = cluster_stats(admin)
    # Then the other retries are refused by the breaker: the app's 503 is passed on at once
    assert {(r.status_code, "x-pod" in r.headers) for r in responses} == {(503, True)}
    assert delta(before, after, "upstream_rq_retry_overflow") >= 3, after
    assert delta(before, after, "upstream_rq_retry") < 12, after


# --- connectionPool.{http,tcp}.idleTimeout ------------------------------------------------


@pytest.mark.parametrize("level", ["http", "tcp"])
def test_idle_timeout_closes_idle_upstream_connections(
    mesh: Mesh, given: Given, when: When, admin: AdminClient, level: str
) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    # Without the setting an idle upstream connection stays open (Envoy's default is 1h).
    assert mesh.http.get(URL + "/").status_code == 200
    before = cluster_stats(admin)
    time.sleep(1.5)
    after = cluster_stats(admin)
    assert after["upstream_cx_active"] >= 1, after
    assert delta(before, after, "upstream_cx_destroy") == 0, after

    # When the DestinationRule sets a 1s idle timeout (http's, or tcp's which HTTP also uses)
    when.apply(rule(f"connectionPool:\n  {level}: {{idleTimeout: 1s}}"))
    options = cluster_config(mesh)["typed_extension_protocol_options"]
    common = next(iter(options.values())).get("common_http_protocol_options", {})
    assert common.get("idle_timeout") == "1s", options
    before = cluster_stats(admin)
    assert mesh.http.get(URL + "/").status_code == 200
    sent = time.monotonic()
    assert cluster_stats(admin)["upstream_cx_active"] >= 1

    # Then, with no request on it, the connection is closed after about a second idle
    def closed() -> Counter[str] | None:
        now = cluster_stats(admin)
        gone = delta(before, now, "upstream_cx_destroy") >= 1
        return now if gone and now["upstream_cx_active"] == 0 else None

    after = wait_for(closed, timeout=6, interval=0.1)
    assert time.monotonic() - sent >= 0.8
    assert delta(before, after, "upstream_rq_total") == 1, after
    # ...and the next request simply opens a new one.
    assert mesh.http.get(URL + "/").status_code == 200
    assert delta(after, cluster_stats(admin), "upstream_cx_total") == 1


# --- outlierDetection ---------------------------------------------------------------------


def eject_some(mesh: Mesh, admin: AdminClient, n: int = 1, limit: int = 100) -> set[str]:
    """Send requests until ``n`` hosts are ejected; their IPs."""
    send_until(mesh, lambda: len(ejected_ips(admin)) >= n, limit=limit)
    return ejected_ips(admin)


def test_consecutive_gateway_errors_eject_only_gateway_failures(
    mesh: Mesh, given: Given, when: When, admin: AdminClient
) -> None:
    with serve_http(Answer502) as port:
        # Given myapp: a good pod, a pod answering 500, and an endpoint answering 502
        given.applied(
            myapp.version("v1"),
            demo_deployment("myapp-bad", "v1", args="--error-rate=1.0"),
            v1_entry("myapp-gateway", port),
            myapp.service(),
        )
        good = mesh.pods_of("myapp-v1")[0]["metadata"]["name"]
        bad = mesh.pods_of("myapp-bad")[0]["metadata"]["name"]
        seen = Counter(pod_of(mesh.http.get(URL + "/")) for _ in range(40))
        assert {good, bad, "gateway-502"} <= set(seen), seen

        # When two consecutive gateway errors eject a host (5xx-based ejection off)
        when.apply(
            rule("""\
            outlierDetection:
              consecutiveGatewayErrors: 2
              consecutive5xxErrors: 0
              interval: 1s
              baseEjectionTime: 120s
              maxEjectionPercent: 100
            """),
        )
        out = cluster_config(mesh)["outlier_detection"]
        assert out["consecutive_gateway_failure"] == 2, out
        # Then the 502 endpoint is ejected...
        assert eject_some(mesh, admin) == {"127.0.0.1"}
        # ...and gets no more traffic, while the 500 pod (not a gateway error) still does
        later = Counter(pod_of(mesh.http.get(URL + "/")) for _ in range(40))
        assert "gateway-502" not in later, later
        assert later[bad] >= 5 and later[good] >= 5, later
        assert ejected_ips(admin) == {"127.0.0.1"}
        assert cluster_stats(admin)["outlier_detection.ejections_active"] == 1


def test_ejection_ends_after_base_ejection_time(
    mesh: Mesh, given: Given, when: When, admin: AdminClient
) -> None:
    given.applied(
        myapp.version("v1"),
        demo_deployment("myapp-bad", "v1", args="--error-rate=1.0"),
        myapp.service(),
    )
    when.apply(
        rule("""\
            outlierDetection:
              consecutive5xxErrors: 1
              interval: 500ms
              baseEjectionTime: 1s
              maxEjectionPercent: 100
            """),
    )
    out = cluster_config(mesh)["outlier_detection"]
    assert (out["interval"], out["base_ejection_time"]) == ("0.500s", "1s"), out
    good = mesh.pods_of("myapp-v1")[0]["metadata"]["name"]
    bad_ips = pod_ips(mesh, "myapp-bad")

    # Given the failing pod was just ejected
    assert eject_some(mesh, admin) == set(bad_ips)
    ejected_at = time.monotonic()
    # Then right after, only the good pod answers
    assert {pod_of(mesh.http.get(URL + "/")) for _ in range(5)} == {good}
    # And about a second later (base ejection time, checked every interval) it is back
    wait_for(lambda: not ejected_ips(admin), timeout=6, interval=0.1)
    assert time.monotonic() - ejected_at >= 0.8
    assert cluster_stats(admin)["outlier_detection.ejections_active"] == 0
    back = [mesh.http.get(URL + "/") for _ in range(20)]
    assert any(r.status_code == 500 and pod_of(r) in bad_ips.values() for r in back), Counter(
        pod_of(r) for r in back
    )


def test_max_ejection_percent_caps_how_many_hosts_are_ejected(
    mesh: Mesh, given: Given, when: When, admin: AdminClient
) -> None:
    # Given one good pod and two failing ones
    given.applied(
        myapp.version("v1"),
        demo_deployment("myapp-bad", "v1", replicas=2, args="--error-rate=1.0"),
        myapp.service(),
    )
    good = mesh.pods_of("myapp-v1")[0]["metadata"]["name"]
    bad_ips = pod_ips(mesh, "myapp-bad")
    assert len(bad_ips) == 2
    policy = """\
        outlierDetection:
          consecutive5xxErrors: 1
          interval: 1s
          baseEjectionTime: 120s
          maxEjectionPercent: {}
        """

    # When at most 40% of the hosts may be ejected (one of three)
    when.apply(rule(policy.format(40)))
    ejected = eject_some(mesh, admin)
    assert len(ejected) == 1 and ejected <= set(bad_ips), ejected
    # Then the other failing pod keeps failing, keeps getting traffic, and is never ejected
    (kept,) = set(bad_ips) - ejected
    later = Counter(pod_of(mesh.http.get(URL + "/")) for _ in range(40))
    assert later[bad_ips[kept]] >= 5 and later[good] >= 5, later
    assert set(later) == {good, bad_ips[kept]}, later
    assert ejected_ips(admin) == ejected
    assert cluster_stats(admin)["outlier_detection.ejections_active"] == 1

    # When no host may be ejected at all
    when.apply(rule(policy.format(0)))
    seen = Counter(pod_of(mesh.http.get(URL + "/")) for _ in range(40))
    # Then both failing pods keep getting traffic and none is ever ejected
    assert set(seen) == {good, *bad_ips.values()}, seen
    assert ejected_ips(admin) == set()


def test_min_health_percent_sends_traffic_to_all_hosts_in_panic(
    mesh: Mesh, given: Given, when: When, admin: AdminClient
) -> None:
    given.applied(
        myapp.version("v1"),
        demo_deployment("myapp-bad", "v1", args="--error-rate=1.0"),
        myapp.service(),
    )
    good = mesh.pods_of("myapp-v1")[0]["metadata"]["name"]
    bad_ips = pod_ips(mesh, "myapp-bad")
    policy = """\
        outlierDetection:
          consecutive5xxErrors: 1
          interval: 1s
          baseEjectionTime: 120s
          maxEjectionPercent: 100
          minHealthPercent: {}
        """

    # With minHealthPercent 0 (no panic): once the bad pod is ejected only the good answers.
    when.apply(rule(policy.format(0)))
    assert eject_some(mesh, admin) == set(bad_ips)
    assert {pod_of(mesh.http.get(URL + "/")) for _ in range(20)} == {good}

    # When half the hosts healthy is below the panic threshold (minHealthPercent 60)
    when.apply(rule(policy.format(60)))
    assert cluster_config(mesh)["common_lb_config"]["healthy_panic_threshold"]["value"] == 60
    assert eject_some(mesh, admin) == set(bad_ips)
    seen = Counter(pod_of(mesh.http.get(URL + "/")) for _ in range(40))
    # Then Envoy panics and balances over every host, the ejected one included
    assert ejected_ips(admin) == set(bad_ips)
    assert seen[good] >= 5 and seen[bad_ips[next(iter(bad_ips))]] >= 5, seen

"""Response flags and response codes on every Istio series, end to end: real Envoys, real
requests that fail in the ways Envoy names (no healthy upstream, an injected abort, a
route timeout), read back from /metrics.

Follows Istio's "Standard Metrics" page (``response_flags`` and ``response_code`` are
labels of ``istio_requests_total`` and of the duration and size histograms alike) and
Envoy's access log documentation of ``%RESPONSE_FLAGS%`` (``UH`` no healthy upstream,
``FI`` fault injected abort, ``UT`` upstream request timeout, ``DC`` downstream connection
termination, ``-`` none).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.builders import service as service_body
from tests.conftest import wait_for
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given
from tests.e2e.telemetry_helpers import Prometheus, fetch_metrics, metric_sum, send

# v1 answers at once, v2 after 2 s; "abort" requests are aborted by the client
# sidecar (Istio's fault injection task), "slow" ones go to v2 with a 500 ms timeout
# (Istio's request timeouts task)
ROUTES = """
- match: [{headers: {x-case: {exact: abort}}}]
  fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
  route: [{destination: {host: myapp, subset: v1}}]
- match: [{headers: {x-case: {exact: slow}}}]
  timeout: 0.5s
  retries: {attempts: 0}
  route: [{destination: {host: myapp, subset: v2}}]
- route: [{destination: {host: myapp, subset: v1}}]
"""
NOBODY = "http://nobody:8080/"  # a Service that selects no pod


def _sum(samples: list, name: str, **labels: str) -> float:
    return metric_sum(samples, name, reporter="source", source_workload="mesh-proxy",
                      **labels)


def test_failed_requests_carry_envoys_response_flags_and_codes(mesh: Mesh, given: Given,
                                                               tmp_path: Path) -> None:
    """Given v1 (fast), v2 (2 s) and a Service with no pods, when requests succeed, are
    aborted by fault injection, time out, and find no upstream, then the source side
    counts each with Envoy's flag and the code the client saw, on the counter and on the
    duration and size histograms, and the destination that was hung up on counts ``DC``
    (Istio's task pages show these flags in the proxies' access logs)."""
    given.applied(myapp.version("v1"), myapp.version("v2", args="--latency-ms 2000"),
                  myapp.service(), myapp.subsets(), myapp.routes(ROUTES),
                  service_body("nobody", port=8080, target_port="http"))
    metrics_url = mesh.endpoints["metrics"]
    assert send(mesh.http, URL, 6) == {200: 6}
    assert send(mesh.http, URL, 5, headers={"x-case": "abort"}) == {500: 5}
    assert send(mesh.http, URL, 3, headers={"x-case": "slow"}) == {504: 3}
    assert send(mesh.http, NOBODY, 4) == {503: 4}

    def counted() -> list | None:
        samples = fetch_metrics(metrics_url)
        seen = _sum(samples, "istio_requests_total", destination_service_name="myapp")
        seen_nobody = _sum(samples, "istio_requests_total", destination_service_name="nobody")
        return samples if (seen, seen_nobody) == (14, 4) else None

    wait_for(counted, 15, interval=0.2, message="the mesh proxy's requests counted")
    # histograms are merged when the admin endpoint is read: one more scrape holds them
    time.sleep(1.5)
    samples = fetch_metrics(metrics_url)
    expected = {("200", "-"): 6, ("500", "FI"): 5, ("504", "UT"): 3}
    for (code, flags), n in expected.items():
        for metric in ("istio_requests_total", "istio_request_duration_milliseconds_count",
                       "istio_request_bytes_count", "istio_response_bytes_count"):
            got = _sum(samples, metric, destination_service_name="myapp",
                       response_code=code, response_flags=flags)
            assert got == n, (metric, code, flags, got)
    assert _sum(samples, "istio_requests_total", destination_service_name="nobody",
                response_code="503", response_flags="UH") == 4
    # an aborted request never left the client: counted under the route's destination
    (aborted,) = [lbl for name, lbl, _ in samples if name == "istio_requests_total"
                  and lbl.get("response_flags") == "FI"]
    assert aborted["destination_service"] == "myapp.default.svc.cluster.local"
    assert aborted["destination_version"] == "v1"
    # timed out requests waited about the timeout (500 ms; long enough for the request
    # to reach v2's sidecar however loaded the machine), not v2's 2 s: all within 1 s
    assert _sum(samples, "istio_request_duration_milliseconds_bucket",
                destination_service_name="myapp", response_flags="UT", le="1000") == 3
    # v1's answers have bodies: the response sizes are in buckets above 10 bytes
    assert _sum(samples, "istio_response_bytes_bucket", destination_service_name="myapp",
                response_code="200", le="10") == 0

    # the destination: v1 answered 6 (the aborted ones never reached it); v2 was hung up
    # on by the client's timeout before it answered, which its sidecar counts as DC
    def at_destination() -> list | None:
        got = fetch_metrics(metrics_url)
        hung_up = metric_sum(got, "istio_requests_total", reporter="destination",
                             destination_workload="myapp-v2", response_flags="DC")
        return got if hung_up == 3 else None

    time.sleep(0.5)  # v2's sidecar logs a request when its stream ends
    dest = wait_for(at_destination, 15, interval=0.2,
                    message="v2's sidecar to count the requests it was hung up on")
    assert metric_sum(dest, "istio_requests_total", reporter="destination",
                      destination_workload="myapp-v1", response_code="200",
                      response_flags="-") == 6
    assert metric_sum(dest, "istio_requests_total", reporter="destination",
                      destination_workload="myapp-v2") == 3
    assert metric_sum(dest, "istio_request_duration_milliseconds_count",
                      reporter="destination", destination_workload="myapp-v1",
                      response_code="200", response_flags="-") == 6

    # a real Prometheus reads the same: a query by flag, as a dashboard would ask
    with Prometheus(tmp_path / "prometheus", mesh.endpoints["metrics_http_sd"]) as prom:
        prom.wait_target_up()
        by_flags = 'sum by (response_flags) (istio_requests_total{reporter="source"})'
        wait_for(lambda: {r["metric"]["response_flags"]: float(r["value"][1])
                          for r in prom.query(by_flags)} == {"-": 6, "FI": 5, "UT": 3, "UH": 4},
                 15, interval=0.3, message=f"Prometheus by flags: {prom.query(by_flags)}")

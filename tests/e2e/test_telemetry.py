"""Telemetry end to end: real Envoys, the demo app's injected errors and latency, real
requests; Istio's series on /metrics, the embedded queries, and a real Prometheus."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import process_alive, run_cli, wait_for
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given
from tests.e2e.telemetry_helpers import Prometheus, fetch_metrics, metric_sum, send

ROUTE_BY_HEADER = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: myapp}
spec:
  hosts: [myapp]
  http:
  - match: [{headers: {x-version: {exact: v2}}}]
    route: [{destination: {host: myapp, subset: v2}}]
  - route: [{destination: {host: myapp, subset: v1}}]
"""
LATENCY_MS = 60  # lies in Istio's (50, 100] duration bucket
V2 = {"x-version": "v2"}
# v1 healthy, v2 with 30% errors and +60 ms; requests with x-version: v2 go to v2
HEALTHY_V1_FAULTY_V2 = (
    myapp.version("v1"),
    myapp.version("v2", args=f"--error-rate 0.3 --latency-ms {LATENCY_MS}"),
    myapp.service(), myapp.subsets(), ROUTE_BY_HEADER,
)


def test_counts_by_version_and_code_match_what_was_sent(mesh: Mesh, given: Given) -> None:
    """Given v1 (healthy) and v2 (30% errors, +60 ms), when requests reach each version,
    then both reporters count exactly the responses the client saw, with Istio's labels,
    and none of v2's requests lies in a bucket below the injected latency."""
    given.applied(*HEALTHY_V1_FAULTY_V2)
    metrics_url = mesh.endpoints["metrics"]
    sent_v1 = send(mesh.http, URL, 60)
    # v2's 200 and 500 series are born before the bulk of its traffic (and scraped once):
    # a rate over a series that appears mid-window misses its first sample, which would
    # make the rate-based success rate below drift with chance
    warm: dict[int, int] = {}
    while (not warm.get(200) or not warm.get(500)) and sum(warm.values()) < 60:
        for code, n in send(mesh.http, URL, 5, headers=V2).items():
            warm[code] = warm.get(code, 0) + n
    time.sleep(1.5)
    sent_v2 = send(mesh.http, URL, 80, headers=V2)
    for code, n in warm.items():
        sent_v2[code] = sent_v2.get(code, 0) + n
    assert set(sent_v1) == {200}, sent_v1
    assert set(sent_v2) <= {200, 500} and sent_v2.get(500), sent_v2

    def counted() -> list | None:
        samples = fetch_metrics(metrics_url)
        total = metric_sum(samples, "istio_requests_total", reporter="destination")
        return samples if total >= sum(sent_v1.values()) + sum(sent_v2.values()) else None

    samples = wait_for(counted, 15, interval=0.2,
                       message="the destination sidecars' requests to show up")
    time.sleep(1.5)  # one more scrape, so the source side is complete too
    samples = fetch_metrics(metrics_url)
    for reporter in ("source", "destination"):
        for version, sent in (("v1", sent_v1), ("v2", sent_v2)):
            for code, n in sent.items():
                got = metric_sum(samples, "istio_requests_total", reporter=reporter,
                                 destination_version=version, response_code=str(code))
                assert got == n, (reporter, version, code, got, sent)
    # labels: Istio's names; known on both sides here
    dest = [lbl for name, lbl, _ in samples if name == "istio_requests_total"
            and lbl["reporter"] == "destination" and lbl["destination_version"] == "v2"]
    assert dest
    lbl = dest[0]
    assert lbl["source_workload"] == "mesh-proxy"
    assert lbl["source_workload_namespace"] == "default"
    assert lbl["source_app"] == "mesh-client"
    assert lbl["destination_workload"] == "myapp-v2"
    assert lbl["destination_workload_namespace"] == "default"
    assert lbl["destination_app"] == "myapp"
    assert lbl["destination_service"] == "myapp.default.svc.cluster.local"
    assert lbl["destination_service_name"] == "myapp"
    assert lbl["destination_service_namespace"] == "default"
    assert lbl["request_protocol"] == "http"
    # the mesh proxy called over mutual TLS (Istio's default: auto mTLS, PERMISSIVE), and
    # the destination knows who called from its certificate
    assert lbl["connection_security_policy"] == "mutual_tls"
    assert lbl["source_principal"] == "spiffe://cluster.local/ns/default/sa/default"
    assert lbl["destination_principal"] == "spiffe://cluster.local/ns/default/sa/default"
    assert lbl["response_flags"] == "-"
    src = [lbl for name, lbl, _ in samples if name == "istio_requests_total"
           and lbl["reporter"] == "source" and lbl["destination_version"] == "v2"]
    assert src and src[0]["source_workload"] == "mesh-proxy"
    assert src[0]["destination_workload"] == "myapp-v2"
    assert src[0]["connection_security_policy"] == "unknown"

    # every v2 request took the injected 60 ms or more: none in a bucket up to 50 ms, and
    # p99 from the histogram at least 50 (how far above depends on the machine's load;
    # a unit mistake, seconds for milliseconds, would be orders of magnitude off)
    count = metric_sum(samples, "istio_request_duration_milliseconds_count",
                       reporter="destination", destination_version="v2")
    assert count == sum(sent_v2.values())
    assert metric_sum(samples, "istio_request_duration_milliseconds_bucket",
                      reporter="destination", destination_version="v2", le="50") == 0
    assert metric_sum(samples, "istio_request_duration_milliseconds_bucket",
                      reporter="destination", destination_version="v2", le="+Inf") == count
    body = mesh.telemetry(workload="myapp-v2", namespace="default", window="60s")
    (row,) = body["rows"]
    assert 50 <= row["latencyMs"]["p99"] <= 1000, row
    assert row["requests"] == sum(sent_v2.values()), row
    assert row["errors"] == sent_v2[500], (row, sent_v2)
    # the success rate is a ratio of Prometheus-style rates: series born mid-window
    # (the first 500) make it approximate; the counts above are exact
    expected_success = 100.0 * sent_v2.get(200, 0) / sum(sent_v2.values())
    assert abs(row["successRate"] - expected_success) < 12, (row, sent_v2)
    (fast,) = mesh.telemetry(workload="myapp-v1", namespace="default")["rows"]
    # all of v1's requests came before its series' first scrape: like Prometheus' rate(),
    # the rate sees no increase, but the count of requests says what happened
    assert fast["requests"] == 60 and fast["errors"] == 0, fast
    # `meshpilot top` shows the same numbers per service and version
    proc = run_cli("top", "--once", "--window", "60s", state_dir=mesh.cp.state_dir)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "myapp-v2" in x)
    assert "myapp.default" in line and " v2 " in line and str(sum(sent_v2.values())) in line
    # request/response bytes histograms exist with Istio's byte buckets
    assert metric_sum(samples, "istio_response_bytes_count", reporter="source",
                      destination_version="v1") == 60


def test_counters_survive_a_sidecar_restart(mesh: Mesh, given: Given) -> None:
    """Given counted requests, when a sidecar Envoy is killed and restarted, then its
    counters continue from where they were instead of going back to zero."""
    given.applied(myapp.version("v1"), myapp.service(), myapp.subsets("v1"))
    metrics_url = mesh.endpoints["metrics"]
    assert send(mesh.http, URL, 20) == {200: 20}

    def dest_count() -> float:
        return metric_sum(fetch_metrics(metrics_url), "istio_requests_total",
                          reporter="destination", destination_workload="myapp-v1")

    wait_for(lambda: dest_count() == 20, 10, interval=0.2, message="the first requests counted")
    (pod,) = [p for p in mesh.pods() if p["metadata"]["name"].startswith("myapp-v1")]
    admin = pod["status"]["sidecarAdminSocket"]
    sidecar_pid = _sidecar_pid(mesh, pod["metadata"]["name"])
    os.kill(sidecar_pid, signal.SIGKILL)
    wait_for(lambda: _sidecar_pid(mesh, pod["metadata"]["name"]) not in (None, sidecar_pid),
             20, interval=0.2, message="the sidecar restarted")
    mesh.converge()
    wait_for(lambda: send(mesh.http, URL, 1) == {200: 1}, 20, interval=0.2,
             message="traffic after the restart")
    assert send(mesh.http, URL, 9) == {200: 9}
    wait_for(lambda: dest_count() == 30, 10, interval=0.2,
             message=f"the counter to continue: {dest_count()} ({admin})")


def _sidecar_pid(mesh: Mesh, pod_name: str) -> int | None:
    state_dir = Path(mesh.cp.state_dir)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmdline]
        ours = any(a.endswith(f"sidecars/{pod_name}.json") and str(state_dir) in a for a in args)
        if args and args[0].endswith("envoy") and ours and process_alive(int(proc.name)):
            return int(proc.name)
    return None


@pytest.fixture
def prom_dir(tmp_path: Path) -> Path:
    return tmp_path / "prometheus"


def test_prometheus_runs_istio_and_flagger_queries_unchanged(
    mesh: Mesh, given: Given, prom_dir: Path
) -> None:
    """Given a real Prometheus scraping meshpilot (found through /http_sd), when v2 serves
    30% errors with +60 ms, then Istio's and Flagger's queries return the expected values,
    and the embedded queries agree with Prometheus."""
    given.applied(*HEALTHY_V1_FAULTY_V2)
    with Prometheus(prom_dir, mesh.endpoints["metrics_http_sd"],
                    rules=Path(__file__).parents[2] / "deploy/prometheus/alerts.yaml") as prom:
        prom.wait_target_up()
        # warm up until every series exists (an error included), then measure increments
        warm_v2: Counter[int] = Counter()

        def warm_up() -> int:
            got = send(mesh.http, URL, 10, headers=V2)
            warm_v2.update(got)
            return got.get(500, 0)

        wait_for(warm_up, 20, interval=0.2, message="an injected error")
        send(mesh.http, URL, 10)
        time.sleep(3)
        sent_v2 = send(mesh.http, URL, 240, headers=V2, workers=8)
        sent_v1 = send(mesh.http, URL, 120, workers=4)
        time.sleep(3)  # a few scrapes after the last request

        errors_v2 = sent_v2.get(500, 0)
        total_v2 = sum(sent_v2.values())
        # What rate() over 1 m can count of v2's errors: the measured ones, and perhaps
        # some of the warm-up's last batch (those after the 5xx series' first scrape),
        # extrapolated to the window's edges (by up to a scrape interval each side).
        warm_errors = warm_v2[500]

        def counts_errors(value: float, reporters: int) -> bool:
            return (0.8 * reporters * errors_v2 <= value
                    <= 1.2 * reporters * (errors_v2 + warm_errors))
        # Istio's dashboards query: both reporters count each in-mesh request
        r = prom.scalar('sum(rate(istio_requests_total{destination_version="v2",'
                        'response_code=~"5.."}[1m]))')
        assert r is not None
        assert counts_errors(r * 60, 2), (r * 60, errors_v2, warm_errors)
        by_reporter = {
            row["metric"]["reporter"]: float(row["value"][1]) * 60
            for row in prom.query('sum by (reporter) (rate(istio_requests_total{'
                                  'destination_version="v2",response_code=~"5.."}[1m]))')}
        assert counts_errors(by_reporter["source"], 1), (by_reporter, errors_v2, warm_errors)
        assert counts_errors(by_reporter["destination"], 1), (by_reporter, errors_v2,
                                                              warm_errors)

        # v2 answers after 60 ms or more: its quantiles are at least 50 (the bucket below
        # holds none of its requests); how far above depends on the machine's load
        def quantile(q: float) -> float | None:
            return prom.scalar(f'histogram_quantile({q}, sum by (le) (rate('
                               'istio_request_duration_milliseconds_bucket{'
                               'destination_version="v2"}[1m])))')
        p50, p99 = quantile(0.5), quantile(0.99)
        assert p50 is not None and 50 <= p50 <= 1000, p50
        assert p99 is not None and 50 <= p99 <= 1000, p99

        # Flagger's built-in checks (Istio provider), verbatim with target myapp-v2
        success = prom.scalar(
            'sum(rate(istio_requests_total{reporter="destination",'
            'destination_workload_namespace="default",destination_workload=~"myapp-v2",'
            'response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{'
            'reporter="destination",destination_workload_namespace="default",'
            'destination_workload=~"myapp-v2"}[1m])) * 100')
        expected = 100.0 * sent_v2.get(200, 0) / total_v2
        assert success is not None and abs(success - expected) < 4, (success, expected)
        duration = prom.scalar(
            'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{'
            'reporter="destination",destination_workload_namespace="default",'
            'destination_workload=~"myapp-v2"}[1m])) by (le))')
        assert duration is not None and 50 <= duration <= 1000, duration  # as p99 above
        v1_success = prom.scalar(
            'sum(rate(istio_requests_total{reporter="destination",'
            'destination_workload=~"myapp-v1",response_code!~"5.*"}[1m])) / '
            'sum(rate(istio_requests_total{reporter="destination",'
            'destination_workload=~"myapp-v1"}[1m])) * 100')
        assert v1_success == 100.0 and set(sent_v1) == {200}

        # the embedded queries agree with Prometheus over the same window
        (emb,) = mesh.telemetry(workload="myapp-v2", namespace="default", window="60s")["rows"]
        assert abs(emb["successRate"] - success) < 2, (emb, success)
        assert emb["latencyMs"]["p99"] == pytest.approx(duration, rel=0.1), (emb, duration)
        # rate() extrapolates to the window's edges (by up to a scrape interval at each end
        # of a young series), so the count is compared as Prometheus holds it: the last
        # sample less the one a minute before (none yet: zero)
        series = 'sum(istio_requests_total{reporter="destination",destination_workload="myapp-v2"}'
        prom_count = prom.scalar(f'{series}) - ({series} offset 1m) or vector(0))')
        assert prom_count is not None
        assert emb["requests"] == pytest.approx(prom_count, abs=2), (emb, prom_count)
        assert emb["requestRate"] == pytest.approx(emb["requests"] / 60), emb
        # the example alerting rules loaded
        groups = prom.http.get("/api/v1/rules").json()["data"]["groups"]
        assert groups and any(rule["name"] for g in groups for rule in g["rules"])

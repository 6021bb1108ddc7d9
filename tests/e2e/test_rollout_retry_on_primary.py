"""Issue 13: with retry on the primary, a bad canary costs users nothing.

Given a Canary annotated ``meshpilot.io/retry-on-primary: "true"`` (a meshpilot
extension; Flagger has none) over a Deployment serving v1 under 100 GET requests a
second, with Flagger's built-in request-success-rate check (>= 99 %) and threshold 1,
when a revision failing half its answers takes its first 10 % of the traffic, then no
user request fails: each request the canary fails is retried once on the primary
(Envoy's aggregate cluster, canary then primary, and the previous-priorities retry
priority), while the canary's own sidecar still reports its failures, so fail-fast rolls
it back as it does without the retry (Flagger would judge at the interval's end,
REFERENCE.md). The generated VirtualService carries the intent, as it is stored.

On the client side, Istio counts a request once, with its final response, under the
workload that gave it: ``istio_requests_total{reporter="source"}`` never shows the
canary's 500s (the primary answered those requests), nor the aggregate cluster's name;
the canary's own sidecar shows them (``reporter="destination"``).
"""

from __future__ import annotations

import re

from tests.conftest import wait_for
from tests.e2e.rollouts import canary
from tests.e2e.scenario import Given, Then, When
from tests.e2e.telemetry_helpers import fetch_metrics, metric_sum
from tests.e2e.test_rollout_fail_fast import own_counts

VS = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/myapp"


def test_a_failing_canary_costs_no_user_request(given: Given, when: When,
                                                then: Then) -> None:
    body = canary(threshold=1, max_weight=50, min_requests=5, metrics=[
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "5s"}])
    body["metadata"]["annotations"]["meshpilot.io/retry-on-primary"] = "true"
    given.rollout(body)
    vs = given.mesh.api.get(VS).json()
    assert vs["metadata"]["annotations"]["meshpilot.io/retry-on-primary"] == "true", vs
    with when.traffic(rate=100, workers=8) as load:
        when.release("v2", args="--error-rate 0.5")
        final = then.rollout_phase("Failed", timeout=60)
        when.time_passes(1.0)
    reason = final["history"][-1]["reason"]
    assert final["history"][-1]["outcome"] == "rolled-back", reason
    assert "fail-fast" in reason, reason
    assert load.failures == [], (f"{len(load.failures)} of {load.sent} user requests "
                                 f"failed: {load.failures[:5]}; {reason}")
    judged = re.search(r"\((\d+) requests, (\d+) failed", reason)
    assert judged is not None and int(judged[2]) >= 2, reason  # the canary's failures counted
    counts = own_counts(given.mesh.endpoints["metrics"])
    assert counts["meshpilot_failure_reports_total"] >= 2, counts  # its sidecar reported them
    assert final["canaryWeight"] == 0
    then.split_is({"v1": 20})
    _client_side_names_who_answered(given.mesh.endpoints["metrics"])


def _client_side_names_who_answered(url: str) -> None:
    total = "istio_requests_total"

    def scraped() -> list | None:  # the canary's failures, read at its own sidecar
        samples = fetch_metrics(url)
        failed = metric_sum(samples, total, reporter="destination",
                            destination_workload="myapp", response_code="500")
        return samples if failed >= 2 else None

    samples = wait_for(scraped, timeout=30, message="the canary's failures scraped")
    source = [(labels, v) for n, labels, v in samples
              if n == total and labels.get("reporter") == "source"]
    aggregate = [s for s in source if s[0]["destination_service"].startswith("retry_on")]
    assert aggregate == [], aggregate
    assert metric_sum(samples, total, reporter="source", destination_workload="myapp",
                      response_code="500") == 0, [s for s in source
                                                  if s[0]["destination_workload"] == "myapp"]
    assert metric_sum(samples, total, reporter="source",
                      destination_workload="myapp-primary", response_code="200") > 0

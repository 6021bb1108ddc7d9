"""A MetricTemplate check against a real Prometheus scraping the mesh's /metrics.

Given a Canary whose only check is Flagger's Istio error-rate query in a MetricTemplate
(provider prometheus, with {{ namespace }}, {{ target }} and {{ interval }}), a healthy
revision is promoted and a failing one is rolled back with the check named.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.mesh import Mesh
from tests.e2e.rollouts import FINISHED, canary
from tests.e2e.scenario import Given, Then, When
from tests.e2e.telemetry_helpers import Prometheus

SELECTOR = ('reporter="destination", destination_workload_namespace="{{ namespace }}", '
            'destination_workload=~"{{ target }}"')
ERROR_RATE = (
    f'100 - sum(rate(istio_requests_total{{{SELECTOR}, response_code!~"5.*"}}'
    f'[{{{{ interval }}}}])) / sum(rate(istio_requests_total{{{SELECTOR}}}'
    f'[{{{{ interval }}}}])) * 100')
ERROR_RATE_CHECK = [{"name": "error-rate", "templateRef": {"name": "error-rate"},
                     "thresholdRange": {"max": 1}, "interval": "10s"}]


def metric_template(address: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: flagger.app/v1beta1
        kind: MetricTemplate
        metadata: {{name: error-rate, namespace: default}}
        spec:
          provider: {{type: prometheus, address: "{address}"}}
          query: '{ERROR_RATE}'
        """)


def test_prometheus_metric_template_promotes_and_rolls_back(
    mesh: Mesh, given: Given, when: When, then: Then, tmp_path: Path
) -> None:
    with Prometheus(tmp_path / "prom", mesh.endpoints["metrics_http_sd"]) as prom:
        prom.wait_target_up()
        given.applied(metric_template(prom.url))
        given.rollout(canary(interval="2s", max_weight=20, metrics=ERROR_RATE_CHECK))
        with when.traffic(rate=60, max_seconds=120) as load:
            # a healthy revision: the Prometheus check passes, it is promoted
            when.release("v2")
            good = then.rollout_phase("Succeeded")
            then.split_is({"v2": 10})
            then.no_request_failed(load)
            # a failing one: rolled back, the reason names the check and its value
            when.release("v3", args="--error-rate 0.3")
            bad = when.rollout_reaches(
                lambda b: b["phase"] in FINISHED and b["revision"] != good["revision"],
                "the v3 rollout to finish", timeout=60)
        assert bad["phase"] == "Failed"
        reason = bad["history"][-1]["reason"]
        assert "error-rate" in reason, reason
        failed = [c for c in bad["checks"] if c["verdict"] == "fail"]
        assert failed and failed[0]["name"] == "error-rate" and failed[0]["value"] > 1
        when.time_passes(1.0)  # the status is written first, then the routes reach proxies
        then.split_is({"v2": 20})

"""A MetricTemplate check against a real Prometheus scraping the mesh's /metrics.

Given a Canary whose only check is Flagger's Istio error-rate query in a MetricTemplate
(provider prometheus, with {{ namespace }}, {{ target }} and {{ interval }}), a healthy
revision is promoted and a failing one is rolled back with the check named.
"""

from __future__ import annotations

import shutil
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Mesh
from tests.e2e.rollout_helpers import Steady, canary, given_initialized, target, versions
from tests.e2e.telemetry_helpers import Prometheus

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None and not Path("/usr/bin/prometheus").exists(),
    reason="prometheus is not installed")

SELECTOR = ('reporter="destination", destination_workload_namespace="{{ namespace }}", '
            'destination_workload=~"{{ target }}"')
ERROR_RATE = (
    f'100 - sum(rate(istio_requests_total{{{SELECTOR}, response_code!~"5.*"}}'
    f'[{{{{ interval }}}}])) / sum(rate(istio_requests_total{{{SELECTOR}}}'
    f'[{{{{ interval }}}}])) * 100')


def metric_template(address: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: flagger.app/v1beta1
        kind: MetricTemplate
        metadata: {{name: error-rate, namespace: default}}
        spec:
          provider: {{type: prometheus, address: "{address}"}}
          query: '{ERROR_RATE}'
        """)


def test_prometheus_metric_template_promotes_and_rolls_back(mesh: Mesh, tmp_path: Path) -> None:
    prom = Prometheus(tmp_path / "prom", mesh.endpoints["metrics_http_sd"])
    try:
        prom.wait_target_up()
        metrics = textwrap.dedent("""\
            - name: error-rate
              templateRef: {name: error-rate}
              thresholdRange: {max: 1}
              interval: 10s
            """)
        mesh.apply(metric_template(prom.url))
        rollouts = given_initialized(mesh, canary(interval="2s", max_weight=20,
                                                  metrics=metrics))
        with Steady(mesh, rate=60, max_seconds=120) as load:
            # a healthy revision: the Prometheus check passes, it is promoted
            mesh.apply(target("v2"))
            good = rollouts.wait_phase("Succeeded", "Failed", timeout=60)
            assert good["phase"] == "Succeeded", good["events"][-8:]
            assert versions(mesh, 10) == {"v2": 10}
            assert load.failures == [], load.failures[:5]
            # a failing one: rolled back, the reason names the check and its value
            mesh.apply(target("v3", args="--error-rate 0.3"))
            bad = rollouts.wait(lambda b: b["phase"] in ("Failed", "Succeeded")
                                and b["revision"] != good["revision"], timeout=60,
                                what="the v3 rollout to finish")
        assert bad["phase"] == "Failed"
        reason = bad["history"][-1]["reason"]
        assert "error-rate" in reason, reason
        failed = [c for c in bad["checks"] if c["verdict"] == "fail"]
        assert failed and failed[0]["name"] == "error-rate" and failed[0]["value"] > 1
        time.sleep(1.0)  # the status is written first, then the routes reach the proxies
        assert versions(mesh, 20) == {"v2": 20}
    finally:
        prom.stop()

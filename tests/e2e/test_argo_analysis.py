"""Argo Rollouts analysis end to end: a real Prometheus scraping the mesh, real pods,
real Envoy, the control plane creating and measuring AnalysisRuns.

Shaped like Argo's ``docs/features/analysis.md`` success-rate AnalysisTemplate (a
Prometheus query of ``istio_requests_total``, ``successCondition: result[0] >= 0.95``,
an ``interval`` and a ``count``), used as an inline analysis step after ``setWeight: 50``
of ``examples/istio/istio-subset-split.yaml``'s Rollout (the objects of
``test_argo_rollout``), with the canary's revision passed as an argument
(``valueFrom.podTemplateHashValue: Latest``).

Given v1 stable and traffic, when v2 (healthy) is released, then the step's AnalysisRun
measures the canary's success rate in Prometheus, is Successful and v2 becomes stable,
with no request failed; when v3 (answering 500 to 60% of requests) is released, then its
AnalysisRun is Failed, the Rollout aborts (Argo: "Step-based analysis phase
error/failed") and v2, still stable, answers every request; the AnalysisRuns are objects
``meshpilot get`` shows, with each measurement.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests import argo_builders
from tests.conftest import run_cli, wait_for
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When
from tests.e2e.telemetry_helpers import Prometheus
from tests.e2e.test_argo_rollout import destination_rule, virtual_service, wait_status
from tests.metric_server import MetricServer

NAME = "myapp"
RUNS = "/apis/argoproj.io/v1alpha1/namespaces/default/analysisruns"
WORKLOAD = f'destination_workload="{NAME}-{{{{args.canary-hash}}}}"'
SUCCESS_RATE = (f'sum(rate(istio_requests_total{{{WORKLOAD}, response_code!~"5.*"}}[10s])) / '
                f'sum(rate(istio_requests_total{{{WORKLOAD}}}[10s]))')


def analysis_template(prometheus: str) -> dict[str, Any]:
    return argo_builders.analysis_template("success-rate", [{
        "name": "success-rate", "initialDelay": "6s", "interval": "2s", "count": 3,
        "successCondition": "result[0] >= 0.95",
        "provider": {"prometheus": {"address": prometheus, "query": SUCCESS_RATE}}}],
        args=["canary-hash"])


def rollout(version: str, args: str = "") -> dict[str, Any]:
    return argo_builders.canary_rollout(NAME, version, [{"setWeight": 50}, {"analysis": {
        "templates": [{"templateName": "success-rate"}],
        "args": [{"name": "canary-hash",
                  "valueFrom": {"podTemplateHashValue": "Latest"}}]}}], args=args)


def run_of(mesh: Mesh, pod_hash: str) -> dict[str, Any]:
    """The AnalysisRun of revision ``pod_hash``, as ``meshpilot get analysisrun`` shows it."""
    names = [r["metadata"]["name"] for r in mesh.api.get(RUNS).json()["items"]
             if r["metadata"]["labels"]["rollouts-pod-template-hash"] == pod_hash]
    assert len(names) == 1, names
    shown = run_cli("get", "analysisrun", names[0], "-o", "json",
                    state_dir=mesh.cp.state_dir)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def test_analysis_step_promotes_a_healthy_revision_and_aborts_a_failing_one(
    mesh: Mesh, given: Given, when: When, then: Then, tmp_path: Path
) -> None:
    with Prometheus(tmp_path / "prom", mesh.endpoints["metrics_http_sd"]) as prom:
        prom.wait_target_up()
        given.applied(myapp.service(), virtual_service(), destination_rule(),
                      analysis_template(prom.url), rollout("v1"))
        v1 = wait_status(mesh, "Healthy", lambda s: s.get("phase") == "Healthy")["stableRS"]

        # When a healthy v2 is released under load: its analysis passes, it is promoted
        with when.traffic(rate=40, max_seconds=120) as good_load:
            mesh.apply(rollout("v2"))
            st = wait_status(mesh, "analysing v2", lambda s: s.get("currentPodHash") not in (
                None, v1) and bool(s["canary"].get("currentStepAnalysisRunStatus")))
            v2 = st["currentPodHash"]
            assert st["canary"]["weights"]["canary"]["weight"] == 50
            st = wait_status(mesh, "promoted to v2", lambda s: s.get("stableRS") == v2
                             and s.get("phase") == "Healthy")
        then.no_request_failed(good_load, more_than=100)
        good = run_of(mesh, v2)
        assert good["status"]["phase"] == "Successful", good["status"]
        (result,) = good["status"]["metricResults"]
        assert result["count"] == 3 and result["successful"] == 3
        assert all(float(m["value"].strip("[]")) >= 0.95 for m in result["measurements"])
        assert good["spec"]["args"][0] == {"name": "canary-hash", "value": v2}

        # When a failing v3 is released: its run fails, the Rollout aborts, v2 keeps 100%
        with when.traffic(rate=40, max_seconds=120):
            mesh.apply(rollout("v3", args="--error-rate 0.6"))
            st = wait_status(mesh, "aborted", lambda s: s.get("abort") is True)
        assert st["stableRS"] == v2 and st["phase"] == "Degraded"
        assert "Step-based analysis phase error/failed" in st["message"], st["message"]
        assert st["canary"]["weights"]["canary"]["weight"] == 0
        bad = run_of(mesh, st["currentPodHash"])
        assert bad["status"]["phase"] == "Failed"
        assert 'Metric "success-rate" assessed Failed' in bad["status"]["message"]
        assert float(bad["status"]["metricResults"][0]["measurements"][-1]["value"]
                     .strip("[]")) < 0.95
        mesh.converge()
        then.split_is({"v2": 20})
        with when.traffic(rate=40, max_seconds=30, max_requests=80) as after:
            # 2 s at 40 req/s, or as long as a loaded machine's client needs for 21
            wait_for(lambda: after.sent > 20, timeout=25, message="21 requests sent")
        then.no_request_failed(after, more_than=20)


def web_run(url: str) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "web-check"},
            "spec": {"args": [{"name": "path", "value": "status"},
                              {"name": "token", "valueFrom": {"secretKeyRef": {
                                  "name": "metrics-token", "key": "token"}}}],
                     "metrics": [{"name": "webmetric", "interval": "1s", "count": 2,
                                  "successCondition": "result.ok == true && "
                                                      "all(result.rates, {# > 0.9})",
                                  "provider": {"web": {
                                      "url": f"{url}/{{{{args.path}}}}",
                                      "headers": [{"key": "Authorization",
                                                   "value": "Bearer {{args.token}}"}],
                                      "jsonPath": "{$.data}", "timeoutSeconds": 5}}}]}}


def test_an_analysis_run_applied_by_a_user_measures_a_web_metric(
    mesh: Mesh, given: Given
) -> None:
    """analysis.md's web provider (url, headers, jsonPath) with an argument from a
    Secret: an AnalysisRun applied on its own, without a Rollout, is measured by the
    control plane; the Secret's value is sent, never shown."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "metrics-token"},
              "stringData": {"token": "t0ken-abc"}}
    with MetricServer({"data": {"ok": True, "rates": [0.99, 0.97]}},
                      token="t0ken-abc").running() as server:
        given.applied(secret, web_run(server.url))
        path = f"{RUNS}/web-check"
        deadline = time.monotonic() + 30
        st: dict[str, Any] = {}
        while time.monotonic() < deadline and st.get("phase") != "Successful":
            time.sleep(0.2)
            st = mesh.api.get(path).json().get("status") or {}
        assert st.get("phase") == "Successful", st
        assert server.paths[:2] == ["/status", "/status"]
    (result,) = st["metricResults"]
    assert result["count"] == 2
    assert json.loads(result["measurements"][0]["value"]) == {"ok": True,
                                                               "rates": [0.99, 0.97]}
    assert "t0ken-abc" not in json.dumps(mesh.api.get(path).json())

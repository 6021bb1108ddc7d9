"""An Argo blue-green Rollout end to end: real pods, real Envoy, real traffic.

Shaped like Argo's ``examples/rollout-bluegreen.yaml``: two Services over the same pods
(``myapp-active``, ``myapp-preview``), a Rollout with ``autoPromotionEnabled: false`` (and
here ``scaleDownDelaySeconds: 3``). As ``docs/features/bluegreen.md`` describes: given
v1 active, when v2 is released, then the preview Service answers from v2 while the
active one still answers from v1 and the Rollout waits (``BlueGreenPause``); when
promoted, then the active Service answers from v2 and, the delay later, v1's pods are
gone. Requests sent to the active Service all along, through the switch and the
scale-down, all succeed. Then a v3 held by a pre-promotion analysis that never completes
is switched to at once by ``promote --full`` (Argo's ``status.promoteFull``: no pause, no
analysis).
"""

from __future__ import annotations

import time
from typing import Any

from tests.argo_builders import analysis_template, blue_green_rollout
from tests.builders import service as service_body
from tests.conftest import run_cli
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When
from tests.e2e.test_argo_rollout import ROLLOUT, wait_status
from tests.metric_server import MetricServer

NAME = "myapp"
ACTIVE, PREVIEW = f"http://{NAME}-active:8080/", f"http://{NAME}-preview:8080/"
RUNS = "/apis/argoproj.io/v1alpha1/namespaces/default/analysisruns"


def rollout(version: str, **blue_green: Any) -> dict[str, Any]:
    return blue_green_rollout(NAME, version, spec={"revisionHistoryLimit": 2},
                              autoPromotionEnabled=False, scaleDownDelaySeconds=3,
                              **blue_green)


def test_blue_green_preview_then_promotion_switches_with_no_failed_request(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(service_body(f"{NAME}-active", app=NAME, port=8080, target_port="http"),
                  service_body(f"{NAME}-preview", app=NAME, port=8080, target_port="http"),
                  rollout("v1"))
    v1 = wait_status(mesh, "Healthy", lambda s: s.get("phase") == "Healthy")["stableRS"]
    mesh.converge()
    then.split_is({"v1": 10}, url=ACTIVE)

    with when.traffic(ACTIVE, rate=50, max_seconds=90) as load:
        # When v2 is released: the preview answers from it, the active one from v1
        mesh.apply(rollout("v2"))
        st = wait_status(mesh, "paused", lambda s: s.get("phase") == "Paused")
        assert st["pauseConditions"][0]["reason"] == "BlueGreenPause"
        v2 = st["currentPodHash"]
        assert st["blueGreen"] == {"activeSelector": v1, "previewSelector": v2}
        mesh.converge()
        then.split_is({"v2": 10}, url=PREVIEW)
        then.split_is({"v1": 10}, url=ACTIVE)

        # When promoted: the active Service switches, v1 goes after the delay
        promoted = run_cli("rollout", "promote", NAME, state_dir=mesh.cp.state_dir)
        assert promoted.returncode == 0, promoted.stderr
        st = wait_status(mesh, "promoted", lambda s: s.get("phase") == "Healthy"
                      and s.get("stableRS") == v2)
        assert st["blueGreen"]["activeSelector"] == v2
        mesh.converge()
        then.split_is({"v2": 10}, url=ACTIVE)
        deadline = time.monotonic() + 30
        while mesh.pods_of(f"{NAME}-{v1}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mesh.pods_of(f"{NAME}-{v1}") == []
        when.time_passes(1.0)
    then.no_request_failed(load, more_than=200)
    svc = mesh.api.get(f"/api/v1/namespaces/default/services/{NAME}-active").json()
    assert svc["spec"]["selector"] == {"app": NAME, "rollouts-pod-template-hash": v2}

    # When v3 waits on a pre-promotion analysis that never completes (its web metric
    # fails, failureLimit -1): promote --full skips it and the pause (Argo's
    # status.promoteFull); the active Service switches once v3 is available
    with MetricServer({"data": {"ok": False}}, token="t").running() as server:
        mesh.apply(analysis_template("never-done", [{
            "name": "ok", "interval": "1s", "failureLimit": -1,
            "successCondition": "result.ok == true",
            "provider": {"web": {"url": server.url, "jsonPath": "{$.data}", "headers": [
                {"key": "Authorization", "value": "Bearer t"}]}}}]))
        mesh.apply(rollout("v3", prePromotionAnalysis={
            "templates": [{"templateName": "never-done"}]}))
        st = wait_status(mesh, "analysing v3", lambda s: s.get("currentPodHash") != v2 and bool(
            (s.get("blueGreen") or {}).get("prePromotionAnalysisRunStatus")))
        v3, run = st["currentPodHash"], st["blueGreen"]["prePromotionAnalysisRunStatus"]["name"]
        time.sleep(2.0)
        st = mesh.api.get(ROLLOUT).json()["status"]
        assert st["blueGreen"]["activeSelector"] == v2 and st["phase"] != "Healthy"
        full = run_cli("rollout", "promote", "--full", NAME, state_dir=mesh.cp.state_dir)
        assert full.returncode == 0, full.stderr
        st = wait_status(mesh, "fully promoted", lambda s: s.get("phase") == "Healthy"
                         and s.get("stableRS") == v3)
    assert st["blueGreen"]["activeSelector"] == v3 and st["promoteFull"] is False
    assert mesh.api.get(f"{RUNS}/{run}").json()["spec"]["terminate"] is True
    mesh.converge()
    then.split_is({"v3": 10}, url=ACTIVE)

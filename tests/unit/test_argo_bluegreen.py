"""A blue-green Rollout stepped tick by tick with a fake clock.

The objects follow Argo's ``examples/rollout-bluegreen.yaml`` (a Rollout with
``activeService: rollout-bluegreen-active``, ``previewService:
rollout-bluegreen-preview``, ``autoPromotionEnabled: false``); each case names the
behaviour of ``docs/features/bluegreen.md`` / ``rollout/bluegreen.go`` it follows.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.unit.argo_analysis_fakes import ScriptedMeasurer
from tests.unit.argo_harness import ArgoCluster, template
from tests.unit.delivery_fakes import FakeClock

from meshpilot.delivery.argo import ArgoController
from meshpilot.delivery.argo.runner import AnalysisRunner
from meshpilot.delivery.argo.workloads import pod_template_hash

NS, NAME = "default", "rollout-bluegreen"
ACTIVE, PREVIEW = f"{NAME}-active", f"{NAME}-preview"
HASH = "rollouts-pod-template-hash"


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": NAME},
                     "ports": [{"port": 80, "targetPort": 8080, "name": "http"}]}}


def rollout(version: str, **blue_green: Any) -> dict[str, Any]:
    tpl = template(version)
    tpl["metadata"]["labels"] = {"app": NAME}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": NAME}},
                     "template": tpl,
                     "strategy": {"blueGreen": {"activeService": ACTIVE,
                                                "previewService": PREVIEW, **blue_green}}}}


class BlueGreen:
    def __init__(self, *script: Any, **blue_green: Any) -> None:
        self.cluster = ArgoCluster()
        self.clock = FakeClock()
        self.spec = blue_green
        for name in (ACTIVE, PREVIEW):
            self.cluster.put(service(name))
        self.cluster.put(rollout("v1", **blue_green))
        self.controller = ArgoController(self.clock, self.cluster, self.cluster)
        self.runner = AnalysisRunner(self.clock, self.cluster, self.cluster,
                                     ScriptedMeasurer(*script))
        self.tick(2)
        self.v1 = self.status["stableRS"]

    def tick(self, n: int = 1, dt: float = 1.0) -> None:
        for _ in range(n):
            self.clock.advance(dt)
            self.controller.tick(NS, NAME)
            for kind, ns, name in list(self.cluster.objects):
                if kind == "AnalysisRun":
                    self.runner.tick(ns, name)

    def release(self, version: str) -> str:
        self.cluster.put(rollout(version, **copy.deepcopy(self.spec)))
        tpl = template(version)
        tpl["metadata"]["labels"] = {"app": NAME}
        return pod_template_hash(tpl)

    @property
    def status(self) -> dict[str, Any]:
        return self.cluster.get("Rollout", NAME)["status"]  # type: ignore[index]

    def selects(self, name: str) -> str | None:
        svc = self.cluster.get("Service", name)
        assert svc is not None
        return svc["spec"]["selector"].get(HASH)  # type: ignore[no-any-return]

    def replicas(self, pod_hash: str) -> int | None:
        body = self.cluster.get("Deployment", f"{NAME}-{pod_hash}")
        return None if body is None else int(body["spec"]["replicas"])

    def command(self, command: str) -> str:
        decision = self.controller.command(NS, NAME, command)
        assert decision is not None
        return decision.refused


def test_the_first_revision_is_active_at_once() -> None:
    # bluegreen.md: "If the active service is not sending traffic to a ReplicaSet, the
    # controller will immediately start sending traffic to the ReplicaSet"
    h = BlueGreen()
    assert h.status["phase"] == "Healthy"
    assert h.selects(ACTIVE) == h.v1 and h.selects(PREVIEW) == h.v1
    assert h.status["blueGreen"]["activeSelector"] == h.v1
    assert h.cluster.get("Service", ACTIVE)["spec"]["selector"]["app"] == NAME  # type: ignore[index]


def test_manual_promotion_preview_then_switch_then_delayed_scale_down() -> None:
    # autoPromotionEnabled: false -> BlueGreenPause until promote; preview selects the
    # new revision once available; the old one is scaled down scaleDownDelaySeconds later
    h = BlueGreen(autoPromotionEnabled=False, scaleDownDelaySeconds=10)
    v2 = h.release("v2")
    h.tick()
    assert h.replicas(v2) == 2
    assert h.selects(ACTIVE) == h.v1 and h.selects(PREVIEW) == h.v1  # not yet available
    h.tick()
    assert h.selects(PREVIEW) == v2 and h.selects(ACTIVE) == h.v1
    st = h.status
    assert st["phase"] == "Paused" and st["pauseConditions"][0]["reason"] == "BlueGreenPause"
    h.tick(5)
    assert h.status["phase"] == "Paused" and h.selects(ACTIVE) == h.v1
    assert h.command("promote") == ""
    assert h.selects(ACTIVE) == v2
    st = h.status
    assert st["phase"] == "Healthy" and st["stableRS"] == v2
    assert h.replicas(h.v1) == 2  # kept for the delay
    h.tick(9)
    assert h.replicas(h.v1) == 2
    h.tick(2)
    assert h.replicas(h.v1) == 0 and h.replicas(v2) == 2


def test_auto_promotion_after_seconds() -> None:
    # autoPromotionSeconds: promoted that long after entering the pause
    h = BlueGreen(autoPromotionSeconds=5, scaleDownDelaySeconds=0)
    v2 = h.release("v2")
    h.tick(2)
    assert h.status["phase"] == "Paused"
    h.tick(4)
    assert h.selects(ACTIVE) == h.v1
    h.tick(2)
    assert h.selects(ACTIVE) == v2 and h.status["phase"] == "Healthy"


def test_auto_promotion_switches_as_soon_as_available() -> None:
    h = BlueGreen()
    v2 = h.release("v2")
    h.tick()
    assert h.selects(ACTIVE) == h.v1
    h.tick()
    assert h.selects(ACTIVE) == v2 and h.status["stableRS"] == v2


def smoke_template() -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "smoke", "namespace": NS},
            "spec": {"metrics": [{"name": "ok", "successCondition": "result == 1",
                                  "provider": {"web": {"url": "http://127.0.0.1:9/"}}}]}}


def test_failed_pre_promotion_analysis_aborts_without_switching() -> None:
    # prePromotionAnalysis blocks the switch; Failed aborts ("PrePromotion analysis")
    h = BlueGreen(0, prePromotionAnalysis={"templates": [{"templateName": "smoke"}]})
    h.cluster.put(smoke_template())
    v2 = h.release("v2")
    h.tick(4)
    st = h.status
    assert st["abort"] is True and st["phase"] == "Degraded"
    assert "PrePromotion analysis phase error/failed" in st["message"]
    assert st["blueGreen"]["prePromotionAnalysisRunStatus"]["status"] == "Failed"
    assert h.selects(ACTIVE) == h.v1 and h.selects(PREVIEW) == h.v1
    h.tick(40)
    assert h.replicas(v2) == 0  # after the scale-down delay


def test_failed_post_promotion_analysis_switches_back_to_stable() -> None:
    # postPromotionAnalysis: "If the analysis run fails or errors out, the Rollout enters
    # an aborted state and switches traffic back to the previous stable ReplicaSet"
    h = BlueGreen(0, postPromotionAnalysis={"templates": [{"templateName": "smoke"}]})
    h.cluster.put(smoke_template())
    v2 = h.release("v2")
    h.tick(2)
    assert h.selects(ACTIVE) == v2 and h.status["stableRS"] == h.v1
    h.tick(2)
    st = h.status
    assert st["abort"] is True and "PostPromotion analysis phase error/failed" in st["message"]
    assert h.selects(ACTIVE) == h.v1 and st["stableRS"] == h.v1
    assert h.replicas(h.v1) == 2


def test_passing_pre_and_post_analysis_promote() -> None:
    h = BlueGreen(1, 1, prePromotionAnalysis={"templates": [{"templateName": "smoke"}]},
                  postPromotionAnalysis={"templates": [{"templateName": "smoke"}]})
    h.cluster.put(smoke_template())
    v2 = h.release("v2")
    h.tick(6)
    st = h.status
    assert st["phase"] == "Healthy" and st["stableRS"] == v2 and h.selects(ACTIVE) == v2
    assert st["blueGreen"]["postPromotionAnalysisRunStatus"]["status"] == "Successful"


def test_a_new_template_during_post_promotion_analysis_returns_active_to_stable() -> None:
    # the switched revision was never stable: a newer template starts over from the
    # stable one (its pre-promotion path), the active Service back on stable meanwhile
    h = BlueGreen(*([[1]] * 10), autoPromotionEnabled=False,
                  postPromotionAnalysis={"templates": [{"templateName": "forever"}]})
    h.cluster.put({**smoke_template(), "metadata": {"name": "forever", "namespace": NS},
                   "spec": {"metrics": [{"name": "ok", "interval": "1s",
                                         "successCondition": "result == [1]",
                                         "provider": {"web": {"url": "http://127.0.0.1:9/"}}}]}})
    v2 = h.release("v2")
    h.tick(2)
    assert h.command("promote") == ""
    assert h.selects(ACTIVE) == v2 and h.status["stableRS"] == h.v1
    v3 = h.release("v3")
    h.tick()
    assert h.selects(ACTIVE) == h.v1 and h.status["phase"] == "Progressing"
    h.tick()
    assert h.selects(PREVIEW) == v3 and h.status["phase"] == "Paused"

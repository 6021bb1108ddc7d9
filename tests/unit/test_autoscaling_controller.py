"""The HorizontalPodAutoscaler controller over fakes of its ports, synced tick by tick
with a fake clock: the CPU time of the pods grows as a test says, and the controller
scales the Deployment and writes the status.

Each case follows Kubernetes' HPA controller (``horizontal.go``): a target at zero
replicas is not scaled (ScalingDisabled); a count outside min/max is corrected first;
the scale is written to the target and the status carries currentReplicas,
desiredReplicas, currentMetrics and the AbleToScale / ScalingActive / ScalingLimited
conditions; a metric that cannot be computed holds the count (FailedGetResourceMetric).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.unit.delivery_fakes import FakeClock

from meshpilot.delivery.autoscaling import AutoscalerController, PodSample
from meshpilot.delivery.autoscaling.metrics import CpuRates
from meshpilot.delivery.ports import WriteError

NS = "default"


def deployment(replicas: int, cpu: str | None = "100m") -> dict[str, Any]:
    resources = {"requests": {"cpu": cpu}} if cpu else {}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS, "resourceVersion": "1"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "app", "resources": resources}]}}}}


def autoscaler(behavior: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 50}}}], **spec}}
    if behavior is not None:
        body["spec"]["behavior"] = behavior
    return body


@dataclass
class FakeCluster:
    """Reader, writer and pod metrics: each pod burns ``cores`` of CPU per second."""

    clock: FakeClock
    hpa: dict[str, Any] = field(default_factory=autoscaler)
    target: dict[str, Any] | None = field(default_factory=lambda: deployment(1))
    cores: float = 0.0
    used: dict[str, float] = field(default_factory=dict)
    last: float | None = None
    rate: float | None = 0.0
    refuse: bool = False
    scales: list[int] = field(default_factory=list)

    def autoscalers(self) -> list[tuple[str, str]]:
        return [(NS, "web")]

    def autoscaler(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.hpa)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.target)

    def pods(self, namespace: str, deployment: str) -> list[PodSample]:
        replicas = int(self.target["spec"]["replicas"]) if self.target else 0
        elapsed = self.clock() - self.last if self.last is not None else 0.0
        self.last = self.clock()
        out = []
        for i in range(replicas):
            name = f"web-{i}"
            self.used[name] = self.used.get(name, 0.0) + self.cores * elapsed
            out.append(PodSample(name, True, False, self.used[name]))
        return out

    def request_rate(self, labels: Mapping[str, str], window_s: float) -> float | None:
        return self.rate

    def scale(self, body: dict[str, Any], replicas: int) -> None:
        if self.refuse:
            raise WriteError("HTTP 409: conflict")
        assert self.target is not None
        self.target["spec"]["replicas"] = replicas
        self.scales.append(replicas)

    def put_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.hpa["status"] = copy.deepcopy(status)

    def condition(self, kind: str) -> tuple[str, str]:
        found = [c for c in self.hpa["status"]["conditions"] if c["type"] == kind]
        return found[0]["status"], found[0]["reason"]


def setup(**fields: Any) -> tuple[FakeCluster, AutoscalerController, FakeClock]:
    clock = FakeClock()
    cluster = FakeCluster(clock, **fields)
    return cluster, AutoscalerController(clock, cluster, cluster, cluster), clock


def sync(controller: AutoscalerController, clock: FakeClock, n: int = 1,
         dt: float = 15.0) -> None:
    for _ in range(n):
        clock.advance(dt)
        controller.sync_all()


def test_busy_pods_scale_up_and_the_status_says_why() -> None:
    """One pod at 0.1 core of a 100m request is 100 % of a 50 % target: 2 replicas."""
    cluster, controller, clock = setup(cores=0.1)
    sync(controller, clock)  # the first reading has nothing to compare with
    assert cluster.scales == [] and cluster.condition("ScalingActive")[1] == (
        "FailedGetResourceMetric")
    sync(controller, clock)
    assert cluster.scales == [2]
    status = cluster.hpa["status"]
    assert status["currentReplicas"] == 1 and status["desiredReplicas"] == 2
    assert status["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageValue": "100m", "averageUtilization": 100}}}]
    assert cluster.condition("AbleToScale") == ("True", "SucceededRescale")
    assert cluster.condition("ScalingActive") == ("True", "ValidMetricFound")
    assert "lastScaleTime" in status


def test_idle_pods_scale_down_after_the_stabilisation_window() -> None:
    """Without behavior the 300 s window holds the last busy recommendation (3, at
    t=30 s): idle from t=45 s, the count stays 3 through t=315 s and is 1 at t=330 s."""
    cluster, controller, clock = setup(target=deployment(3), cores=0.05)
    sync(controller, clock, 2)  # t=30: 50 % of a 50 % target, 3 recommended
    assert cluster.scales == []
    cluster.cores = 0.0
    sync(controller, clock, 19)  # t=45 .. 315
    assert cluster.scales == []
    assert cluster.condition("AbleToScale") == ("True", "ScaleDownStabilized")
    sync(controller, clock)  # t=330
    assert cluster.scales == [1]


def test_behavior_windows_make_scale_down_fast() -> None:
    """scaleDown window 2 s, 100 % per 1 s: the count falls to min soon after load."""
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 2, "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 1}]}}
    cluster, controller, clock = setup(hpa=autoscaler(behavior), target=deployment(4))
    sync(controller, clock, 1, dt=1)
    sync(controller, clock, 1, dt=1)
    assert cluster.scales == [1]
    assert cluster.condition("ScalingLimited") == ("True", "TooFewReplicas")  # 0 asked


def test_a_target_at_zero_replicas_is_not_scaled() -> None:
    """Flagger scales a canary to zero; its autoscaler must leave it there."""
    cluster, controller, clock = setup(target=deployment(0), cores=1.0)
    sync(controller, clock, 3)
    assert cluster.scales == []
    assert cluster.condition("ScalingActive") == ("False", "ScalingDisabled")
    assert cluster.hpa["status"]["desiredReplicas"] == 0


def test_a_count_outside_min_max_is_corrected_first() -> None:
    cluster, controller, clock = setup(target=deployment(9))
    sync(controller, clock)
    assert cluster.scales == [5]
    assert cluster.condition("ScalingLimited") == ("True", "TooManyReplicas")


def test_no_cpu_request_holds_the_count_and_says_why() -> None:
    cluster, controller, clock = setup(target=deployment(2, cpu=None), cores=1.0)
    sync(controller, clock, 3)
    assert cluster.scales == []
    status, reason = cluster.condition("ScalingActive")
    assert (status, reason) == ("False", "FailedGetResourceMetric")
    assert "resources.requests.cpu" in cluster.hpa["status"]["conditions"][1]["message"]


def test_a_refused_scale_is_reported() -> None:
    cluster, controller, clock = setup(cores=1.0, refuse=True)
    sync(controller, clock, 2)
    assert cluster.condition("AbleToScale") == ("False", "FailedUpdateScale")


def test_the_request_rate_per_pod() -> None:
    """Pods istio_requests_per_second, AverageValue 10: 45 req/s over 1 pod -> 5."""
    metrics = [{"type": "Pods", "pods": {"metric": {"name": "istio_requests_per_second"},
                                         "target": {"type": "AverageValue",
                                                    "averageValue": "10"}}}]
    cluster, controller, clock = setup(hpa=autoscaler(metrics=metrics), rate=45.0)
    sync(controller, clock)
    assert cluster.scales == [4]  # limited to max(2 x 1, 4) per sync without behavior
    sync(controller, clock)
    assert cluster.scales == [4, 5]
    assert cluster.hpa["status"]["currentMetrics"][0]["pods"]["current"] == {
        "averageValue": "11250m"}


def test_a_missing_target_is_reported() -> None:
    cluster, controller, clock = setup(target=None)
    sync(controller, clock)
    assert cluster.condition("AbleToScale") == ("False", "FailedGetScale")


def test_readings_of_pods_gone_are_forgotten() -> None:
    """A pod's last CPU reading is kept only while the pod is there."""
    cluster, controller, clock = setup(target=deployment(2))
    sync(controller, clock)
    assert set(controller.cpu.last) == {(NS, "web-0"), (NS, "web-1")}
    assert cluster.target is not None
    cluster.target["spec"]["replicas"] = 1
    sync(controller, clock)
    assert set(controller.cpu.last) == {(NS, "web-0")}


def test_cpu_burnt_while_starting_is_not_counted() -> None:
    """A window that began before the pod was ready gives no usage (Kubernetes ignores a
    sample not taken wholly after the readiness transition): the pod is missing, not
    busy, for that sync."""
    rates = CpuRates()
    assert rates.usage(NS, [PodSample("p", False, False, 1.0)], 0.0) == {"p": None}
    assert rates.usage(NS, [PodSample("p", True, False, 3.0)], 1.0) == {"p": None}
    assert rates.usage(NS, [PodSample("p", True, False, 3.5)], 2.0) == {"p": 0.5}

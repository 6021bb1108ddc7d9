"""HorizontalPodAutoscalers on a real mesh: real pods burning real CPU, scaled by the
control plane through the store, and Flagger's autoscalerRef.

The first case follows Kubernetes' HPA walkthrough (a CPU-bound app under load scales up
and back down once the load stops), with short ``behavior`` windows and a 1 s sync
period so it takes seconds. The second follows Flagger's HPA e2e spec
(``test/kubernetes/test-hpa.sh``): its podinfo HorizontalPodAutoscaler (min 2, max 4,
99 % CPU) applied unchanged but for the names, and a Canary whose autoscalerRef names it:
the primary gets ``NAME-primary``, which scales the primary to its minimum, while the
target's own autoscaler leaves the canary at zero; a release scales the canary up to the
autoscaler's minReplicas and the promotion keeps the primary's autoscaled count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.builders import service
from tests.conftest import ControlPlane, wait_for
from tests.e2e.mesh import Mesh
from tests.e2e.rollouts import NAME, canary, target
from tests.e2e.scenario import Given, Then, When

HPA = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


@pytest.fixture
def mesh(control_plane_factory: Callable[..., ControlPlane]) -> Iterator[Mesh]:
    """A mesh whose autoscalers sync every second (Kubernetes' default is 15 s)."""
    m = Mesh(control_plane_factory("mesh", args=["--hpa-sync-period", "1s"]))
    try:
        yield m
    finally:
        m.close()


def burner() -> dict[str, Any]:
    """The demo app requesting 100m of CPU: one busy request at a time is far above
    half of it."""
    body = target("v1", replicas=1)
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "100m"}}
    return body


def autoscaler(name: str, deployment: str, *, min_replicas: int, max_replicas: int,
               utilization: int, behavior: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicas": min_replicas, "maxReplicas": max_replicas,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": utilization}}}]}
    if behavior is not None:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def get(mesh: Mesh, path: str) -> dict[str, Any] | None:
    r = mesh.api.get(path)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def replicas(mesh: Mesh, deployment: str) -> int:
    body = get(mesh, f"{DEPLOYMENTS}/{deployment}")
    assert body is not None, f"no Deployment {deployment}"
    return int(body["spec"]["replicas"])


def condition(status: dict[str, Any], kind: str) -> tuple[str, str]:
    found = [c for c in status.get("conditions") or [] if c["type"] == kind]
    return (found[0]["status"], found[0]["reason"]) if found else ("", "")


def test_cpu_load_scales_a_deployment_up_and_back_down(mesh: Mesh, given: Given,
                                                       when: When) -> None:
    fast = {"scaleUp": {"stabilizationWindowSeconds": 0},
            "scaleDown": {"stabilizationWindowSeconds": 3, "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 1}]}}
    given.applied(burner(), service(NAME, port=8080, target_port="http"))
    mesh.apply(autoscaler(NAME, NAME, min_replicas=1, max_replicas=3, utilization=50,
                          behavior=fast))

    with when.traffic(f"http://{NAME}:8080/burn/100", workers=2, rate=None, max_seconds=60):
        when.until(lambda: replicas(mesh, NAME) >= 2, 45, "a scale-up under CPU load")
        status = get(mesh, f"{HPA}/{NAME}")
        assert status is not None
        hpa_status = status["status"]
        assert hpa_status["desiredReplicas"] >= 2 and "lastScaleTime" in hpa_status
        (cpu,) = hpa_status["currentMetrics"]
        assert cpu["resource"]["name"] == "cpu"
        assert cpu["resource"]["current"]["averageUtilization"] > 50
        assert condition(hpa_status, "ScalingActive") == ("True", "ValidMetricFound")
        when.until(lambda: len(mesh.pods_of(NAME, terminating=False)) >= 2, 30,
                   "the runtime to start the new pod")

    when.until(lambda: replicas(mesh, NAME) == 1, 45, "a scale-down once the load stopped")
    # the status says so at the next sync, as Kubernetes' does
    when.until(lambda: (get(mesh, f"{HPA}/{NAME}") or {})["status"]["currentReplicas"] == 1,
               15, "the status to count 1 replica")


def test_a_canary_autoscaler_ref_gives_the_primary_its_own_autoscaler(
        mesh: Mesh, given: Given, when: When, then: Then) -> None:
    mesh.apply(autoscaler(NAME, NAME, min_replicas=2, max_replicas=4, utilization=99))
    spec = canary()
    spec["spec"]["autoscalerRef"] = {"apiVersion": "autoscaling/v2",
                                     "kind": "HorizontalPodAutoscaler", "name": NAME}
    given.rollout(spec)

    primary_hpa = when.until(lambda: get(mesh, f"{HPA}/{NAME}-primary"), 30,
                             "the primary's autoscaler")
    assert primary_hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": f"{NAME}-primary"}
    assert (primary_hpa["spec"]["minReplicas"], primary_hpa["spec"]["maxReplicas"]) == (2, 4)
    # the primary's autoscaler brings the primary up to its minimum...
    when.until(lambda: replicas(mesh, f"{NAME}-primary") == 2, 30, "the primary at 2")
    when.converges()  # two ready primary pods
    assert len(mesh.pods_of(f"{NAME}-primary", terminating=False)) == 2
    # ...while the target's leaves the canary at zero, where Flagger put it
    # (its first status may predate the scale to zero: a metric it could not read yet)
    def target_status() -> dict[str, Any]:
        status = (get(mesh, f"{HPA}/{NAME}") or {}).get("status") or {}
        return status if condition(status, "ScalingActive")[1] == "ScalingDisabled" else {}

    target_hpa = when.until(target_status, 30, "the target's autoscaler disabled at zero")
    assert condition(target_hpa, "ScalingActive") == ("False", "ScalingDisabled")
    assert replicas(mesh, NAME) == 0
    wait_for(lambda: (get(mesh, f"{HPA}/{NAME}-primary") or {}).get("status", {}).get(
        "currentReplicas") == 2, 30)

    # a release without replicas: the canary starts at its autoscaler's minReplicas, and
    # the promotion leaves the primary at the count its autoscaler keeps
    with when.traffic(rate=40, max_seconds=90) as load:
        when.apply_nowait(target("v2", replicas=0))
        when.until(lambda: replicas(mesh, NAME) == 2, 30, "the canary at minReplicas")
        then.rollout_phase("Succeeded", timeout=80)
        then.no_request_failed(load)
    assert replicas(mesh, f"{NAME}-primary") == 2
    when.until(lambda: replicas(mesh, NAME) == 0, 30, "the canary back at zero")


def test_the_mesh_request_rate_scales_a_deployment(mesh: Mesh, given: Given,
                                                   when: When) -> None:
    """A Pods metric ``istio_requests_per_second`` (the adapter-style name of the rate of
    ``istio_requests_total``), AverageValue 4: about 20 requests a second need more
    than one pod; the status reports the rate per pod from the mesh's own telemetry, and
    beside it the Service's rate of an Object metric (whose high target asks for none)."""
    given.applied(target("v1", replicas=1), service(NAME, port=8080, target_port="http"))
    hpa = autoscaler(NAME, NAME, min_replicas=1, max_replicas=3, utilization=50)
    hpa["spec"]["metrics"] = [{"type": "Pods", "pods": {
        "metric": {"name": "istio_requests_per_second"},
        "target": {"type": "AverageValue", "averageValue": "4"}}}, {"type": "Object", "object": {
            "describedObject": {"apiVersion": "v1", "kind": "Service", "name": NAME},
            "metric": {"name": "istio_requests_per_second"},
            "target": {"type": "Value", "value": "1k"}}}]
    mesh.apply(hpa)

    with when.traffic(f"http://{NAME}:8080/", workers=2, rate=20, max_seconds=60):
        when.until(lambda: replicas(mesh, NAME) >= 2, 45, "a scale-up on request rate")
    status = get(mesh, f"{HPA}/{NAME}")
    assert status is not None
    rate, service_rate = status["status"]["currentMetrics"]
    assert rate["pods"]["metric"]["name"] == "istio_requests_per_second"
    assert float(rate["pods"]["current"]["averageValue"].rstrip("m")) > 0
    assert service_rate["object"]["describedObject"]["name"] == NAME
    assert float(service_rate["object"]["current"]["value"].rstrip("m")) > 0

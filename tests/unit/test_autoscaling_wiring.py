"""The autoscaler's adapters over a real SQLite store and the one config path: a scale
is written as Kubernetes' HPA controller writes the scale subresource (with the
Deployment's resourceVersion, so a user's concurrent apply wins and a refused scale
changes nothing), the status with PutStatus, kept across the user's applies."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from tests.builders import deployment as deployment_body
from tests.builders import to_yaml

from meshpilot.delivery import WriteError
from meshpilot.server.autoscaling_wiring import RuntimeMetrics, StoreAutoscalers
from meshpilot.server.config_service import ConfigService
from meshpilot.store import SqliteStore

HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
       "metadata": {"name": "web", "namespace": "default"},
       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": "web"}, "maxReplicas": 4}}


def web(replicas: int = 1, image: str = "web:1") -> dict[str, object]:
    return deployment_body("web", labels={"app": "web"}, replicas=replicas,
                           containers=[{"name": "app", "image": image}])


def test_a_scale_goes_through_the_store_and_loses_to_a_concurrent_apply(
        store: SqliteStore) -> None:
    service = ConfigService(store)
    service.apply([("it.yaml", to_yaml(web(), HPA))])
    autoscalers = StoreAutoscalers(service)
    assert autoscalers.autoscalers() == [("default", "web")]
    read = autoscalers.deployment("default", "web")
    assert read is not None
    autoscalers.scale(read, 3)
    stored = autoscalers.deployment("default", "web")
    assert stored is not None and stored["spec"]["replicas"] == 3
    service.apply([("user.yaml", to_yaml(web(replicas=1, image="web:2")))])
    with pytest.raises(WriteError, match="HTTP 409"):
        autoscalers.scale(stored, 4)  # read before the user's apply: refused
    after = autoscalers.deployment("default", "web")
    assert after is not None and after["spec"]["replicas"] == 1
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "web:2"


def test_the_status_is_written_and_kept_across_applies(store: SqliteStore) -> None:
    service = ConfigService(store)
    service.apply([("it.yaml", to_yaml(HPA))])
    autoscalers = StoreAutoscalers(service)
    autoscalers.put_status("default", "web", {"currentReplicas": 1, "desiredReplicas": 2})
    service.apply([("it.yaml", to_yaml({**HPA, "spec": {**HPA["spec"], "maxReplicas": 5}}))])
    body = autoscalers.autoscaler("default", "web")
    assert body is not None and body["status"]["desiredReplicas"] == 2
    assert body["spec"]["maxReplicas"] == 5
    autoscalers.put_status("default", "gone", {})  # a deleted autoscaler: nothing, no error


def pod(name: str, deployment: str = "web", phase: str = "Running") -> SimpleNamespace:
    """A runtime pod whose one container is this test's own process group."""
    return SimpleNamespace(name=name, namespace="default", deployment=deployment,
                           phase=phase, ready=phase == "Running", pids=(os.getpgid(0),))


def test_the_runtime_pods_of_a_deployment_with_their_cpu_time() -> None:
    """Only the Deployment's live pods are read (not another's, not a Terminating one);
    without telemetry there is no rate (the metric fails rather than reading 0)."""
    pods = [pod("web-a"), pod("other-a", deployment="other"),
            pod("web-b", phase="Terminating")]
    metrics = RuntimeMetrics(lambda: pods, lambda: None)  # type: ignore[arg-type,return-value]
    (sample,) = metrics.pods("default", "web")
    assert sample.name == "web-a" and sample.ready and not sample.pending
    assert sample.cpu_seconds is not None and sample.cpu_seconds > 0
    assert metrics.request_rate({"reporter": "destination"}, 30.0) is None

"""The scale and status subresources' pure parts (meshpilot.server.kube_subresources),
shaped as the API server serves them: an autoscaling/v1 Scale whose status.selector is
the label-selector text, a DeploymentStatus with observedGeneration, and a watch that
reports a Deployment again when its pods' status changes."""

from __future__ import annotations

from typing import Any

import pytest

from meshpilot.api.identity import ObjectKey
from meshpilot.server import kube_subresources as sub
from meshpilot.store import StoredObject

BODY: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7", "uid": "u"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"version": "v1", "app": "web"}}},
    "status": {"replicas": 1}}


def test_a_scale_shows_the_replicas_and_selector() -> None:
    scale = sub.scale_of(BODY)
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 1, "selector": "app=web,version=v1"}
    assert scale["metadata"] == {"name": "web", "namespace": "default",
                                 "resourceVersion": "7", "uid": "u"}


def test_a_scale_write_sets_replicas_and_its_resource_version_is_a_precondition() -> None:
    out = sub.scaled(BODY, {"spec": {"replicas": 5}, "metadata": {"resourceVersion": "6"}})
    assert out["spec"]["replicas"] == 5 and out["spec"]["selector"] == BODY["spec"]["selector"]
    assert out["metadata"]["resourceVersion"] == "6"
    for bad in ({"spec": {"replicas": -1}}, {"spec": {"replicas": "3"}}, {"spec": {}},
                {"spec": {"replicas": True}}, []):
        with pytest.raises(sub.BadScale):
            sub.scaled(BODY, bad)


def test_a_deployment_status_from_the_runtime() -> None:
    live = {"replicas": 2, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 2,
            "templateHash": "abc", "observedGeneration": 3, "error": None}
    status = sub.deployment_status(BODY, live)
    conditions = {c["type"]: c for c in status.pop("conditions")}
    assert status == {
        "replicas": 2, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 2,
        "unavailableReplicas": 1, "observedGeneration": 3}
    assert (conditions["Available"]["status"], conditions["Progressing"]["reason"]) == (
        "False", "ReplicaSetUpdated")
    ready = sub.deployment_status(BODY, {**live, "readyReplicas": 2, "availableReplicas": 2})
    conditions = {c["type"]: c for c in ready["conditions"]}
    assert (conditions["Available"]["status"], conditions["Progressing"]["reason"]) == (
        "True", "NewReplicaSetAvailable")
    failing = sub.deployment_status(BODY, {**live, "error": "no such command"})
    assert failing["conditions"][-1] == {"type": "ReplicaFailure", "status": "True",
                                         "reason": "FailedCreate",
                                         "message": "no such command"}


def test_a_watch_reports_a_deployment_whose_pods_changed() -> None:
    key = ObjectKey("apps", "Deployment", "default", "web")
    obj = StoredObject(key, BODY, 7, 1)
    statuses = {key: {"readyReplicas": 1}}
    watch = sub.LiveStatusWatch(lambda o: statuses.get(o.key))
    watch.sent("ADDED", obj)
    assert watch.changed() == []
    statuses[key] = {"readyReplicas": 2}
    assert watch.changed() == [obj]
    watch.sent("MODIFIED", obj)
    assert watch.changed() == []
    watch.sent("DELETED", obj)
    statuses[key] = {"readyReplicas": 0}
    assert watch.changed() == []
    # followed without an event (a watch from a resourceVersion): reported at first look
    watch.follow(obj)
    assert watch.changed() == [obj]

"""A pod watch's events between two looks at the runtime's pods, as an API server
sends them to ``kubectl get pods -w``: a new pod ADDED, a changed one MODIFIED, a gone
one DELETED (with its last body), nothing for a pod that did not change."""

from __future__ import annotations

from typing import Any

from meshpilot.server.kube_pods import PodChanges


def pod(name: str, phase: str = "Running", ready: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "a"}},
            "status": {"phase": phase, "ready": ready}}


def test_an_unchanged_pod_sends_nothing() -> None:
    changes = PodChanges([pod("a-1")])
    assert changes.look([pod("a-1")]) == []


def test_added_modified_and_deleted_in_name_order() -> None:
    changes = PodChanges([pod("a-1"), pod("a-2", "Pending", ready=False)])
    events = changes.look([pod("a-2"), pod("a-3", "Pending", ready=False)])
    assert [(kind, body["metadata"]["name"]) for kind, body in events] == [
        ("DELETED", "a-1"), ("MODIFIED", "a-2"), ("ADDED", "a-3")]
    assert events[0][1]["status"]["phase"] == "Running"  # the gone pod's last body
    assert events[1][1]["status"]["ready"] is True


def test_each_look_is_judged_against_the_one_before() -> None:
    changes = PodChanges([])
    assert [k for k, _ in changes.look([pod("a-1", "Pending", False)])] == ["ADDED"]
    assert [k for k, _ in changes.look([pod("a-1")])] == ["MODIFIED"]
    assert changes.look([pod("a-1")]) == []
    assert [k for k, _ in changes.look([])] == ["DELETED"]


def test_pods_of_the_same_name_in_two_namespaces_are_two_pods() -> None:
    other = pod("a-1")
    other["metadata"]["namespace"] = "other"
    changes = PodChanges([pod("a-1")])
    events = changes.look([pod("a-1"), other])
    assert [(k, b["metadata"]["namespace"]) for k, b in events] == [("ADDED", "other")]

"""A Canary's ``autoscalerRef``, stepped tick by tick over the in-memory cluster.

Each case follows Flagger's HPA reconciler (``pkg/canary/hpa_reconciler.go``) and its
Deployment controller (``pkg/canary/deployment_controller.go``): the primary gets
``NAME-primary``, a copy of the target's HorizontalPodAutoscaler pointed at the primary
(``primaryScalerReplicas`` overriding its bounds) and updated when the target's changes;
the primary's replicas are not reset by a promotion when an autoscaler owns them; the
canary scales up from zero to the autoscaler's minReplicas (when above 1) and is then
left to its autoscaler until it goes back to zero.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.unit.rollout_harness import NAME, Harness

REF = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": NAME}


def hpa(min_replicas: int = 2, max_replicas: int = 4, utilization: int = 99) -> dict[str, Any]:
    """Flagger's podinfo hpa.yaml (kustomize/podinfo), with its bounds as parameters."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": "default", "labels": {
            "team": "web", "kustomize.toolkit.fluxcd.io/name": "apps"}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": min_replicas, "maxReplicas": max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": utilization}}}],
        },
    }


def harness(**ref: Any) -> Harness:
    h = Harness(autoscalerRef={**REF, **ref})
    h.cluster.put(hpa())
    return h


def primary_hpa(h: Harness) -> dict[str, Any]:
    body = h.cluster.get("HorizontalPodAutoscaler", f"{NAME}-primary")
    assert body is not None, h.messages()
    return body


def scale(h: Harness, name: str, replicas: int) -> None:
    """What the autoscaler controller does: the Deployment's replicas, written back."""
    body = copy.deepcopy(h.cluster.get("Deployment", name))
    assert body is not None
    body["spec"]["replicas"] = replicas
    h.cluster.put(body)


def test_initialization_makes_the_primary_autoscaler_from_the_targets() -> None:
    h = harness()
    h.initialize()
    made = primary_hpa(h)
    assert made["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                           "name": f"{NAME}-primary"},
        "minReplicas": 2, "maxReplicas": 4, "metrics": hpa()["spec"]["metrics"]}
    assert made["metadata"]["labels"]["team"] == "web"
    assert "kustomize.toolkit.fluxcd.io/name" not in made["metadata"]["labels"]  # as Flagger
    assert made["metadata"]["annotations"]["meshpilot.io/canary"] == NAME
    assert h.target_replicas() == 0  # the target's autoscaler sees 0: scaling disabled


def test_primary_scaler_replicas_override_the_bounds() -> None:
    h = harness(primaryScalerReplicas={"minReplicas": 3, "maxReplicas": 6})
    h.initialize()
    spec = primary_hpa(h)["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 6)


def test_a_change_to_the_targets_autoscaler_reaches_the_primarys() -> None:
    h = harness()
    h.initialize()
    h.cluster.put(hpa(max_replicas=8))
    h.tick()
    assert primary_hpa(h)["spec"]["maxReplicas"] == 8


def test_the_primarys_replicas_are_its_autoscalers_through_a_promotion() -> None:
    h = harness()
    h.initialize()
    scale(h, f"{NAME}-primary", 4)
    h.release("v2")
    h.run_until(lambda: h.phase == "Succeeded")
    primary = h.cluster.get("Deployment", f"{NAME}-primary")
    assert primary is not None and h.primary_image() == "podinfo:v2"
    assert primary["spec"]["replicas"] == 4


def test_the_canary_starts_at_min_replicas_and_is_left_to_its_autoscaler() -> None:
    h = Harness(autoscalerRef=REF)
    h.cluster.put(hpa(min_replicas=3, max_replicas=6))
    h.initialize()
    h.release("v2", replicas=0)
    h.run_until(lambda: h.target_replicas() > 0)
    assert h.target_replicas() == 3
    scale(h, NAME, 5)  # its autoscaler scales the canary under load
    for _ in range(3):
        h.tick()
        assert h.target_replicas() == 5
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.target_replicas() == 0


def test_without_the_targets_autoscaler_it_says_so_and_makes_none() -> None:
    h = Harness(autoscalerRef=REF)
    h.initialize()
    assert h.cluster.get("HorizontalPodAutoscaler", f"{NAME}-primary") is None
    assert any("HorizontalPodAutoscaler podinfo.default (autoscalerRef) not found" in m
               for m in h.messages())
    h.cluster.put(hpa())
    h.tick()
    assert primary_hpa(h)["spec"]["scaleTargetRef"]["name"] == f"{NAME}-primary"


def test_revert_on_deletion_removes_the_primarys_autoscaler() -> None:
    """With revertOnDeletion the generated objects go, the primary's autoscaler with them
    (Flagger's finalizer), and the target's own autoscaler stays with the target."""
    h = Harness(autoscalerRef=REF, revertOnDeletion=True)
    h.cluster.put(hpa())
    h.initialize()
    assert primary_hpa(h)
    c = h.cluster.canary("default", NAME)
    assert c is not None
    h.cluster.delete("default", [("Canary", NAME)])
    h.controller.deleted(c)
    assert h.cluster.get("HorizontalPodAutoscaler", f"{NAME}-primary") is None
    assert h.cluster.get("HorizontalPodAutoscaler", NAME) is not None
    assert h.target_replicas() == 2

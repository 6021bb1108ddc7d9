"""Where a pod template says its pods run, and what is refused (MP0072).

Kubernetes behaviour followed: ``spec.nodeName`` binds the pods to that node, bypassing
the scheduler; ``nodeSelector`` must match every label of a node, and every node carries
``kubernetes.io/hostname`` (its name) and ``kubernetes.io/os``; ``nodeAffinity`` selects
nodes by their labels. A pod no node satisfies stays Pending, so a selector meshpilot's
nodes could never satisfy is refused at apply rather than left pending for ever.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.argo_builders import canary_rollout
from tests.builders import deployment, to_yaml

from meshpilot.api.argo import Rollout
from meshpilot.api.kubernetes import PodSpec
from meshpilot.api.placement import LOCAL_NODE, node_of, node_of_spec
from meshpilot.delivery.argo.workloads import revision_deployment
from meshpilot.validation import plan_apply


def placed(**pod_spec: Any) -> str:
    return to_yaml(deployment("web", labels={"app": "web"}, pod_spec=pod_spec, containers=[
        {"name": "app", "command": ["sleep", "60"]}]))


@pytest.mark.parametrize(("spec", "node"), [
    ({}, LOCAL_NODE),
    ({"nodeName": "node-b"}, "node-b"),
    ({"nodeSelector": {"kubernetes.io/hostname": "node-c"}}, "node-c"),
    ({"nodeSelector": {"kubernetes.io/os": "linux"}}, LOCAL_NODE),
    ({"nodeName": "node-b", "nodeSelector": {"kubernetes.io/os": "linux"}}, "node-b"),
])
def test_the_node_a_template_names(spec: dict[str, Any], node: str) -> None:
    assert node_of(spec) == node
    parsed = PodSpec.model_validate({"containers": [{"name": "a", "command": ["true"]}],
                                     **spec})
    assert node_of_spec(parsed) == node


@pytest.mark.parametrize("spec", [
    {"nodeName": "node-b"},
    {"nodeSelector": {"kubernetes.io/hostname": "node-b", "kubernetes.io/os": "linux"}},
])
def test_a_placement_meshpilot_honours_is_applied_without_a_warning(
        spec: dict[str, Any]) -> None:
    plan = plan_apply([("d.yaml", placed(**spec))])
    assert plan.ok
    assert [d.code for d in plan.diagnostics] == []


@pytest.mark.parametrize(("spec", "path", "said"), [
    ({"nodeSelector": {"disktype": "ssd"}}, "spec.template.spec.nodeSelector.disktype",
     "kubernetes.io/hostname"),
    ({"nodeSelector": {"kubernetes.io/os": "windows"}},
     "spec.template.spec.nodeSelector.kubernetes.io/os", "linux"),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
     "spec.template.spec.affinity.nodeAffinity", "nodeName"),
    ({"nodeName": "a", "nodeSelector": {"kubernetes.io/hostname": "b"}},
     "spec.template.spec.nodeSelector.kubernetes.io/hostname", "never run"),
])
def test_a_placement_no_node_could_satisfy_is_refused(
        spec: dict[str, Any], path: str, said: str) -> None:
    plan = plan_apply([("d.yaml", placed(**spec))])
    assert not plan.ok
    refused = [d for d in plan.diagnostics if d.code == "MP0072"]
    assert len(refused) == 1, plan.diagnostics
    assert refused[0].path == path and refused[0].file == "d.yaml" and refused[0].line
    assert said in refused[0].message


def test_pod_affinity_is_warned_about_not_refused() -> None:
    plan = plan_apply([("d.yaml", placed(affinity={"podAntiAffinity": {"x": 1}}))])
    assert plan.ok
    assert [(d.code, d.path) for d in plan.diagnostics] == [
        ("MP2017", "spec.template.spec.affinity.podAntiAffinity")]


def argo_rollout(**pod_spec: Any) -> dict[str, Any]:
    body = canary_rollout("web", "v1", [{"setWeight": 20}])
    body["metadata"]["namespace"] = "default"
    body["spec"]["template"]["spec"].update(pod_spec)
    return body


def test_an_argo_rollouts_revisions_run_on_the_node_its_template_names() -> None:
    """Argo Rollouts' ReplicaSets carry the Rollout's pod template whole, so its pods go
    where the template says; here each revision is a Deployment, placed the same way."""
    rollout = Rollout.model_validate(argo_rollout(nodeName="node-b"))
    revision = revision_deployment(rollout, "abc123", 1)
    assert node_of(revision["spec"]["template"]["spec"]) == "node-b"


def test_an_argo_rollout_template_no_node_could_satisfy_is_refused() -> None:
    plan = plan_apply([("r.yaml", to_yaml(argo_rollout(nodeSelector={"disktype": "ssd"})))])
    refused = [d for d in plan.diagnostics if d.code == "MP0072"]
    assert not plan.ok and [d.path for d in refused] == [
        "spec.template.spec.nodeSelector.disktype"], plan.diagnostics

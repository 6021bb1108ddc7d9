"""A Rollout over an existing Deployment (``spec.workloadRef``), tick by tick.

Shaped after Argo's "Migrating to Rollouts" (``docs/migrating.md``): a Deployment
``web`` already serves; a Rollout references it with ``workloadRef {apiVersion: apps/v1,
kind: Deployment, name, scaleDown}`` and runs its pod template as the Rollout's
revisions. ``scaleDown``: ``never`` leaves the Deployment as it is, ``onsuccess`` scales
it to zero once the Rollout is Healthy, ``progressively`` scales it down as the Rollout's
pods become ready (Argo's ``scaleDeployment``: the Rollout's replicas less its ready
pods). A new template applied to the Deployment is a new revision through the steps.
Past the take-over the Deployment is kept at zero (Argo scales it on revision 1 only; a
re-applied manifest is scaled down again here, where Argo issue #4935 leaves it running).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.unit.argo_harness import NAME, NS, ArgoHarness
from tests.unit.argo_harness import rollout as rollout_body

from meshpilot.api.argo import Rollout
from meshpilot.delivery.argo.workloads import pod_template_hash
from meshpilot.delivery.ports import WorkloadStatus
from meshpilot.validation.argo_fields import rollout_findings
from meshpilot.validation.plan import plan_apply

WEB = "web"
STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}]


def deployment(version: str, replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": WEB, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": NAME}},
                     "template": {"metadata": {"labels": {"app": NAME}},
                                  "spec": {"containers": [
                                      {"name": "app", "image": f"demo:{version}"}]}}}}


def referencing(scale_down: str | None, selector: bool = True) -> dict[str, Any]:
    body = rollout_body("v1", steps=STEPS)
    del body["spec"]["template"]
    if not selector:
        del body["spec"]["selector"]
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": WEB}
    body["spec"]["workloadRef"] = {**ref, **({"scaleDown": scale_down} if scale_down
                                             else {})}
    return body


class Partly(ArgoHarness):
    """The harness whose revisions have ``ready`` pods ready, when set."""

    def __init__(self, scale_down: str | None, selector: bool = True) -> None:
        super().__init__(steps=STEPS)
        self.cluster.put(deployment("v1"))
        self.cluster.put(referencing(scale_down, selector))
        self.ready: dict[str, int] = {}
        plain = self.cluster.workload

        def workload(namespace: str, name: str) -> WorkloadStatus:
            ws = plain(namespace, name)
            if name not in self.ready:
                return ws
            return WorkloadStatus(ws.exists, ws.template_hash, ws.desired, self.ready[name])

        self.cluster.workload = workload  # type: ignore[method-assign]

    def web_replicas(self) -> int:
        body = self.cluster.get("Deployment", WEB)
        assert body is not None
        return int(body["spec"]["replicas"])


def template_hash(version: str) -> str:
    return pod_template_hash(deployment(version)["spec"]["template"])


def test_the_rollout_runs_the_deployments_template_and_never_leaves_it_alone() -> None:
    h = Partly(None)
    h.tick(2)
    st = h.status
    v1 = template_hash("v1")
    assert (st["phase"], st["stableRS"]) == ("Healthy", v1)
    revision = h.cluster.get("Deployment", f"{NAME}-{v1}")
    assert revision is not None
    assert revision["spec"]["template"]["spec"] == deployment("v1")["spec"]["template"]["spec"]
    assert h.web_replicas() == 2  # scaleDown never (the default)


def test_onsuccess_scales_the_deployment_to_zero_once_healthy() -> None:
    h = Partly("onsuccess")
    v1 = template_hash("v1")
    h.ready[f"{NAME}-{v1}"] = 0
    h.tick(3)
    assert h.status["phase"] == "Progressing" and h.web_replicas() == 2
    # until the Rollout's pods are ready the rule's subsets still select the
    # Deployment's pods (meshpilot's zero-failure take-over)
    assert h.subset_hashes() == {"stable": None, "canary": None}
    del h.ready[f"{NAME}-{v1}"]
    h.tick()
    assert h.status["phase"] == "Healthy" and h.web_replicas() == 0
    assert h.subset_hashes() == {"stable": v1, "canary": v1}


def test_progressively_scales_the_deployment_down_as_rollout_pods_become_ready() -> None:
    h = Partly("progressively")
    name = f"{NAME}-{template_hash('v1')}"
    h.ready[name] = 0
    h.tick(2)
    assert h.web_replicas() == 2  # nothing of the Rollout is ready yet
    h.ready[name] = 1
    h.tick()
    assert h.web_replicas() == 1
    h.ready[name] = 2
    h.tick()
    assert h.web_replicas() == 0
    h.ready[name] = 1  # a Rollout pod lost: the Deployment makes up for it
    h.tick()
    assert h.web_replicas() == 1


def test_a_new_deployment_template_is_a_new_revision_through_the_steps() -> None:
    """The user updates the Deployment (the source of truth for the template); the
    Rollout runs it as a canary at 20 % and waits in its pause."""
    h = Partly("onsuccess")
    h.tick(2)
    v1 = h.status["stableRS"]
    h.cluster.put(deployment("v2", replicas=0))
    h.tick(3)
    st = h.status
    assert (st["stableRS"], st["currentPodHash"]) == (v1, template_hash("v2"))
    assert st["phase"] == "Paused" and h.split() == {"stable": 80, "canary": 20}
    assert h.web_replicas() == 0
    assert "kubectl rollout undo deployment" in h.command("undo")


def test_the_selector_defaults_to_the_deployments() -> None:
    h = Partly("never", selector=False)
    h.tick(2)
    assert h.status["phase"] == "Healthy"


def test_a_missing_deployment_or_unselected_pods_leave_the_rollout_degraded() -> None:
    h = Partly("onsuccess")
    h.cluster.delete(NS, [("Deployment", WEB)])
    h.tick()
    st = h.status
    assert st["phase"] == "Degraded"
    assert st["message"].startswith("InvalidSpec: Deployment web (spec.workloadRef) not found")
    other = deployment("v1")
    other["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    h.cluster.put(other)
    h.tick()
    assert "matchLabels {'app': 'istio-subset-split'} are not on the pod template" in (
        h.status["message"])
    h.cluster.put(deployment("v1"))
    h.tick(2)
    assert h.status["phase"] == "Healthy"


def test_workload_ref_is_accepted_and_its_fields_checked() -> None:
    assert rollout_findings(referencing("progressively")) == []
    Rollout.model_validate(referencing("onsuccess"))
    both = referencing(None)
    both["spec"]["template"] = deployment("v1")["spec"]["template"]
    with pytest.raises(ValueError, match=r"spec\.template or spec\.workloadRef, not both"):
        Rollout.model_validate(both)
    wrong = referencing("sometimes")
    with pytest.raises(ValueError, match="'never', 'onsuccess' or 'progressively'"):
        Rollout.model_validate(wrong)
    kind = referencing(None)
    kind["spec"]["workloadRef"]["kind"] = "StatefulSet"
    with pytest.raises(ValueError, match="'Deployment'"):
        Rollout.model_validate(kind)


def test_a_workload_ref_to_a_missing_deployment_is_a_warning_at_apply() -> None:
    """Argo's migration applies the Rollout beside the running Deployment; applied alone
    it goes in, with MP2066 naming the Deployment; with it, no warning."""
    alone = plan_apply([("ro.yaml", yaml.safe_dump(referencing("onsuccess")))], [])
    assert alone.ok, [d.format() for d in alone.diagnostics]
    warned = [d for d in alone.diagnostics if d.code == "MP2066"]
    assert [(d.path, d.severity) for d in warned] == [("spec.workloadRef.name", "warning")]
    assert "Deployment default/web does not exist (yet)" in warned[0].message
    both = plan_apply([("all.yaml", yaml.safe_dump(deployment("v1")) + "---\n"
                        + yaml.safe_dump(referencing("onsuccess")))], [])
    assert both.ok and [d for d in both.diagnostics if d.code == "MP2066"] == []


def test_past_the_take_over_the_deployment_is_kept_at_zero() -> None:
    """A GitOps re-apply of the Deployment's manifest (replicas 2) while Healthy is scaled
    down again; during the second revision, pods of the stable revision going unready do
    not scale the Deployment back up (Argo scales it on revision 1 only)."""
    h = Partly("progressively")
    h.tick(2)
    v1 = h.status["stableRS"]
    assert h.status["phase"] == "Healthy" and h.web_replicas() == 0
    h.cluster.put(deployment("v1"))  # the manifest again, replicas 2
    h.tick()
    assert h.web_replicas() == 0
    h.cluster.put(deployment("v2", replicas=0))
    h.tick(3)
    assert h.status["currentStepIndex"] == 1
    h.ready[f"{NAME}-{v1}"] = 1
    h.tick(2)
    assert h.web_replicas() == 0


def test_a_blue_green_take_over_switches_the_services_once_the_pods_are_ready() -> None:
    """Blue-green over a Deployment (Argo's migration with ``activeService``): the active
    and preview Services select the Deployment's pods until the Rollout's are ready."""
    h = Partly("onsuccess")
    for name in ("web-active", "web-preview"):
        h.cluster.put({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": name, "namespace": NS},
                       "spec": {"selector": {"app": NAME}, "ports": [{"port": 80}]}})
    body = referencing("onsuccess")
    body["spec"]["strategy"] = {"blueGreen": {"activeService": "web-active",
                                              "previewService": "web-preview"}}
    h.cluster.put(body)
    v1 = template_hash("v1")
    h.ready[f"{NAME}-{v1}"] = 0
    h.tick(3)
    active = h.cluster.get("Service", "web-active")
    assert active is not None and active["spec"]["selector"] == {"app": NAME}
    assert h.status["phase"] == "Progressing" and h.web_replicas() == 2
    del h.ready[f"{NAME}-{v1}"]
    h.tick()
    active = h.cluster.get("Service", "web-active")
    assert active is not None
    assert active["spec"]["selector"] == {"app": NAME, "rollouts-pod-template-hash": v1}
    assert h.status["phase"] == "Healthy" and h.web_replicas() == 0

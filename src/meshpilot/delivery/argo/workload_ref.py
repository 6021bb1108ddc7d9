"""A Rollout over an existing Deployment (``spec.workloadRef``), as Argo's
``docs/migrating.md`` describes it.

- The Rollout runs the Deployment's pod template: each tick reads it, so a new template
  applied to the Deployment is a new revision of the Rollout, run through its steps.
  The selector is the Rollout's own, or the Deployment's when the Rollout gives none.
- The Deployment itself is the user's; the Rollout only scales it, per ``scaleDown``:
  ``never`` (the default) leaves it alone, ``onsuccess`` scales it to zero once the
  Rollout is Healthy, ``progressively`` keeps it at the Rollout's replicas less the
  Rollout's ready pods during the Rollout's first revision (Argo's ``scaleDeployment``
  on revision 1): while the Rollout's pods come up the Deployment's still serve, and it
  scales back up if they go. While the Rollout is Healthy, and from its second revision
  on, both keep the Deployment at zero: a re-apply of the Deployment's manifest with its
  old replicas (a GitOps sync) is scaled down again, and a later rollout never scales it
  up beside the Rollout's pods.
- Deleting the Rollout leaves the Deployment as it is, as Argo does: scale it up first
  to go back to it.
- A missing Deployment, or one whose pods the selector would not select, leaves the
  Rollout Degraded with the reason (Argo: ``InvalidSpec``) until it is fixed.
"""

from __future__ import annotations

import copy
from typing import Any

from meshpilot.api.argo import LabelSelector, Rollout, WorkloadRef
from meshpilot.delivery.argo.status import ArgoState


def _ref(rollout: Rollout) -> WorkloadRef:
    ref = rollout.spec.workload_ref
    assert ref is not None, "for Rollouts with spec.workloadRef only"
    return ref


def resolved(rollout: Rollout, deployment: dict[str, Any] | None) -> Rollout | str:
    """``rollout`` running ``deployment``'s pod template (and, without its own, its
    selector); or why it cannot."""
    ref = _ref(rollout)
    ns = rollout.metadata.namespace
    if deployment is None:
        return (f"Deployment {ref.name} (spec.workloadRef) not found in namespace {ns}; "
                "apply it, or fix workloadRef.name")
    spec = deployment.get("spec") or {}
    template = spec.get("template")
    if not isinstance(template, dict):
        return f"Deployment {ns}/{ref.name} (spec.workloadRef) has no pod template"
    selector = rollout.spec.selector or LabelSelector(
        match_labels=dict((spec.get("selector") or {}).get("matchLabels") or {}))
    labels = (template.get("metadata") or {}).get("labels") or {}
    missing = {k: v for k, v in selector.match_labels.items() if labels.get(k) != v}
    if not selector.match_labels or missing:
        return (f"spec.selector matchLabels {missing or '{}'} are not on the pod template "
                f"labels of Deployment {ns}/{ref.name}; the Rollout would select none of "
                "its pods")
    new_spec = rollout.spec.model_copy(update={"template": copy.deepcopy(template),
                                               "selector": selector})
    return rollout.model_copy(update={"spec": new_spec})


def scaled(rollout: Rollout, deployment: dict[str, Any], st: ArgoState) -> dict[str, Any] | None:
    """The referenced Deployment at the replicas ``scaleDown`` asks for, given the
    Rollout's state after its tick; None when it stays as it is."""
    mode = _ref(rollout).scale_down or "never"
    current = int((deployment.get("spec") or {}).get("replicas", 1))
    taken_over = st.phase == "Healthy" or max(st.revisions.values(), default=0) > 1
    if mode == "never":
        want = current
    elif taken_over:
        want = 0
    elif mode == "progressively" and st.ready_replicas > 0:
        want = max(0, rollout.spec.replicas - st.ready_replicas)
    else:
        want = current
    if want == current:
        return None
    body = copy.deepcopy(deployment)
    body.pop("status", None)
    body["spec"]["replicas"] = want
    return body

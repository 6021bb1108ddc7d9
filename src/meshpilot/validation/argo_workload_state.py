"""Argo Rollouts across objects: the Deployment a Rollout's ``workloadRef`` names.

Argo reads the referenced Deployment's pod template each time it reconciles, and a
missing one leaves the Rollout ``InvalidSpec``. The Deployment may come in a later apply
(Argo's migration guide applies the Rollout beside a Deployment that already runs), so a
missing one is a warning at apply (MP2066), not a refusal.
"""

from __future__ import annotations

from collections.abc import Callable

from meshpilot.validation import codes
from meshpilot.validation.shapes import as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]


def check_workload_refs(objects: list[StateObject], report: Report,
                        found: Findings) -> None:
    rollouts = [o for o in objects if o.key.kind == "Rollout" and report(o)
                and as_mapping(o.spec.get("workloadRef"))]
    if not rollouts:
        return
    have = {(o.namespace, o.key.name) for o in objects if o.key.kind == "Deployment"}
    for rollout in rollouts:
        name = as_mapping(rollout.spec.get("workloadRef")).get("name")
        if isinstance(name, str) and (rollout.namespace, name) not in have:
            found.add(codes.ARGO_WORKLOAD_MISSING, rollout, ("spec", "workloadRef", "name"),
                      f"Deployment {rollout.namespace}/{name} does not exist (yet); the "
                      "Rollout stays Degraded (InvalidSpec) until it does")

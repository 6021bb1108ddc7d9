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


def _referenced(obj: StateObject) -> str | None:
    """The Deployment name a Rollout's workloadRef gives, or None."""
    name = as_mapping(obj.spec.get("workloadRef")).get("name")
    return name if obj.key.kind == "Rollout" and isinstance(name, str) else None


def check_workload_refs(objects: list[StateObject], report: Report,
                        found: Findings) -> None:
    rollouts = [o for o in objects if _referenced(o) and report(o)]
    if not rollouts:
        return
    have = {(o.namespace, o.key.name) for o in objects if o.key.kind == "Deployment"}
    for rollout in rollouts:
        name = _referenced(rollout)
        if (rollout.namespace, name) not in have:
            found.add(codes.ARGO_WORKLOAD_MISSING, rollout, ("spec", "workloadRef", "name"),
                      f"Deployment {rollout.namespace}/{name} does not exist (yet); the "
                      "Rollout stays Degraded (InvalidSpec) until it does")

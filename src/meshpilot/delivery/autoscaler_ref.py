"""Flagger's ``autoscalerRef``: the primary gets an autoscaler of its own, and neither
Deployment's replica count is fought over.

As Flagger's HPA reconciler does, ``NAME-primary`` copies the target's
HorizontalPodAutoscaler (min/max, metrics, behavior, labels but Flux's) and points at the
primary Deployment; ``primaryScalerReplicas`` overrides its bounds. From then on the
autoscalers own the replica counts: the primary keeps the count its autoscaler gave it when a
promotion rewrites its template, and the canary, scaled up from zero for an analysis,
starts at the autoscaler's ``minReplicas`` (when above 1) and is left to its own
autoscaler until it is scaled back to zero (where an autoscaler does not touch it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from meshpilot.api.flagger import Canary

KIND = "HorizontalPodAutoscaler"
FLUX_MARKER = "toolkit.fluxcd.io"
"""Labels naming Flux's controllers are not copied (as Flagger leaves them out), so Flux
does not take the generated autoscaler for one of its own and prune it."""
_COPIED = ("metrics", "behavior")


def primary_autoscaler_name(canary: Canary) -> str | None:
    ref = canary.spec.autoscaler_ref
    return f"{ref.name}-primary" if ref is not None else None


def primary_autoscaler(canary: Canary, target: Mapping[str, Any], primary: str,
                       meta: dict[str, Any]) -> dict[str, Any] | None:
    """``NAME-primary`` made from the target's autoscaler body ``target`` for the primary
    Deployment ``primary``; ``meta`` is the generated objects' metadata (ownership
    marks), to which the target autoscaler's labels are added."""
    ref = canary.spec.autoscaler_ref
    if ref is None:
        return None
    spec = target.get("spec") or {}
    scale_ref = spec.get("scaleTargetRef") or {}
    out: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": scale_ref.get("apiVersion", "apps/v1"),
                           "kind": scale_ref.get("kind", "Deployment"), "name": primary},
        "minReplicas": spec.get("minReplicas", 1),
        "maxReplicas": spec.get("maxReplicas"),
    }
    out.update({k: copy.deepcopy(spec[k]) for k in _COPIED if k in spec})
    overrides = ref.primary_scaler_replicas
    if overrides is not None:
        if overrides.min_replicas is not None:
            out["minReplicas"] = overrides.min_replicas
        if overrides.max_replicas is not None:
            out["maxReplicas"] = overrides.max_replicas
    copied = {k: v for k, v in ((target.get("metadata") or {}).get("labels") or {}).items()
              if FLUX_MARKER not in k}
    labels = {**copied, **meta["labels"]}
    return {
        "apiVersion": target.get("apiVersion", "autoscaling/v2"),
        "kind": KIND,
        "metadata": {**meta, "labels": labels},
        "spec": out,
    }


def min_replicas(target: Mapping[str, Any] | None) -> int:
    """The replicas a canary starts at when scaled up from zero: the autoscaler's
    minReplicas when above 1, else 1 (Flagger's ScaleFromZero)."""
    spec = (target or {}).get("spec") or {}
    value = spec.get("minReplicas")
    return value if isinstance(value, int) and value > 1 else 1

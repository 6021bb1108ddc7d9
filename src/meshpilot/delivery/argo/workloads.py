"""A Rollout revision's Deployment: Argo's ReplicaSet, run by meshpilot's runtime.

Argo makes one ReplicaSet per pod template, named ``ROLLOUT-HASH``, whose pods (and
selector) carry ``rollouts-pod-template-hash: HASH`` so the stable and canary revisions
are told apart by the Services and DestinationRule subsets that select them. meshpilot's
runtime runs Deployments, so a revision is a Deployment of that name and labels.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from types import MappingProxyType
from typing import Any

from meshpilot.api.argo import POD_TEMPLATE_HASH_LABEL, Rollout

ROLLOUT_ANNOTATION = "meshpilot.io/rollout"
"""On a generated Deployment: the Rollout it is a revision of."""
MANAGED_BY = MappingProxyType({"app.kubernetes.io/managed-by": "meshpilot-argo"})
REVISION_ANNOTATION = "rollout.argoproj.io/revision"
"""On a revision's Deployment (Argo: on its ReplicaSet): its revision number, what
``undo --to-revision`` names."""
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
"""On a revision's pod template: spec.restartAt once due; a new value rolls its pods
(as ``kubectl rollout restart`` does a Deployment's)."""


def restart_stamp(rollout: Rollout, now: float) -> str | None:
    """spec.restartAt once it has come (Argo leaves pods alone until then), or None."""
    at = rollout.spec.restart_at
    if at is None or at.timestamp() > now:
        return None
    return at.isoformat()


def restart_of(body: dict[str, Any] | None) -> str | None:
    """The restart a stored revision Deployment's pods last had, or None."""
    template = ((body or {}).get("spec") or {}).get("template") or {}
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)
    return str(value) if value else None


def _stamp(template: dict[str, Any], stamp: str | None) -> None:
    if stamp:
        meta = template.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), RESTARTED_AT: stamp}


def pod_template_hash(template: dict[str, Any] | None) -> str:
    """A short stable digest of a pod template, a DNS label (Argo's is its own FNV hash;
    only its role matters: equal templates, equal hashes)."""
    text = json.dumps(template or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def revision_name(rollout: Rollout, pod_hash: str) -> str:
    return f"{rollout.metadata.name}-{pod_hash}"


def canary_replicas(rollout: Rollout, weight: int) -> int:
    """Pods the canary needs for ``weight`` percent: Argo's count with traffic routing,
    ``ceil(replicas * weight / 100)``."""
    return math.ceil(rollout.spec.replicas * weight / 100)


def revision_deployment(rollout: Rollout, pod_hash: str, replicas: int,
                        restart: str | None = None) -> dict[str, Any]:
    """The Deployment that runs the Rollout's current template as revision ``pod_hash``
    (``restart``: its pods restarted at that spec.restartAt)."""
    template = copy.deepcopy(rollout.spec.template or {})
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), POD_TEMPLATE_HASH_LABEL: pod_hash}
    _stamp(template, restart)
    selector = rollout.spec.selector.match_labels if rollout.spec.selector else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": revision_name(rollout, pod_hash),
            "namespace": rollout.metadata.namespace,
            "labels": {**meta["labels"], **MANAGED_BY},
            "annotations": {ROLLOUT_ANNOTATION: rollout.metadata.name},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**selector, POD_TEMPLATE_HASH_LABEL: pod_hash}},
            "template": template,
        },
    }


def revision_template(body: dict[str, Any]) -> dict[str, Any]:
    """The Rollout template a stored revision Deployment runs (without the pod-template
    hash label and the restart annotation the revision adds): what ``undo`` writes
    back."""
    template = copy.deepcopy((body.get("spec") or {}).get("template") or {})
    meta = template.get("metadata") or {}
    for key, drop in (("labels", POD_TEMPLATE_HASH_LABEL), ("annotations", RESTARTED_AT)):
        if isinstance(meta.get(key), dict) and meta[key].pop(drop, None) is not None and (
                key == "annotations" and not meta[key]):
            del meta[key]  # the revision added it
    return template


def rescaled(body: dict[str, Any], replicas: int,
             restart: str | None = None) -> dict[str, Any] | None:
    """A stored revision Deployment at ``replicas`` (its pods restarted at ``restart``,
    when they were not yet); None when it already runs so."""
    spec = body.get("spec") or {}
    annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations")
    restarted = not restart or (annotations or {}).get(RESTARTED_AT) == restart
    if int(spec.get("replicas", 1)) == replicas and restarted:
        return None
    if not restarted:
        spec = {**spec, "template": copy.deepcopy(spec.get("template") or {})}
        _stamp(spec["template"], restart)
    meta = body.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": kept,
            "spec": {**spec, "replicas": replicas}}


def numbered(body: dict[str, Any], revision: int | None) -> dict[str, Any]:
    """A revision Deployment to write, carrying its revision number (when it has one)."""
    if revision is None:
        return body
    meta = body.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           REVISION_ANNOTATION: str(revision)}
    return body


def revision_of(body: dict[str, Any] | None) -> int | None:
    """The revision number a stored revision Deployment carries, or None."""
    value = (((body or {}).get("metadata") or {}).get("annotations") or {}).get(
        REVISION_ANNOTATION)
    return int(value) if isinstance(value, str) and value.isdigit() else None

"""A Rollout as ``meshpilot rollout status`` shows it: the fields kubectl-argo-rollouts'
``get rollout``/``status`` print (its ``info/rollout_info.go``), computed from the
Rollout's status and what runs.

- ``status`` is Argo's phase (Healthy, Progressing, Paused, Degraded) and ``message`` its
  message; ``strategy`` Canary or BlueGreen.
- ``step`` is ``currentStepIndex/len(steps)``; ``setWeight`` the weight the steps ask for
  now (0 once aborted, 100 past the last step, else the last setWeight at or before the
  current step: Argo's ``GetCurrentSetWeight``), ``actualWeight`` the canary weight the
  routes carry.
- ``images`` each container image with the revisions (stable, canary) that run it;
  ``replicas`` desired, current, updated, ready and available pods over the revisions;
  ``revisions`` each revision kept (number, hash, role, pods); ``analysisRuns`` the Rollout's
  AnalysisRuns with their phase.
"""

from __future__ import annotations

from typing import Any

from meshpilot.api.argo import Rollout
from meshpilot.delivery.argo import workloads
from meshpilot.delivery.argo.ports import ArgoReader
from meshpilot.delivery.argo.status import ArgoState

FULL_WEIGHT = 100


def set_weight(rollout: Rollout, st: ArgoState) -> int | None:
    """Argo's desired canary weight for the current step; None for blue-green."""
    if rollout.blue_green is not None:
        return None
    if st.abort:
        return 0
    steps = rollout.steps
    if st.step_index >= len(steps):
        return FULL_WEIGHT
    for step in reversed(steps[:st.step_index + 1]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def _roles(st: ArgoState) -> dict[str, list[str]]:
    """revision hash -> its roles, stable first; older revisions have none."""
    roles: dict[str, list[str]] = {}
    for pod_hash, role in ((st.stable_rs, "stable"), (st.current_pod_hash, "canary")):
        if pod_hash and not (role == "canary" and pod_hash == st.stable_rs):
            roles.setdefault(pod_hash, []).append(role)
    if st.blue_green:
        roles = {h: ["active" if r == "stable" else "preview" for r in rs]
                 for h, rs in roles.items()}
    for pod_hash in reversed(st.old_revisions):
        roles.setdefault(pod_hash, [])
    return roles


def _images(template: dict[str, Any] | None) -> list[str]:
    spec = (template or {}).get("spec") or {}
    # a container without an image (a local command) is shown by its name
    return [str(c.get("image") or f"container {c.get('name')}")
            for c in spec.get("containers") or []]


def _revisions(rollout: Rollout, st: ArgoState, reader: ArgoReader) -> list[dict[str, Any]]:
    ns = rollout.metadata.namespace
    out = []
    for pod_hash, roles in _roles(st).items():
        name = workloads.revision_name(rollout, pod_hash)
        body = reader.deployment(ns, name)
        ws = reader.workload(ns, name)
        spec = (body or {}).get("spec") or {}
        template = spec.get("template")
        if template is None and pod_hash == st.current_pod_hash:
            template = rollout.spec.template
        out.append({"revision": st.revisions.get(pod_hash) or workloads.revision_of(body),
                    "podTemplateHash": pod_hash, "name": name, "roles": roles,
                    "replicas": int(spec.get("replicas") or 0),
                    "ready": ws.ready if ws.exists else 0,
                    "images": _images(template)})
    return out


def _image_rows(revisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[str, list[str]] = {}
    for rev in revisions:
        if not rev["roles"]:
            continue
        for image in rev["images"]:
            tags = rows.setdefault(image, [])
            tags.extend(r for r in rev["roles"] if r not in tags)
    return [{"image": image, "tags": tags} for image, tags in rows.items()]


def _analysis_runs(rollout: Rollout, st: ArgoState,
                   reader: ArgoReader) -> list[dict[str, Any]]:
    ns = rollout.metadata.namespace
    out = []
    for name in st.runs:
        body = reader.routing_object(ns, "AnalysisRun", name)
        if body is None:
            continue
        status = body.get("status") or {}
        out.append({"name": name, "phase": str(status.get("phase") or "Pending"),
                    "message": str(status.get("message") or "")})
    return out


def summarize(rollout: Rollout, reader: ArgoReader) -> dict[str, Any]:
    """The plugin's view of ``rollout`` (with its status as Argo writes it)."""
    st = ArgoState.from_status(rollout.status)
    revisions = _revisions(rollout, st, reader)
    steps = len(rollout.steps)
    canary = rollout.blue_green is None
    current = [r for r in revisions if r["podTemplateHash"] == st.current_pod_hash]
    return {
        "kind": "Rollout",
        "namespace": rollout.metadata.namespace,
        "name": rollout.metadata.name,
        "status": st.phase or "Progressing",
        "message": st.message,
        "strategy": "Canary" if canary else "BlueGreen",
        "step": f"{min(st.step_index, steps)}/{steps}" if canary and steps else None,
        "setWeight": set_weight(rollout, st),
        "actualWeight": st.canary_weight if canary else None,
        "paused": bool(rollout.spec.paused),
        "abort": st.abort,
        "stableRS": st.stable_rs,
        "currentPodHash": st.current_pod_hash,
        "images": _image_rows(revisions),
        "replicas": {
            "desired": rollout.spec.replicas,
            "current": sum(r["replicas"] for r in revisions),
            "updated": current[0]["replicas"] if current else 0,
            "ready": sum(r["ready"] for r in revisions),
            "available": sum(r["ready"] for r in revisions),
        },
        "revisions": revisions,
        "analysisRuns": _analysis_runs(rollout, st, reader),
        "rolloutStatus": rollout.status or {},
    }

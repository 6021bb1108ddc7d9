"""The ``scale`` and ``status`` subresources, and a Deployment's status as served.

``kubectl scale deployment X --replicas=3`` patches ``.../deployments/X/scale``, an
``autoscaling/v1`` Scale whose ``spec.replicas`` is the Deployment's; the write is the
Deployment with that count, through the same validation as any other. ``status`` is
what meshpilot observes (a Deployment's pods, a rollout's phase): readable at
``.../X/status`` (``kubectl get --subresource=status``), never written by a client.

A Deployment's status is not stored: the runtime reports its pods. It is served on
every read in Kubernetes' fields, with ``observedGeneration`` so ``kubectl rollout
status`` can tell the runtime has taken the current spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.store import StoredObject

# Kinds with a scale subresource (spec.replicas, spec.selector.matchLabels): kind → group
SCALABLE: Mapping[str, str] = MappingProxyType({"Deployment": "apps",
                                                "Rollout": "argoproj.io"})
_SCALE_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")


class BadScale(ValueError):
    """A Scale body that does not say how many replicas (400)."""


def scalable(kind: str, group: str) -> bool:
    return SCALABLE.get(kind) == group


def _selector(body: Mapping[str, Any]) -> str:
    """``spec.selector.matchLabels`` as the label-selector text a Scale's status holds."""
    labels = ((body.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def scale_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Scale of a scalable object as served (status from the live status)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in _SCALE_META if k in meta},
        "spec": {"replicas": int((body.get("spec") or {}).get("replicas") or 0)},
        "status": {"replicas": int(status.get("replicas") or 0),
                   "selector": _selector(body)},
    }


def replicas_of(scale: Any) -> int:
    """``spec.replicas`` of a Scale sent by a client: a whole number, 0 or more."""
    spec = scale.get("spec") if isinstance(scale, dict) else None
    replicas = spec.get("replicas") if isinstance(spec, dict) else None
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise BadScale(f"spec.replicas must be a whole number, 0 or more; not {replicas!r}")
    return replicas


def scaled(body: dict[str, Any], scale: Any) -> dict[str, Any]:
    """``body`` with the replica count of ``scale``; a resourceVersion in the Scale's
    metadata is the write's precondition, as for the object itself."""
    out = {**body, "spec": {**(body.get("spec") or {}), "replicas": replicas_of(scale)}}
    wanted = ((scale.get("metadata") or {}) if isinstance(scale, dict) else {}).get(
        "resourceVersion")
    if wanted:
        out["metadata"] = {**(body.get("metadata") or {}), "resourceVersion": str(wanted)}
    return out


def deployment_status(body: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The runtime's counts as a Kubernetes DeploymentStatus. ``observedGeneration`` is
    the stored generation once the runtime runs that spec (its ``observedGeneration``,
    the generation of the Deployment it was last given)."""
    status = {k: live[k] for k in ("replicas", "readyReplicas", "availableReplicas",
                                   "updatedReplicas") if k in live}
    status["unavailableReplicas"] = max(
        int((body.get("spec") or {}).get("replicas") or 0) - int(live.get("readyReplicas")
                                                                  or 0), 0)
    if live.get("observedGeneration") is not None:
        status["observedGeneration"] = live["observedGeneration"]
    status["conditions"] = _conditions(body, live)
    return status


def _conditions(body: Mapping[str, Any], live: Mapping[str, Any]) -> list[dict[str, str]]:
    """Available (every wanted pod ready: ``kubectl wait --for=condition=Available``) and
    Progressing (NewReplicaSetAvailable once the current template's pods are all that
    run and ready), as the Deployment controller reports them; ReplicaFailure when the
    runtime cannot start the pods."""
    wanted = int((body.get("spec") or {}).get("replicas") or 0)
    ready = int(live.get("availableReplicas") or 0)
    updated = int(live.get("updatedReplicas") or 0)
    available = ready >= wanted
    done = updated >= wanted and int(live.get("replicas") or 0) == updated and ready >= updated
    found = [
        {"type": "Available", "status": "True" if available else "False",
         "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
         "message": f"{ready} of {wanted} pods ready"},
        {"type": "Progressing", "status": "True",
         "reason": "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
         "message": f"{updated} of {wanted} pods run the current template"}]
    if live.get("error"):
        found.append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                      "message": str(live["error"])})
    return found


_UNSEEN = object()


class LiveStatusWatch:
    """For a watch on Deployments: which watched objects' served status changed since
    last sent. Their pods come and go without a store event, and ``kubectl rollout
    status`` or ``get -w`` must still see them become ready."""

    def __init__(self, status_of: Callable[[StoredObject], Any]) -> None:
        self._status_of = status_of
        self._objects: dict[ObjectKey, StoredObject] = {}
        self._sent: dict[ObjectKey, Any] = {}

    def sent(self, event_type: str, obj: StoredObject) -> None:
        """Note an event sent for ``obj`` (with its status as of now)."""
        if event_type == "DELETED":
            self._objects.pop(obj.key, None)
            self._sent.pop(obj.key, None)
        else:
            self._objects[obj.key] = obj
            self._sent[obj.key] = self._status_of(obj)

    def follow(self, obj: StoredObject) -> None:
        """Watch ``obj``'s status from here on, though no event was sent for it (a watch
        from a resourceVersion): its next look reports it, since its pods may have
        changed between the client's list and this watch."""
        self._objects[obj.key] = obj
        self._sent[obj.key] = _UNSEEN

    def changed(self) -> list[StoredObject]:
        """The watched objects whose status is not the one last sent."""
        return [obj for key, obj in self._objects.items()
                if self._status_of(obj) != self._sent.get(key)]

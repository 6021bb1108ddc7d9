"""What a joined host's agent reports of its pods, read as the control plane trusts it.

A host's report is bounded by what it was given: a reported pod counts only for a
Deployment placed on that host's node, and it carries the template's labels and service
account, never the host's. A host whose reports stop has its pods not ready; a Deployment
placed on a node no host declared has Pending pods with Kubernetes' reason, Unschedulable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.model import InboundPort
from meshpilot.mesh.protocols import port_protocol
from meshpilot.runtime.pod import Pod, template_hash
from meshpilot.server.host_placement import Key, Placed

_PHASES = frozenset({"Pending", "Running", "Terminating", "Failed"})


@dataclass
class NodeReport:
    """A joined host's node as its last sync reported it."""

    member: ObjectKey  # the host's WorkloadEntry
    seen: float
    pods: tuple[Pod, ...] = ()
    statuses: dict[Key, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # node id -> counters


def reported_pod(raw: Any, node: str, mine: Mapping[Key, Placed]) -> Pod | None:
    """A reported pod, if it is one of a Deployment placed on ``node`` (with that
    Deployment's template labels and service account, whatever the host says)."""
    if not isinstance(raw, Mapping):
        return None
    key = (str(raw.get("namespace", "")), str(raw.get("deployment", "")))
    placed = mine.get(key)
    name = str(raw.get("name", ""))
    if placed is None or not name.startswith(f"{key[1]}-"):
        return None
    spec = placed.deployment.spec.template.spec
    try:
        inbound = tuple(InboundPort(int(p["containerPort"]), int(p["appPort"]),
                                    str(p.get("name", "")),
                                    port_protocol(str(p.get("name", ""))))
                        for p in raw.get("inbound") or ())
        restarts = int(raw.get("restarts") or 0)
        started = float(raw["startedAt"]) if raw.get("startedAt") is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    phase = raw.get("phase")
    return Pod(
        name=name, namespace=key[0], deployment=key[1],
        labels=dict(placed.deployment.spec.template.metadata.labels),
        ip=str(raw.get("ip", "")), inbound=inbound,
        phase=phase if phase in _PHASES else "Pending",  # type: ignore[arg-type]
        ready=raw.get("ready") is True, restarts=restarts,
        message=str(raw.get("message", "")), template_hash=str(raw.get("templateHash", "")),
        started_at=started, admin_socket="", node_id=str(raw.get("nodeId", "")),
        service_account=spec.service_account_name or spec.service_account or "default",
        reason=str(raw.get("reason", "")), node=node)


def reported_statuses(statuses: Mapping[str, Any], mine: Iterable[Key]
                      ) -> dict[Key, dict[str, Any]]:
    """The counts a host reported (by ``namespace/name``) of the Deployments it runs."""
    return {key: dict(statuses[f"{key[0]}/{key[1]}"]) for key in mine
            if isinstance(statuses.get(f"{key[0]}/{key[1]}"), Mapping)}


def ready_on(held: NodeReport | None, key: Key, placed: Placed, since: float) -> bool:
    """Whether ``held`` (a node that reported after ``since``) runs every replica of
    ``placed``'s template ready."""
    if held is None or held.seen < since:
        return False
    status = held.statuses.get(key) or {}
    wanted = placed.deployment.spec.replicas
    return int(status.get("readyReplicas") or 0) >= wanted and \
        int(status.get("updatedReplicas") or 0) >= wanted


def endpoint_view(pods: Iterable[Pod]) -> set[tuple[Any, ...]]:
    """What of a node's pods the mesh's endpoints show: a change here rebuilds the mesh."""
    return {(p.name, p.ip, p.ready, p.phase, p.inbound) for p in pods}


def unready(pod: Pod) -> Pod:
    """A pod whose host stopped reporting: not ready, and why."""
    return replace(pod, ready=False, message=f"node {pod.node} stopped reporting")


def unscheduled(namespace: str, name: str, where: Placed) -> list[Pod]:
    """Kubernetes' unschedulable pods: Pending, no address, the reason in describe."""
    revision = template_hash(where.deployment)
    message = (f"0/1 nodes are available: no joined host has the node name {where.node!r}; "
               f"it runs here once a host joins with --node-name {where.node}")
    return [Pod(name=f"{name}-{revision}-pending{i}", namespace=namespace, deployment=name,
                labels=dict(where.deployment.spec.template.metadata.labels), ip="",
                inbound=(), phase="Pending", ready=False, restarts=0, message=message,
                template_hash=revision, started_at=None, admin_socket="", node_id="",
                reason="Unschedulable", node=where.node)
            for i in range(where.deployment.spec.replicas)]


def reported_status(namespace: str, name: str, where: Placed, held: NodeReport | None,
                    now: float, timeout: float) -> dict[str, Any]:
    """A placed Deployment's counts as its host's runtime reported them: Unschedulable
    while no host declared its node, none ready once the host has not synced for longer
    than ``timeout``."""
    dep = where.deployment
    base = {"desiredReplicas": dep.spec.replicas, "replicas": 0, "readyReplicas": 0,
            "availableReplicas": 0, "updatedReplicas": 0, "terminatingReplicas": 0,
            "templateHash": None, "specHash": None,
            "observedGeneration": dep.metadata.generation,
            "error": f"0/1 nodes are available: no joined host has the node name "
                     f"{where.node!r} (host join --node-name)"}
    if held is None:
        return base
    reported = held.statuses.get((namespace, name)) or {}
    status = {**base, **{k: reported[k] for k in base if k in reported},
              "desiredReplicas": dep.spec.replicas,
              "observedGeneration": dep.metadata.generation,
              "error": reported.get("error")}
    if now - held.seen > timeout:
        status.update(readyReplicas=0, availableReplicas=0,
                      error=f"node {where.node!r} has not reported for {timeout:g}s")
    return status

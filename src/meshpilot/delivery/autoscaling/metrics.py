"""Each metric of an autoscaler measured and turned into a proposal, with the
``currentMetrics`` entry Kubernetes writes for it.

CPU comes from the pods' processes: the CPU time they used between two syncs over the
time between them (what metrics-server reports from the kubelet), against the sum of the
app containers' ``resources.requests.cpu``. The sidecar is a process of its own that the
pod template does not declare, so neither its usage nor a request for it is counted. The
request rate comes from the mesh's own ``istio_requests_total`` series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpilot.api.autoscaling import (
    RATE_WINDOW_SECONDS,
    MetricSpec,
    MetricTarget,
    parse_quantity,
)
from meshpilot.delivery.autoscaling.ports import PodMetrics, PodSample
from meshpilot.delivery.autoscaling.replicas import (
    MetricError,
    PodUsage,
    Proposal,
    Tolerance,
    object_average_replicas,
    object_value_replicas,
    per_pod_replicas,
)


def format_quantity(value: float) -> str:
    """A number as Kubernetes writes a quantity: whole units, else thousandths (``250m``)."""
    millis = round(value * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def cpu_request(deployment: Mapping[str, Any]) -> float:
    """Cores a pod of ``deployment`` requests: the sum over its containers; 0 when any
    container requests none (Kubernetes then cannot compute utilization)."""
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    total = 0.0
    for container in spec.get("containers") or []:
        requests = ((container.get("resources") or {}).get("requests") or {})
        if "cpu" not in requests:
            return 0.0
        total += parse_quantity(requests["cpu"])
    return total


@dataclass
class CpuRates:
    """The last CPU-time reading of each pod, so the next one gives its usage (cores).

    A usage is only given for a window that began with the pod ready: the CPU a process
    burns while it starts (before its readiness probe passes) says nothing about its
    load, and Kubernetes likewise ignores a sample not collected wholly after the
    readiness transition."""

    last: dict[tuple[str, str], tuple[float, float, bool]] = field(default_factory=dict)
    """(time, CPU seconds, ready) of each pod's last reading."""
    seen: set[tuple[str, str]] = field(default_factory=set)
    """The pods read since the last ``forget_unseen``."""

    def usage(self, namespace: str, samples: Sequence[PodSample], now: float
              ) -> dict[str, float | None]:
        """Cores each pod used since the previous reading (None: no ready window yet)."""
        out: dict[str, float | None] = {}
        for pod in samples:
            key = (namespace, pod.name)
            self.seen.add(key)
            previous = self.last.get(key)
            out[pod.name] = None
            if pod.cpu_seconds is None:
                continue
            self.last[key] = (now, pod.cpu_seconds, pod.ready)
            if previous is not None and previous[2] and now > previous[0]:
                # a process that exited takes its CPU time with it: never negative
                out[pod.name] = max(0.0, pod.cpu_seconds - previous[1]) / (now - previous[0])
        return out

    def forget_unseen(self) -> None:
        """Drop the readings of pods not read since the last call (they are gone)."""
        self.last = {k: v for k, v in self.last.items() if k in self.seen}
        self.seen = set()


@dataclass(frozen=True)
class Measured:
    """One metric's outcome: a proposal and its status entry, or why it failed."""

    name: str
    proposal: Proposal | None = None
    status: dict[str, Any] | None = None
    error: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Target:
    """What the metrics are computed on: the scale target, its pods and replicas."""

    namespace: str
    deployment: Mapping[str, Any]
    replicas: int
    pods: Sequence[PodSample]
    usage: Mapping[str, float | None]
    tolerance: Tolerance


def _target_value(target: MetricTarget) -> float:
    if target.type == "Utilization":
        return float(target.average_utilization or 0)
    raw = target.average_value if target.type == "AverageValue" else target.value
    return parse_quantity(raw if raw is not None else 0)


def _resource(metric: MetricSpec, on: Target) -> Measured:
    assert metric.resource is not None
    target = metric.resource.target
    request = cpu_request(on.deployment)
    pods = [PodUsage(p.name, p.ready, on.usage.get(p.name), request, p.pending)
            for p in on.pods]
    utilization = target.type == "Utilization"
    try:
        proposal = per_pod_replicas(on.replicas, pods, _target_value(target), on.tolerance,
                                    utilization=utilization, cpu=True)
    except MetricError as exc:
        return Measured("cpu resource utilization (percentage of request)" if utilization
                        else "cpu resource", error=str(exc), reason="FailedGetResourceMetric")
    current: dict[str, Any] = {"averageValue": format_quantity(proposal.raw)}
    if utilization:
        current["averageUtilization"] = round(proposal.current)
    return Measured("cpu resource utilization (percentage of request)" if utilization
                    else "cpu resource", proposal,
                    {"type": "Resource", "resource": {"name": "cpu", "current": current}})


def _pods_rate(metric: MetricSpec, on: Target, metrics: PodMetrics) -> Measured:
    assert metric.pods is not None
    name = metric.pods.metric.name
    deployment = str((on.deployment.get("metadata") or {}).get("name"))
    rate = metrics.request_rate({"reporter": "destination",
                                 "destination_workload_namespace": on.namespace,
                                 "destination_workload": deployment}, RATE_WINDOW_SECONDS)
    ready = [p for p in on.pods if p.ready and not p.pending]
    if rate is None or not ready:
        return Measured(f"pods metric {name}", error="no request rate for the target's ready "
                        "pods", reason="FailedGetPodsMetric")
    per_pod = rate / len(ready)
    pods = [PodUsage(p.name, True, per_pod) for p in ready]
    try:
        proposal = per_pod_replicas(on.replicas, pods, _target_value(metric.pods.target),
                                    on.tolerance, utilization=False, cpu=False)
    except MetricError as exc:
        return Measured(f"pods metric {name}", error=str(exc), reason="FailedGetPodsMetric")
    return Measured(f"pods metric {name}", proposal, {"type": "Pods", "pods": {
        "metric": {"name": name}, "current": {"averageValue": format_quantity(proposal.current)}}})


def _object_rate(metric: MetricSpec, on: Target, metrics: PodMetrics) -> Measured:
    source = metric.object
    assert source is not None
    described = source.described_object
    label = f"{source.metric.name} on Service/{described.name}"
    rate = metrics.request_rate({"reporter": "destination",
                                 "destination_service_namespace": on.namespace,
                                 "destination_service_name": described.name},
                                RATE_WINDOW_SECONDS)
    if rate is None:
        return Measured(label, error="no request rate for the Service",
                        reason="FailedGetObjectMetric")
    target = _target_value(source.target)
    ready = sum(1 for p in on.pods if p.ready and not p.pending)
    try:
        if source.target.type == "Value":
            proposal = object_value_replicas(on.replicas, ready, rate, target, on.tolerance)
            current = {"value": format_quantity(proposal.current)}
        else:
            proposal = object_average_replicas(on.replicas, rate, target, on.tolerance)
            current = {"averageValue": format_quantity(proposal.current)}
    except MetricError as exc:
        return Measured(label, error=str(exc), reason="FailedGetObjectMetric")
    return Measured(label, proposal, {"type": "Object", "object": {
        "describedObject": described.model_dump(by_alias=True, exclude_none=True),
        "metric": {"name": source.metric.name}, "current": current}})


def measure(metric: MetricSpec, on: Target, metrics: PodMetrics) -> Measured:
    """One metric's proposal (the types validation lets through; others are errors)."""
    if metric.type == "Resource" and metric.resource is not None:
        return _resource(metric, on)
    if metric.type == "Pods" and metric.pods is not None:
        return _pods_rate(metric, on, metrics)
    if metric.type == "Object" and metric.object is not None:
        return _object_rate(metric, on, metrics)
    return Measured(metric.type, error=f"metric type {metric.type} is not computed",
                    reason="InvalidMetricSourceType")

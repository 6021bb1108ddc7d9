"""How many replicas one metric asks for: Kubernetes' replica calculator, as a pure
function of what was measured.

The rules follow the HPA controller's (``pkg/controller/podautoscaler/
replica_calculator.go``): the usage ratio is the measured value over the target; within
the tolerance (10 % either way) the replica count stays; otherwise it is the ratio times
the pods that reported. Pods that have not reported yet (missing) and, for CPU, pods
that are not ready are not trusted to move the count: a scale-down assumes the missing
ones run at the target (so it is not overdone), a scale-up assumes they and the unready
ones use nothing (so it is not overdone either); when that changes the direction or
lands within the tolerance, nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_TOLERANCE = 0.1
"""Kubernetes' ``--horizontal-pod-autoscaler-tolerance``."""


class MetricError(Exception):
    """A metric could not be computed (no pods, no samples, no CPU request)."""


@dataclass(frozen=True)
class Tolerance:
    """The band of usage ratios that changes nothing: ``[1 - down, 1 + up]``."""

    up: float = DEFAULT_TOLERANCE
    down: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        return 1.0 - self.down <= ratio <= 1.0 + self.up


@dataclass(frozen=True)
class PodUsage:
    """One pod of the scale target as the metric sees it."""

    name: str
    ready: bool
    usage: float | None
    """The pod's value (CPU cores, requests per second); None: no sample yet."""
    request: float = 0.0
    """The CPU cores its containers request (utilization only)."""
    pending: bool = False


@dataclass(frozen=True)
class Proposal:
    """A metric's answer: the replicas it asks for and the current value it saw."""

    replicas: int
    current: float
    """Average utilization in percent, or the average (or object) value."""
    raw: float = 0.0
    """For utilization: the average usage per pod (cores), reported beside the percent."""


def _ratio(values: dict[str, float], requests: dict[str, float], target: float,
           utilization: bool) -> tuple[float, float, float]:
    """(usage ratio, current value, raw average) of the samples in ``values``."""
    total = sum(values.values())
    raw = total / len(values)
    if not utilization:
        return raw / target, raw, raw
    requested = sum(requests[name] for name in values)
    if requested <= 0:
        raise MetricError("no CPU request on the pods measured")
    percent = total * 100.0 / requested
    return percent / target, percent, raw


@dataclass(frozen=True)
class _Groups:
    """The pods sorted as Kubernetes' ``groupPods`` sorts them."""

    measured: dict[str, float]
    """Ready pods with a sample (for CPU; any running pod with one otherwise)."""
    unready: list[PodUsage]
    missing: list[PodUsage]
    requests: dict[str, float]


def _groups(pods: Sequence[PodUsage], utilization: bool, cpu: bool) -> _Groups:
    if not pods:
        raise MetricError("no pods match the scale target's selector")
    if utilization and any(p.request <= 0 for p in pods):
        raise MetricError("missing request for cpu: every container of the target's pods "
                          "needs resources.requests.cpu")
    measured = {p.name: float(p.usage) for p in pods
                if p.usage is not None and not p.pending and (p.ready or not cpu)}
    if not measured:
        raise MetricError("did not receive metrics for any ready pod of the target")
    return _Groups(
        measured,
        [p for p in pods if p.pending or (cpu and p.usage is not None and not p.ready)],
        [p for p in pods if p.usage is None and not p.pending],
        {p.name: p.request for p in pods})


def _filled(groups: _Groups, ratio: float, target: float, utilization: bool,
            up_with_unready: bool) -> dict[str, float]:
    """The samples with the untrusted pods filled in against the proposed direction."""
    filled = dict(groups.measured)
    for pod in groups.missing:
        if ratio < 1.0:
            filled[pod.name] = (pod.request * max(target, 100.0) / 100.0 if utilization
                                else target)
        elif ratio > 1.0:
            filled[pod.name] = 0.0
    if up_with_unready:
        for pod in groups.unready:
            filled[pod.name] = 0.0
    return filled


def per_pod_replicas(current_replicas: int, pods: Sequence[PodUsage], target: float,
                     tolerance: Tolerance, *, utilization: bool, cpu: bool) -> Proposal:
    """A per-pod metric (CPU utilization or average value, the pods' request rate):
    Kubernetes' ``GetResourceReplicas`` / ``calcPlainMetricReplicas``."""
    groups = _groups(pods, utilization, cpu)
    ratio, current, raw = _ratio(groups.measured, groups.requests, target, utilization)
    up_with_unready = bool(groups.unready) and ratio > 1.0
    if not up_with_unready and not groups.missing:
        if tolerance.within(ratio):
            return Proposal(current_replicas, current, raw)
        return Proposal(math.ceil(ratio * len(groups.measured)), current, raw)
    filled = _filled(groups, ratio, target, utilization, up_with_unready)
    new_ratio = _ratio(filled, groups.requests, target, utilization)[0]
    replicas = math.ceil(new_ratio * len(filled))
    if (tolerance.within(new_ratio) or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio)
            or (new_ratio < 1.0 and replicas > current_replicas)
            or (new_ratio > 1.0 and replicas < current_replicas)):
        return Proposal(current_replicas, current, raw)
    return Proposal(replicas, current, raw)


def object_value_replicas(current_replicas: int, ready_pods: int, value: float, target: float,
                          tolerance: Tolerance) -> Proposal:
    """An Object metric with a ``Value`` target: ``GetObjectMetricReplicas``."""
    if target <= 0:
        raise MetricError("the target value must be positive")
    ratio = value / target
    if tolerance.within(ratio):
        return Proposal(current_replicas, value)
    if ready_pods == 0:
        raise MetricError("no ready pods of the target to scale from")
    return Proposal(math.ceil(ratio * ready_pods), value)


def object_average_replicas(current_replicas: int, value: float, target: float,
                            tolerance: Tolerance) -> Proposal:
    """An Object metric with an ``AverageValue`` target: the value shared over the
    current replicas (``GetObjectPerPodMetricReplicas``)."""
    if target <= 0 or current_replicas <= 0:
        raise MetricError("the target value and the replica count must be positive")
    ratio = value / (target * current_replicas)
    average = value / current_replicas
    if tolerance.within(ratio):
        return Proposal(current_replicas, average)
    return Proposal(math.ceil(value / target), average)

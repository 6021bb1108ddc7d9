"""The HorizontalPodAutoscaler controller: read, measure, decide, scale, report.

One ``sync`` of one autoscaler follows Kubernetes' ``reconcileAutoscaler``: a target at
zero replicas is left alone (scaling disabled, as Flagger relies on for a canary it
scaled to zero); a target outside min/max is brought inside; otherwise every metric
proposes a count, the largest wins (a scale-down only when every metric could be
computed), and the result is stabilised and limited (``scaling``). The new count is
written to the Deployment through the store, as the HPA controller writes the scale
subresource, so ``get`` shows it and the runtime acts on it; the status is written the
way Kubernetes writes it (currentReplicas, desiredReplicas, currentMetrics, conditions).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from meshpilot.api.autoscaling import HorizontalPodAutoscaler, parse_quantity
from meshpilot.delivery.autoscaling.metrics import CpuRates, Measured, Target, measure
from meshpilot.delivery.autoscaling.ports import AutoscalerReader, AutoscalerWriter, PodMetrics
from meshpilot.delivery.autoscaling.replicas import DEFAULT_TOLERANCE, Tolerance
from meshpilot.delivery.autoscaling.scaling import (
    Outcome,
    ScalingHistory,
    longest_period,
    normalize_default,
    normalize_with_behavior,
)
from meshpilot.delivery.ports import Clock, WriteError

log = logging.getLogger(__name__)

Key = tuple[str, str]


def _timestamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


@dataclass
class _Sync:
    """What one sync decided, before it is written."""

    current: int
    desired: int
    rescale: bool = False
    reason: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    conditions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """type -> (status, reason, message)."""

    def condition(self, kind: str, status: bool, reason: str, message: str) -> None:
        self.conditions[kind] = ("True" if status else "False", reason, message)


def _tolerance(hpa: HorizontalPodAutoscaler) -> Tolerance:
    behavior = hpa.spec.behavior
    up = behavior.scale_up.tolerance if behavior and behavior.scale_up else None
    down = behavior.scale_down.tolerance if behavior and behavior.scale_down else None
    return Tolerance(parse_quantity(up) if up is not None else DEFAULT_TOLERANCE,
                     parse_quantity(down) if down is not None else DEFAULT_TOLERANCE)


class AutoscalerController:
    """Syncs HorizontalPodAutoscalers; call ``sync_all`` every sync period (Kubernetes'
    default is 15 s). Keeps each autoscaler's recommendations and scale events, and each
    pod's last CPU reading, in memory."""

    def __init__(self, clock: Clock, reader: AutoscalerReader, metrics: PodMetrics,
                 writer: AutoscalerWriter) -> None:
        self.clock = clock
        self.reader = reader
        self.metrics = metrics
        self.writer = writer
        self.cpu = CpuRates()
        self._history: dict[Key, ScalingHistory] = {}
        self._lock = threading.Lock()

    def sync_all(self) -> None:
        with self._lock:
            keys = self.reader.autoscalers()
            for namespace, name in keys:
                try:
                    self._sync(namespace, name)
                except Exception:  # one broken autoscaler must not stop the others
                    log.exception("autoscaler %s/%s: sync failed", namespace, name)
            self._history = {k: v for k, v in self._history.items() if k in set(keys)}
            self.cpu.forget_unseen()

    def sync(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Sync one autoscaler now; its new status (None when it does not exist)."""
        with self._lock:
            return self._sync(namespace, name)

    def _sync(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.reader.autoscaler(namespace, name)
        if body is None:
            return None
        hpa = HorizontalPodAutoscaler.model_validate(body)
        now = self.clock()
        ref = hpa.spec.scale_target_ref
        deployment = self.reader.deployment(namespace, ref.name)
        if deployment is None:
            sync = _Sync(0, 0)
            sync.condition("AbleToScale", False, "FailedGetScale",
                           f"the HPA controller was unable to get the target's current scale: "
                           f'deployments.apps "{ref.name}" not found')
        else:
            sync = self._decide(hpa, namespace, deployment, now)
            if sync.rescale:
                self._rescale(hpa, deployment, sync, now)
        status = self._status(body, hpa, sync, now)
        if status != body.get("status"):
            self.writer.put_status(namespace, name, status)
        return status

    def _decide(self, hpa: HorizontalPodAutoscaler, namespace: str,
                deployment: dict[str, Any], now: float) -> _Sync:
        spec = hpa.spec
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        sync = _Sync(current, current)
        sync.condition("AbleToScale", True, "SucceededGetScale",
                       "the HPA controller was able to get the target's current scale")
        if current == 0:
            sync.desired = 0
            sync.condition("ScalingActive", False, "ScalingDisabled",
                           "scaling is disabled since the replica count of the target is zero")
            return sync
        if current > spec.max_replicas or current < spec.min_replicas:
            above = current > spec.max_replicas
            sync.desired = spec.max_replicas if above else spec.min_replicas
            sync.reason = ("Current number of replicas above Spec.MaxReplicas" if above
                           else "Current number of replicas below Spec.MinReplicas")
            sync.rescale = True
            sync.condition("ScalingLimited", True,
                           "TooManyReplicas" if above else "TooFewReplicas", sync.reason)
            return sync
        proposed, metric = self._propose(hpa, namespace, deployment, sync, now)
        if proposed is None:
            return sync
        history = self._history.setdefault((namespace, hpa.metadata.name), ScalingHistory())
        outcome = self._normalize(hpa, history, now, current, proposed)
        sync.desired = outcome.replicas
        sync.condition("AbleToScale", True, outcome.able_reason, outcome.able_message)
        sync.condition("ScalingLimited", outcome.limited, outcome.limit_reason,
                       outcome.limit_message)
        sync.rescale = outcome.replicas != current
        sync.reason = (f"{metric} above target" if outcome.replicas > current
                       else "All metrics below target")
        return sync

    @staticmethod
    def _normalize(hpa: HorizontalPodAutoscaler, history: ScalingHistory, now: float,
                   current: int, proposed: int) -> Outcome:
        spec = hpa.spec
        if spec.behavior is None:
            return normalize_default(history, now, current, proposed, spec.min_replicas,
                                     spec.max_replicas)
        return normalize_with_behavior(history, now, current, proposed, spec.min_replicas,
                                       spec.max_replicas, spec.behavior)

    def _propose(self, hpa: HorizontalPodAutoscaler, namespace: str,
                 deployment: dict[str, Any], sync: _Sync, now: float
                 ) -> tuple[int | None, str]:
        """The largest count the metrics ask for, and the metric asking; None when
        every metric failed, or some failed and the rest would scale down."""
        name = hpa.spec.scale_target_ref.name
        pods = self.metrics.pods(namespace, name)
        usage = self.cpu.usage(namespace, pods, now)
        on = Target(namespace, deployment, sync.current, pods, usage, _tolerance(hpa))
        results: list[Measured] = [measure(m, on, self.metrics)
                                   for m in hpa.spec.effective_metrics()]
        sync.metrics = [r.status for r in results if r.status is not None]
        good = [r for r in results if r.proposal is not None]
        failed = [r for r in results if r.proposal is None]
        best = max(good, key=lambda r: r.proposal.replicas if r.proposal else 0, default=None)
        if best is None or best.proposal is None or (
                failed and best.proposal.replicas < sync.current):
            first = failed[0]
            sync.condition("ScalingActive", False, first.reason,
                           f"the HPA was unable to compute the replica count: {first.error}")
            return None, ""
        sync.condition("ScalingActive", True, "ValidMetricFound",
                       f"the HPA was able to successfully calculate a replica count from "
                       f"{best.name}")
        return best.proposal.replicas, best.name

    def _rescale(self, hpa: HorizontalPodAutoscaler, deployment: dict[str, Any],
                 sync: _Sync, now: float) -> None:
        try:
            self.writer.scale(deployment, sync.desired)
        except WriteError as exc:
            sync.rescale = False
            sync.condition("AbleToScale", False, "FailedUpdateScale",
                           f"the HPA controller was unable to update the target scale: {exc}")
            return
        key = (hpa.metadata.namespace, hpa.metadata.name)
        history = self._history.setdefault(key, ScalingHistory())
        if hpa.spec.behavior is not None:
            history.record_scale(now, sync.current, sync.desired,
                                 longest_period(hpa.spec.behavior))
        sync.condition("AbleToScale", True, "SucceededRescale",
                       f"the HPA controller was able to update the target scale to "
                       f"{sync.desired}")
        log.info("autoscaler %s/%s: %d -> %d replicas (%s)", *key, sync.current,
                 sync.desired, sync.reason)

    def _status(self, body: dict[str, Any], hpa: HorizontalPodAutoscaler, sync: _Sync,
                now: float) -> dict[str, Any]:
        old = body.get("status") or {}
        before = {c.get("type"): c for c in old.get("conditions") or []}
        conditions = []
        for kind in ("AbleToScale", "ScalingActive", "ScalingLimited"):
            if kind not in sync.conditions:
                continue
            status, reason, message = sync.conditions[kind]
            prior = before.get(kind) or {}
            since = (prior.get("lastTransitionTime") if prior.get("status") == status
                     else None) or _timestamp(now)
            conditions.append({"type": kind, "status": status, "lastTransitionTime": since,
                               "reason": reason, "message": message})
        out: dict[str, Any] = {
            "currentReplicas": sync.current,
            "desiredReplicas": sync.desired,
            "conditions": conditions,
        }
        if hpa.metadata.generation is not None:
            out["observedGeneration"] = hpa.metadata.generation
        if sync.metrics:
            out["currentMetrics"] = sync.metrics
        last = _timestamp(now) if sync.rescale else old.get("lastScaleTime")
        if last:
            out["lastScaleTime"] = last
        return out


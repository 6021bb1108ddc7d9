"""HorizontalPodAutoscalers wired into the control plane: the autoscaler controller's
ports made real, and the loop that syncs it.

- :class:`StoreAutoscalers`: the stored autoscalers and Deployments; a scale is written
  through ``ConfigService`` (load, validate, store) with the Deployment's
  resourceVersion, as Kubernetes' HPA controller writes the scale subresource, so a
  user's concurrent apply wins and ``get`` shows every scale; the status with PutStatus.
- :class:`RuntimeMetrics`: the local runtime's pods with their processes' CPU time, and
  the embedded telemetry's request rate.
- :class:`AutoscalerLoop`: syncs every autoscaler each sync period (Kubernetes'
  ``--horizontal-pod-autoscaler-sync-period``, 15 s by default; ``up --hpa-sync-period``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from meshpilot.api.identity import ObjectKey
from meshpilot.delivery import WriteError
from meshpilot.delivery.autoscaling import AutoscalerController, PodSample
from meshpilot.runtime.cpu import group_cpu_seconds
from meshpilot.server.config_service import ConfigService
from meshpilot.store import NotFound, PutStatus
from meshpilot.telemetry import Matcher
from meshpilot.telemetry.istio import REQUESTS_TOTAL

if TYPE_CHECKING:
    from meshpilot.runtime import Pod
    from meshpilot.telemetry import MeshTelemetry

log = logging.getLogger(__name__)

SOURCE = "<autoscaler>"
SYNC_SECONDS = 15.0
"""Kubernetes' default HPA sync period."""
_HPA = ("autoscaling", "HorizontalPodAutoscaler")


class StoreAutoscalers:
    """AutoscalerReader and AutoscalerWriter over the store and the one config path."""

    def __init__(self, service: ConfigService) -> None:
        self.service = service
        self.store = service.store

    def autoscalers(self) -> list[tuple[str, str]]:
        return [(o.key.namespace, o.key.name)
                for o in self.store.list(group=_HPA[0], kind=_HPA[1])]

    def autoscaler(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.store.get(ObjectKey(*_HPA, namespace, name))
        return obj.body if obj is not None else None

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.store.get(ObjectKey("apps", "Deployment", namespace, name))
        return obj.body if obj is not None else None

    def scale(self, deployment: dict[str, Any], replicas: int) -> None:
        body = {k: v for k, v in deployment.items() if k != "status"}
        body["spec"] = {**(deployment.get("spec") or {}), "replicas": replicas}
        text = "# scaled by the autoscaler\n" + json.dumps(body, indent=1) + "\n"
        outcome = self.service.apply([(SOURCE, text)])
        if outcome.status != 200:
            detail = "; ".join(d.format() for d in outcome.diagnostics) or "no diagnostics"
            raise WriteError(f"HTTP {outcome.status}: {detail}")

    def put_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.store.commit([PutStatus(ObjectKey(*_HPA, namespace, name), status)])
        except NotFound:
            log.info("autoscaler %s/%s was deleted; its status is not written", namespace, name)


class RuntimeMetrics:
    """PodMetrics over the local runtime's pods and the embedded telemetry."""

    def __init__(self, pods: Callable[[], Sequence[Pod]],
                 telemetry: Callable[[], MeshTelemetry | None]) -> None:
        self._pods = pods
        self._telemetry = telemetry

    def pods(self, namespace: str, deployment: str) -> list[PodSample]:
        mine = [p for p in self._pods() if p.namespace == namespace
                and p.deployment == deployment and p.phase not in ("Terminating", "Failed")]
        used = group_cpu_seconds(pid for p in mine for pid in p.pids)
        out = []
        for pod in mine:
            times = [used[pid] for pid in pod.pids if pid in used]
            out.append(PodSample(pod.name, pod.ready, pod.phase == "Pending",
                                 sum(times) if times else None))
        return out

    def request_rate(self, labels: Mapping[str, str], window_s: float) -> float | None:
        telemetry = self._telemetry()
        if telemetry is None:
            return None
        matchers = [Matcher(name, "=", value) for name, value in labels.items()]
        rates = telemetry.query.rate_by(REQUESTS_TOTAL, matchers, (), window_s)
        return float(sum(rates.values()))


class AutoscalerLoop:
    """Syncs the autoscalers on a thread of its own, every ``sync_seconds``, while this
    replica ``leading`` (the pods it measures run on the leader; with SQLite, always)."""

    def __init__(self, service: ConfigService, pods: Callable[[], Sequence[Pod]],
                 telemetry: Callable[[], MeshTelemetry | None],
                 sync_seconds: float = SYNC_SECONDS,
                 leading: Callable[[], bool] = lambda: True) -> None:
        store = StoreAutoscalers(service)
        self.controller = AutoscalerController(time.time, store, RuntimeMetrics(pods, telemetry),
                                               store)
        self.sync_seconds = sync_seconds
        self.leading = leading
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoscaler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.wait(self.sync_seconds):
            if not self.leading():
                continue
            try:
                self.controller.sync_all()
            except Exception:
                log.exception("autoscaler sync failed")

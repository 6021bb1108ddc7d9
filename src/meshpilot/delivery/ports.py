"""The interfaces the rollout controller talks through, wired by the control plane.

Keeping I/O behind these small protocols is what lets the state machine be stepped tick
by tick in unit tests with a fake clock and in-memory fakes, while production wires the
same calls to the config store, the local runtime and the embedded telemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from meshpilot.api.flagger import Canary, MetricTemplate
from meshpilot.api.flagger_alerts import AlertProvider

Clock = Callable[[], float]
"""Seconds since the epoch (``time.time`` in production, a fake in tests)."""


@dataclass(frozen=True)
class WorkloadStatus:
    """What the runtime reports about one Deployment's pods.

    ``template_hash`` is ``delivery.state.spec_hash`` of the pod template the runtime is
    running or converging to (the Deployment's ``spec.template`` it last acted on);
    ``ready`` counts ready pods of that template only, so "ready" after a promotion means
    the new template is serving, not the old pods.
    """

    exists: bool = False
    template_hash: str | None = None
    desired: int = 0
    ready: int = 0


class WriteError(Exception):
    """A write was refused (validation, conflict); the next tick tries again."""


class MetricQueryError(Exception):
    """A provider could not answer (unreachable, bad query, several series)."""


class ObjectWriter(Protocol):
    """Writes through the one config path (ConfigService.apply), like any user change."""

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        """Apply all of ``objects`` or none; raise WriteError when refused."""
        ...

    def delete(self, namespace: str, refs: Sequence[tuple[str, str]]) -> None:
        """Delete (kind, name) objects of ``namespace``; missing ones are ignored."""
        ...

    def put_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace the Canary's status (store PutStatus)."""
        ...

    def apply_with_status(self, objects: Sequence[dict[str, Any]], namespace: str, name: str,
                          status: dict[str, Any]) -> None:
        """:meth:`apply` ``objects`` and replace the Canary's status in one commit (all
        or nothing; WriteError when refused, the status not written either)."""
        ...


class ClusterReader(Protocol):
    """Reads the stored config and the runtime's view of the pods."""

    def canary(self, namespace: str, name: str) -> Canary | None: ...

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored Deployment body, with metadata.resourceVersion."""
        ...

    def workload(self, namespace: str, name: str) -> WorkloadStatus: ...

    def metric_template(self, namespace: str, name: str) -> MetricTemplate | None: ...

    def config(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        """The stored body of ConfigMap or Secret ``namespace/name`` (``kind``)."""
        ...

    def alert_provider(self, namespace: str, name: str) -> AlertProvider | None: ...

    def autoscaler(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored HorizontalPodAutoscaler body (read for an autoscalerRef only)."""
        ...

    def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        """The decoded keys of Secret ``namespace/name``, or None when there is none."""
        ...


@dataclass(frozen=True)
class WorkloadTraffic:
    """What the embedded telemetry counted for some series over a window."""

    requests: int
    errors: int
    """Of ``requests``, those answered 5xx."""
    success_rate: float | None
    """Percentage of non-5xx from the request rates (defined while the rates are, even
    when too few requests completed in the window to count)."""
    latency_ms: float | None
    """The asked quantile of request duration."""


class TrafficSource(Protocol):
    """The embedded telemetry, read by the built-in metrics."""

    def traffic(self, labels: Mapping[str, str], window_s: float,
                quantile: float) -> WorkloadTraffic | None:
        """The requests over the last ``window_s`` of the series whose labels equal
        ``labels``; None when there are none (or the telemetry is not running)."""
        ...


class LiveCounts(Protocol):
    """Counters read from a workload's proxies at the moment of asking, not from the
    last telemetry cycle: what fail-fast judges on."""

    def live_counts(self, namespace: str, workload: str) -> tuple[int, int] | None:
        """(requests, 5xx answers) the workload's pods have served since they started,
        as their sidecars count them; None when they cannot be read now."""
        ...

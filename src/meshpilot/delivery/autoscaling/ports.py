"""What the autoscaler controller reads and writes, wired by the control plane to the
store, the local runtime and the embedded telemetry (and to fakes in unit tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PodSample:
    """One pod of a Deployment, as the runtime sees it at the moment of asking."""

    name: str
    ready: bool
    pending: bool
    cpu_seconds: float | None
    """CPU time its app processes have used since they started (None: not running)."""


class AutoscalerReader(Protocol):
    def autoscalers(self) -> list[tuple[str, str]]:
        """(namespace, name) of every stored HorizontalPodAutoscaler."""
        ...

    def autoscaler(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored body, with metadata.resourceVersion and status."""
        ...

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class PodMetrics(Protocol):
    def pods(self, namespace: str, deployment: str) -> Sequence[PodSample]:
        """The Deployment's pods now (Terminating and Failed ones left out)."""
        ...

    def request_rate(self, labels: Mapping[str, str], window_s: float) -> float | None:
        """Requests per second over the last ``window_s`` of the ``istio_requests_total``
        series whose labels equal ``labels``; None when no telemetry runs."""
        ...


class AutoscalerWriter(Protocol):
    def scale(self, deployment: dict[str, Any], replicas: int) -> None:
        """Write the Deployment at ``replicas`` (with its resourceVersion, so a
        concurrent change wins); raise WriteError when refused."""
        ...

    def put_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...

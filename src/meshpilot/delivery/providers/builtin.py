"""Flagger's built-in metrics, ``request-success-rate`` and ``request-duration``, answered
by the embedded telemetry.

The series are the ones Flagger's Istio observer queries in Prometheus:
``istio_requests_total{reporter="destination", destination_workload_namespace=NS,
destination_workload=W}`` and the duration histogram with the same labels. The telemetry
is reached through the :class:`~meshpilot.delivery.ports.TrafficSource` port, so delivery
does not import it and tests answer with fixed samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from meshpilot.delivery.ports import TrafficSource

SUCCESS_RATE_QUANTILE = 0.99
"""The quantile asked for alongside a success rate (the telemetry answers both at once)."""


@dataclass(frozen=True)
class Sample:
    """A metric value over a window and how many requests stand behind it."""

    value: float | None
    requests: int


class MetricsSource(Protocol):
    """Flagger's two built-in metrics per workload, as the checks ask for them."""

    def success_rate(self, namespace: str, workload: str, window_s: float) -> Sample:
        """Percentage (0-100) of non-5xx responses served by ``workload``."""
        ...

    def latency_quantile(self, namespace: str, workload: str, window_s: float, q: float) -> Sample:
        """The ``q`` quantile of request duration in milliseconds."""
        ...


def destination_labels(namespace: str, workload: str) -> dict[str, str]:
    """Flagger's Istio filter: requests as the serving workload's sidecar reported them."""
    return {
        "reporter": "destination",
        "destination_workload_namespace": namespace,
        "destination_workload": workload,
    }


class BuiltinMetrics:
    """MetricsSource over the embedded telemetry's counts for a workload."""

    def __init__(self, traffic: TrafficSource) -> None:
        self._traffic = traffic

    def success_rate(self, namespace: str, workload: str, window_s: float) -> Sample:
        seen = self._traffic.traffic(destination_labels(namespace, workload), window_s,
                                     SUCCESS_RATE_QUANTILE)
        if seen is None:
            return Sample(None, 0)
        if seen.requests > 0:
            # The share of non-5xx among the requests counted in the window.
            ok = seen.requests - min(seen.errors, seen.requests)
            return Sample(100.0 * ok / seen.requests, seen.requests)
        return Sample(seen.success_rate, seen.requests)

    def latency_quantile(self, namespace: str, workload: str, window_s: float,
                         q: float) -> Sample:
        seen = self._traffic.traffic(destination_labels(namespace, workload), window_s, q)
        if seen is None:
            return Sample(None, 0)
        return Sample(seen.latency_ms, seen.requests)

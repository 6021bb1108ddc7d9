"""Metric providers: what answers a Canary's metric checks.

- :mod:`.builtin`: Flagger's built-in metrics (``request-success-rate``,
  ``request-duration``), chosen by metric name, answered by the embedded telemetry.
- :mod:`.prometheus`, :mod:`.graphite`, :mod:`.influxdb`: MetricTemplate queries whose
  ``spec.provider.type`` is ``prometheus``, ``graphite`` or ``influxdb`` (InfluxQL on
  InfluxDB 1.x; Flagger's Flux for InfluxDB 2 is refused at apply).

As in Flagger's providers package, a MetricTemplate's provider is looked up by its type
in one table, :data:`PROVIDERS`: another provider is one module here and one line there.
A type Flagger knows but meshpilot does not query is a :class:`MetricQueryError`, which
the check reports as "no data" with the reason, as it does for an unreachable provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers.builtin import BuiltinMetrics, MetricsSource, Sample
from meshpilot.delivery.providers.graphite import GraphiteProvider
from meshpilot.delivery.providers.influxdb import InfluxDBProvider
from meshpilot.delivery.providers.prometheus import PrometheusProvider


class MetricProvider(Protocol):
    """Runs one rendered MetricTemplate query against its provider."""

    def query(self, provider: MetricTemplateProvider, query: str,
              credentials: Mapping[str, bytes] | None = None) -> float | None:
        """The single number the query returns, or None for no data (empty or NaN).
        ``credentials`` are the decoded keys of the template's ``secretRef`` Secret.
        Raises MetricQueryError when the provider cannot answer."""
        ...


PROVIDERS: Mapping[str, Callable[[], MetricProvider]] = MappingProxyType({
    "prometheus": PrometheusProvider,
    "graphite": GraphiteProvider,
    "influxdb": InfluxDBProvider,
})
"""MetricTemplate ``spec.provider.type`` → how to make the provider that answers it."""


def provider_for(provider_type: str) -> Callable[[], MetricProvider]:
    """The maker of the provider for ``provider_type``; MetricQueryError if there is none."""
    try:
        return PROVIDERS[provider_type]
    except KeyError:
        raise MetricQueryError(
            f"provider type {provider_type!r} is not supported; meshpilot queries "
            f"{', '.join(PROVIDERS)} (or the built-in metrics)"
        ) from None


class Providers:
    """A MetricProvider for every registered type: each query goes to the provider its
    template names. A provider is made on first use and kept (with its HTTP client) for
    the life of this object."""

    def __init__(self) -> None:
        self._made: dict[str, MetricProvider] = {}

    def query(self, provider: MetricTemplateProvider, query: str,
              credentials: Mapping[str, bytes] | None = None) -> float | None:
        made = self._made.get(provider.type)
        if made is None:
            made = self._made[provider.type] = provider_for(provider.type)()
        return made.query(provider, query, credentials)


__all__ = [
    "PROVIDERS",
    "BuiltinMetrics",
    "GraphiteProvider",
    "InfluxDBProvider",
    "MetricProvider",
    "MetricsSource",
    "PrometheusProvider",
    "Providers",
    "Sample",
    "provider_for",
]

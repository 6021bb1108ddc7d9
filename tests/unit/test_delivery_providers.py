"""Metric providers: the registry by MetricTemplate type, and the built-in metrics."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from tests.unit.delivery_fakes import FakeMetrics
from tests.unit.test_delivery_checks import TEMPLATE, template_canary

from meshpilot.api.flagger import MetricTemplate
from meshpilot.delivery.checks import CheckContext, evaluate
from meshpilot.delivery.ports import MetricQueryError, WorkloadTraffic
from meshpilot.delivery.providers import (
    BuiltinMetrics,
    PrometheusProvider,
    Providers,
    Sample,
    provider_for,
)

UNSUPPORTED = ("provider type 'datadog' is not supported; meshpilot queries prometheus, "
               "graphite, influxdb (or the built-in metrics)")


def test_the_registry_maps_a_template_type_to_its_provider() -> None:
    assert provider_for("prometheus") is PrometheusProvider
    with pytest.raises(MetricQueryError) as raised:
        provider_for("datadog")
    assert str(raised.value) == UNSUPPORTED


def test_a_template_of_an_unsupported_type_waits_with_the_reason() -> None:
    body = {**TEMPLATE, "spec": {**TEMPLATE["spec"],
                                 "provider": {"type": "datadog", "address": "http://dd"}}}
    c = template_canary()
    context = CheckContext(c, FakeMetrics(), Providers(),
                           lambda ns, name: MetricTemplate.model_validate(body))
    record = evaluate(c.spec.analysis.metrics[0], context)
    assert record.verdict == "nodata" and record.message == f"errors: {UNSUPPORTED}"


class Counted:
    def __init__(self, seen: WorkloadTraffic | None) -> None:
        self.seen = seen
        self.asked: list[tuple[dict[str, str], float, float]] = []

    def traffic(self, labels: Mapping[str, str], window_s: float,
                quantile: float) -> WorkloadTraffic | None:
        self.asked.append((dict(labels), window_s, quantile))
        return self.seen


def test_builtin_metrics_ask_for_what_the_destination_sidecars_reported() -> None:
    traffic = Counted(WorkloadTraffic(requests=200, errors=10, success_rate=99.0,
                                      latency_ms=42.0))
    metrics = BuiltinMetrics(traffic)
    assert metrics.success_rate("test", "podinfo", 60.0) == Sample(95.0, 200)
    assert metrics.latency_quantile("test", "podinfo", 30.0, 0.5) == Sample(42.0, 200)
    labels = {"reporter": "destination", "destination_workload_namespace": "test",
              "destination_workload": "podinfo"}
    assert traffic.asked == [(labels, 60.0, 0.99), (labels, 30.0, 0.5)]


def test_builtin_success_rate_without_completed_requests_is_the_rate_based_one() -> None:
    idle = BuiltinMetrics(Counted(WorkloadTraffic(0, 0, 97.5, None)))
    assert idle.success_rate("test", "podinfo", 60.0) == Sample(97.5, 0)
    assert BuiltinMetrics(Counted(None)).latency_quantile("test", "podinfo", 60.0, 0.99) \
        == Sample(None, 0)


def test_secret_keys_become_the_authorization_header_as_flagger_sends_it() -> None:
    """Flagger's prometheus provider: a ``token`` key is a bearer token (it wins over
    username/password); otherwise basic auth from ``username`` and ``password``."""
    from meshpilot.delivery.providers.prometheus import auth_headers

    assert auth_headers(None) == {}
    assert auth_headers({"token": b"abc123\n", "username": b"u", "password": b"p"}) == {
        "Authorization": "Bearer abc123"}
    assert auth_headers({"username": b"flagger", "password": b"pw"}) == {
        "Authorization": "Basic ZmxhZ2dlcjpwdw=="}

"""The graphite and influxdb providers' reading of requests and answers, on shapes the
real servers (tests/integration) do not produce on demand: an address with a path,
values as strings, malformed bodies. Each follows Flagger's graphite provider (URL
joining, datapoint decoding) or, for influxdb, the InfluxDB 1.x ``/query`` answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from tests.unit.delivery_fakes import FakeMetrics
from tests.unit.test_delivery_checks import TEMPLATE, template_canary

from meshpilot.api.flagger import MetricTemplate, MetricTemplateProvider
from meshpilot.api.metric_query import graphite_offset
from meshpilot.delivery.checks import CheckContext, evaluate
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers import provider_for
from meshpilot.delivery.providers.graphite import GraphiteProvider, last_datapoint, render_url
from meshpilot.delivery.providers.influxdb import InfluxDBProvider, query_endpoint, single_value


def test_the_registry_knows_graphite_and_influxdb() -> None:
    assert provider_for("graphite") is GraphiteProvider
    assert provider_for("influxdb") is InfluxDBProvider


def test_render_goes_under_the_address_path_as_flagger_joins_it() -> None:
    """Flagger joins ``render`` to the address's path and drops its query string."""
    assert render_url("http://g:8080/graphite/?x=1") == "http://g:8080/graphite/render"
    assert render_url("https://g") == "https://g/render"
    with pytest.raises(MetricQueryError, match="not an http"):
        render_url("g:8080")


def test_the_request_carries_the_folded_query_and_json_format() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[{"target": "a", "datapoints": [["2.5", 1]]}])

    provider = GraphiteProvider(httpx.Client(transport=httpx.MockTransport(handler)))
    spec = MetricTemplateProvider(type="graphite", address="http://g/prefix",
                                  headers={"X-Tenant": ["a", "b"]})
    assert provider.query(spec, "target=sumSeries(\n  a.*)&format=raw") == 2.5
    request = seen[0]
    assert request.url.path == "/prefix/render"
    assert request.url.params.multi_items() == [("target", "sumSeries( a.*)"),
                                                ("format", "json")]
    assert request.headers["X-Tenant"] == "a, b"
    assert "Authorization" not in request.headers


def test_datapoints_decode_as_flagger_decodes_them() -> None:
    """Numbers and numeric strings are values, null is skipped; anything else is an
    error (Flagger's unmarshalling fails on it); NaN counts as no value."""
    assert last_datapoint([{"datapoints": [[1, 1], ["3.5", 2], [None, 3]]}]) == 3.5
    assert last_datapoint([{"datapoints": [["NaN", 1]]}]) is None
    assert last_datapoint([]) is None
    for bad in ([{"datapoints": [[True, 1]]}], [{"datapoints": [["x", 1]]}],
                [{"datapoints": [[1]]}], [{"target": "a"}], {"error": "x"}):
        with pytest.raises(MetricQueryError):
            last_datapoint(bad)


def test_influxdb_endpoint_keeps_the_address_parameters() -> None:
    assert query_endpoint("http://i:8086/?db=istio&rp=week") == (
        "http://i:8086/query", [("db", "istio"), ("rp", "week")])
    assert query_endpoint("https://i/influx?q=x") == ("https://i/influx/query", [])


def _series(*rows: list[Any], columns: tuple[str, ...] = ("time", "v")) -> dict[str, Any]:
    return {"results": [{"statement_id": 0, "series": [
        {"name": "m", "columns": list(columns), "values": list(rows)}]}]}


def test_influxdb_answers_read_as_one_number() -> None:
    assert single_value(_series([0, 4])) == 4.0
    assert single_value(_series([0, None])) is None
    assert single_value({"results": [{"statement_id": 0}]}) is None
    with pytest.raises(MetricQueryError, match="2 values per row"):
        single_value(_series([0, 1, 2], columns=("time", "a", "b")))
    with pytest.raises(MetricQueryError, match="query failed: boom"):
        single_value({"results": [{"statement_id": 0, "error": "boom"}]})
    with pytest.raises(MetricQueryError, match="query failed: unable to parse"):
        single_value({"error": "unable to parse"})


def test_influxdb_query_is_checked_before_it_is_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent: {request.url}")

    provider = InfluxDBProvider(httpx.Client(transport=httpx.MockTransport(handler)))
    spec = MetricTemplateProvider(type="influxdb", address="http://i:8086")
    with pytest.raises(MetricQueryError, match=r"it is Flux\); not sent"):
        provider.query(spec, 'from(bucket: "x") |> range(start: -1h)')


def test_graphite_offsets_are_spelled_as_graphite_reads_them() -> None:
    assert [graphite_offset(s) for s in (60, 300, 90, 0.4, 3600)] == [
        "1min", "5min", "90s", "1s", "60min"]


def test_a_graphite_template_gets_the_interval_in_graphite_s_spelling() -> None:
    """A Canary's ``interval: 1m`` is Go's minute; Graphite reads ``1m`` as nothing
    (its minute is ``min``), so a graphite template's ``{{ interval }}`` is ``1min``
    while a prometheus one keeps ``1m``."""
    asked: list[tuple[str, str]] = []

    class Recorder:
        def query(self, provider: MetricTemplateProvider, query: str,
                  credentials: Mapping[str, bytes] | None = None) -> float | None:
            asked.append((provider.type, query))
            return 0.0

    for kind in ("graphite", "prometheus"):
        body = {**TEMPLATE, "spec": {"provider": {"type": kind, "address": "http://m"},
                                     "query": "target=x&from=-{{ interval }}"}}
        c = template_canary(interval="1m")
        context = CheckContext(c, FakeMetrics(), Recorder(),
                               lambda ns, name, b=body: MetricTemplate.model_validate(b))
        assert evaluate(c.spec.analysis.metrics[0], context).verdict == "pass"
    assert asked == [("graphite", "target=x&from=-1min"), ("prometheus", "target=x&from=-1m")]

"""Graphite and InfluxDB MetricTemplates at apply: what could never answer a check is
refused (MP0073 address, MP0074 query) with file, line and field; what is replaced is
warned about (MP2049); Flagger's documented templates are judged as written.

The Graphite template is the one in Flagger's metrics docs (``usage/metrics.md``,
"Graphite"); the InfluxDB one is its Flux example ("InfluxDB"), which InfluxDB 1.x
cannot run.
"""

from __future__ import annotations

import textwrap

import pytest

from meshpilot.api.metric_query import (
    graphite_params,
    influxql_problem,
    is_http_url,
    metric_interval_seconds,
)
from meshpilot.validation import Diagnostic, Plan, plan_apply

FLAGGER_GRAPHITE = """\
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: graphite-request-success-rate
spec:
  provider:
    type: graphite
    address: http://graphite.monitoring
  query: |
    target=summarize(
      asPercent(
        sumSeries(
          stats.timers.httpServerRequests.app.{{target}}.exception.*.method.*.outcome.{CLIENT_ERROR,INFORMATIONAL,REDIRECTION,SUCCESS}.status.*.uri.*.count
        ),
        sumSeries(
          stats.timers.httpServerRequests.app.{{target}}.exception.*.method.*.outcome.*.status.*.uri.*.count
        )
      ),
      {{interval}},
      'avg'
    )
"""

FLAGGER_FLUX = """\
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: not-found
  namespace: test
spec:
  provider:
    type: influxdb
    address: http://influxdb.monitoring:8086
    secretRef:
      name: influx-token
  query: |
    from(bucket: "default")
    |> range(start: -2h)
    |> filter(fn: (r) => r["_measurement"] == "istio_requests_total")
    |> count()
    |> yield(name: "count")
"""

INFLUXQL = """\
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: errors}
spec:
  provider: {type: influxdb, address: "http://influxdb.monitoring:8086/?db=istio"}
  query: SELECT sum("value") FROM "requests" WHERE "workload" = '{{ target }}'
"""


def plan(text: str) -> Plan:
    return plan_apply([("t.yaml", text)], [])


def found(p: Plan, code: str) -> Diagnostic:
    hits = [d for d in p.diagnostics if d.code == code]
    assert len(hits) == 1, [d.format() for d in p.diagnostics]
    return hits[0]


def test_flagger_s_graphite_template_is_accepted_as_written() -> None:
    assert plan(FLAGGER_GRAPHITE).diagnostics == []


def test_an_influxql_select_is_accepted() -> None:
    assert plan(INFLUXQL).diagnostics == []


def test_flagger_s_flux_template_is_refused_naming_the_gap() -> None:
    p = plan(FLAGGER_FLUX)
    assert not p.ok
    d = found(p, "MP0074")
    assert (d.file, d.line, d.path) == ("t.yaml", 12, "spec.query")
    assert "it is Flux" in d.message and "/api/v2/query" in d.message
    assert "SELECT" in d.message  # the alternative, written out


@pytest.mark.parametrize(("query", "why"), [
    ("SHOW DATABASES", "starts with SHOW"),
    ('SELECT "value" INTO "copy" FROM "requests"', "INTO writes"),
    ('SELECT count("value") FROM "r"; DROP DATABASE "istio"', "more than one statement"),
])
def test_influxql_other_than_one_read_only_select_is_refused(query: str, why: str) -> None:
    d = found(plan(INFLUXQL.replace(INFLUXQL.splitlines()[-1], f"  query: '{query}'")),
              "MP0074")
    assert why in d.message


@pytest.mark.parametrize(("address", "line"), [
    (None, 5), ("influxdb.monitoring:8086", 7), ("ftp://influxdb", 7), ("http://", 7)])
def test_an_influxdb_or_graphite_template_needs_an_http_address(
        address: str | None, line: int) -> None:
    for kind in ("influxdb", "graphite"):
        query = 'SELECT 1' if kind == "influxdb" else "target=a.b"
        where = "" if address is None else f"    address: '{address}'\n"
        text = textwrap.dedent(f"""\
            apiVersion: flagger.app/v1beta1
            kind: MetricTemplate
            metadata: {{name: m}}
            spec:
              provider:
                type: {kind}
            """) + where + f"  query: '{query}'\n"
        p = plan(text)
        assert not p.ok
        d = found(p, "MP0073")
        # a missing address is placed on the provider that lacks it
        assert (d.file, d.line, d.path) == ("t.yaml", line, "spec.provider.address")
        assert ("needs address" if address is None else "not an http:// or https://") in \
            d.message


def test_a_prometheus_template_may_leave_the_address_to_metrics_server() -> None:
    text = INFLUXQL.replace('{type: influxdb, address: "http://influxdb.monitoring:8086/?db'
                            '=istio"}', "{type: prometheus}").replace(
        """SELECT sum("value") FROM "requests" WHERE "workload" = '{{ target }}'""", "sum(up)")
    assert "type: prometheus" in text
    assert plan(text).diagnostics == []


def test_a_graphite_query_without_target_is_refused_and_format_is_warned() -> None:
    text = FLAGGER_GRAPHITE.replace("target=summarize(", "from=-5min&series=summarize(")
    d = found(plan(text), "MP0074")
    assert d.path == "spec.query" and "no target parameter" in d.message
    warned = plan(FLAGGER_GRAPHITE.replace("    )\n", "    )&format=csv\n"))
    assert warned.ok
    assert "format is replaced by json" in found(warned, "MP2049").message


def test_other_flagger_provider_types_stay_refused() -> None:
    text = INFLUXQL.replace("type: influxdb", "type: datadog")
    d = found(plan(text), "MP0048")
    assert "prometheus, graphite and influxdb" in d.message


def test_graphite_params_fold_white_space_and_decode_as_flagger_does() -> None:
    assert graphite_params("target=sumSeries(\n   a.b,\n  c.d)\n&from=-5min") == [
        ("target", "sumSeries( a.b, c.d) "), ("from", "-5min")]
    assert graphite_params("target=a%2Cb&until=now+1") == [("target", "a,b"),
                                                           ("until", "now 1")]


def test_influxql_literals_and_comments_do_not_count() -> None:
    assert influxql_problem("-- errors\nSELECT \"into\" FROM r WHERE a = '; DROP x'") is None
    assert influxql_problem("SELECT a / b FROM r WHERE w =~ /in;to/;") is None
    assert influxql_problem("/* c */ select 1") is None
    assert influxql_problem("") == "it starts with nothing, not SELECT"


def test_http_urls() -> None:
    assert is_http_url("https://g.monitoring/graphite")
    assert not is_http_url("http://[::1")  # does not parse
    assert not is_http_url("g.monitoring:80")


FLAGGER_GRAPHITE_CANARY = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    threshold: 5
    metrics:
      - name: "success rate"
        templateRef:
          name: graphite-request-success-rate
        thresholdRange:
          min: 90
        interval: 1min
"""


def test_flagger_s_graphite_canary_with_a_1min_interval_applies() -> None:
    """Flagger's graphite docs write the metric interval ``1min`` (its schema takes
    anything starting with digits and m or s); it is a minute, as Graphite reads it."""
    p = plan_apply([("t.yaml", FLAGGER_GRAPHITE + "---\n" + FLAGGER_GRAPHITE_CANARY)], [])
    assert p.ok, [d.format() for d in p.diagnostics]
    assert [metric_interval_seconds(s) for s in ("1min", "5mins", "30sec", "1m", "90s")] == [
        60.0, 300.0, 30.0, 60.0, 90.0]


def test_a_metric_interval_in_no_known_spelling_is_refused() -> None:
    p = plan(FLAGGER_GRAPHITE_CANARY.replace("interval: 1min", "interval: 1month"))
    d = found(p, "MP0014")
    assert (d.line, d.path) == (16, "spec.analysis.metrics[0].interval")
    assert "1min" in d.message and "30s" in d.message


def _secret(**data: str) -> str:
    return ("apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData:\n"
            + "".join(f"  {k}: {v}\n" for k, v in data.items()))


@pytest.mark.parametrize(("kind", "keys", "warned"), [
    ("influxdb", {"token": "t", "org": "o"}, "token and org are InfluxDB 2's"),
    ("influxdb", {"username": "u"}, "reads username and password"),
    ("graphite", {"token": "t"}, "reads username and password"),
    ("prometheus", {"username": "u"}, "reads token, or username and password"),
    ("influxdb", {"username": "u", "password": "p"}, None),
    ("graphite", {"username": "u", "password": "p"}, None),
    ("prometheus", {"token": "t"}, None),
])
def test_a_secret_without_the_keys_its_provider_reads_is_warned_about(
        kind: str, keys: dict[str, str], warned: str | None) -> None:
    """The Secret exists (no MP2024) but the provider would find nothing to send: the
    template is applied with MP2049 on its secretRef, which names the keys."""
    query = {"influxdb": "SELECT 1", "graphite": "target=a.b", "prometheus": "up"}[kind]
    text = textwrap.dedent(f"""\
        apiVersion: flagger.app/v1beta1
        kind: MetricTemplate
        metadata: {{name: m}}
        spec:
          provider:
            type: {kind}
            address: http://metrics.monitoring
            secretRef: {{name: creds}}
          query: '{query}'
        ---
        """) + _secret(**keys)
    p = plan_apply([("t.yaml", text)], [])
    assert p.ok
    if warned is None:
        assert p.diagnostics == []
        return
    d = found(p, "MP2049")
    assert (d.line, d.path) == (8, "spec.provider.secretRef.name")
    assert warned in d.message and "Secret default/creds has the keys" in d.message

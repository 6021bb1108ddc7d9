"""MetricTemplates of the graphite and influxdb providers that could never answer a
check, refused at apply rather than failing in the middle of a rollout.

- MP0073 (error): no ``provider.address``, or one that is not an ``http(s)`` URL. Unlike
  a prometheus template, which falls back on the Canary's ``metricsServer``, these
  providers have nowhere else to ask (Flagger refuses them the same way when it builds
  the provider).
- MP0074 (error): an influxdb query that is not an InfluxQL ``SELECT``: Flagger's Flux
  needs InfluxDB 2's ``/api/v2/query``, which the InfluxDB 1.x meshpilot queries does
  not have; and a graphite query with no ``target`` parameter, which Graphite answers
  with no series at all.
- MP2049 (warning): a graphite query's own ``format``, replaced by ``json`` as Flagger
  replaces it (the provider reads JSON). (The same code warns of a ``secretRef`` Secret
  without the keys the provider reads: :mod:`.template_secret_state`.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.api.metric_query import graphite_params, influxql_problem, is_http_url
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.shapes import as_mapping

CHECKED = ("graphite", "influxdb")
"""The provider types these rules judge (prometheus's address is optional)."""


def metric_template_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    provider = as_mapping(spec.get("provider"))
    kind = provider.get("type")
    if kind not in CHECKED:
        return []
    query = spec.get("query")
    return [*_address(str(kind), provider.get("address")),
            *(_query(str(kind), query) if isinstance(query, str) else ())]


def _address(kind: str, address: Any) -> Iterator[Finding]:
    path = ("spec", "provider", "address")
    example = "http://graphite.monitoring" if kind == "graphite" else \
        "http://influxdb.monitoring:8086/?db=istio"
    if not address:
        yield Finding(codes.PROVIDER_ADDRESS, path,
                      f"a {kind} provider needs address, the URL its queries go to "
                      f"(e.g. {example}); only prometheus falls back on the Canary's "
                      "metricsServer")
    elif not isinstance(address, str) or not is_http_url(address):
        yield Finding(codes.PROVIDER_ADDRESS, path,
                      f"address {address!r} is not an http:// or https:// URL with a host "
                      f"(e.g. {example})")


def _query(kind: str, query: str) -> Iterator[Finding]:
    path = ("spec", "query")
    if kind == "influxdb":
        problem = influxql_problem(query)
        if problem:
            yield Finding(codes.PROVIDER_QUERY, path,
                          f"the influxdb query is not an InfluxQL SELECT ({problem}): "
                          "meshpilot queries InfluxDB 1.x's /query endpoint, which runs "
                          "InfluxQL; Flux (InfluxDB 2's /api/v2/query) is not run. Write "
                          "e.g. SELECT sum(\"value\") FROM \"requests\" WHERE time > "
                          "now() - {{ interval }}")
        return
    names = {name for name, _ in graphite_params(query)}
    if "target" not in names:
        yield Finding(codes.PROVIDER_QUERY, path,
                      "the graphite query has no target parameter: it is the parameter "
                      "list of a /render request, e.g. target=sumSeries(app.{{ target }}"
                      ".errors)&from=-{{ interval }}")
    if "format" in names:
        yield Finding(codes.TEMPLATE_NOT_AS_WRITTEN, path,
                      "format is replaced by json: the provider reads Graphite's JSON "
                      "answer; remove format from the query")

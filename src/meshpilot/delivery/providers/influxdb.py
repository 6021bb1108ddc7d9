"""The ``influxdb`` provider, for InfluxDB 1.x: an InfluxQL ``SELECT`` over ``/query``.

Flagger's influxdb provider speaks Flux to InfluxDB 2's ``/api/v2/query`` with a token
and an organisation. The InfluxDB meshpilot is tested against (Debian's 1.6) has neither
Flux nor that endpoint, so Flux templates are refused at apply (MP0074) and this
provider runs what 1.x runs: InfluxQL. How it maps onto Flagger's template:

- ``address`` is the server's URL; its query string, if any, is sent with each query,
  which is how a database is chosen (``http://influxdb:8086/?db=istio``), as is a
  retention policy (``rp``). A query may also name ``"db"."rp"."measurement"`` itself.
- ``secretRef``: ``username`` and ``password``, sent as basic auth (1.x's users). A
  Secret with Flagger's ``token`` and ``org`` is InfluxDB 2's and is refused when the
  check runs, naming the keys this provider reads.
- The query must be one read-only ``SELECT`` (no ``INTO``), checked at apply and again
  here once the template's variables are in (a ``templateVariables`` value could add a
  statement): InfluxDB 1.x runs writes sent with GET too. It is sent with GET within
  Flagger's 15 seconds.
- The answer is one number: the only value column of the only row of the only series
  the statement returns, as a Prometheus query must return one series here. No series (or
  a null value) is no data; several series or rows are an error asking for an aggregate.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.api.metric_query import influxql_problem, is_http_url
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers.http import ProviderHTTP, template_headers

INFLUX2_KEYS = frozenset({"token", "org"})
"""The Secret keys of Flagger's provider for InfluxDB 2, which 1.x cannot use."""


def query_endpoint(address: str) -> tuple[str, list[tuple[str, str]]]:
    """``/query`` under the address's path, and the address's own query parameters."""
    if not is_http_url(address):
        raise MetricQueryError(f"influxdb address {address!r} is not an http(s) URL")
    parts = urlsplit(address)
    url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/query"
    return url, [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != "q"]


def basic_auth(credentials: Mapping[str, bytes] | None) -> dict[str, str]:
    """InfluxDB 1.x's basic auth from the ``secretRef`` Secret's username and password."""
    if credentials is None:
        return {}
    if "username" not in credentials or "password" not in credentials:
        influx2 = sorted(INFLUX2_KEYS & set(credentials))
        why = (f" ({', '.join(influx2)} authenticate to InfluxDB 2, which meshpilot does "
               "not query)") if influx2 else ""
        raise MetricQueryError("the influxdb provider's secretRef Secret needs username and "
                               f"password (an InfluxDB 1.x user){why}")
    pair = credentials["username"] + b":" + credentials["password"]
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


class InfluxDBProvider:
    """A ``/query`` request per InfluxQL query."""

    def __init__(self, client: httpx.Client | None = None, timeout: float = 15.0) -> None:
        self._http = ProviderHTTP(client, timeout)

    def query(self, provider: MetricTemplateProvider, query: str,
              credentials: Mapping[str, bytes] | None = None) -> float | None:
        if not provider.address:
            raise MetricQueryError("the influxdb provider has no address")
        problem = influxql_problem(query)
        if problem:
            raise MetricQueryError(f"the influxdb query is not one InfluxQL SELECT "
                                   f"({problem}); not sent")
        url, params = query_endpoint(provider.address)
        headers = template_headers(provider)
        headers.update(basic_auth(credentials))
        response = self._http.get(provider, url, [*params, ("q", query)], headers)
        try:
            body = response.json()
        except ValueError as exc:
            raise MetricQueryError(
                f"influxdb answered with no JSON: {response.text[:200]}") from exc
        return single_value(body)


def single_value(body: Any) -> float | None:
    """The one number of the statement's result; None when it has no series."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        error = body.get("error") if isinstance(body, dict) else None
        raise MetricQueryError(f"influxdb query failed: {error if error else repr(body)}")
    first = results[0]
    if "error" in first:
        raise MetricQueryError(f"influxdb query failed: {first['error']}")
    series = first.get("series") or []
    if not series:
        return None
    if len(series) > 1:
        raise MetricQueryError(f"the query returned {len(series)} series; it must return a "
                               "single number (drop GROUP BY or aggregate further)")
    return _row_value(series[0])


def _row_value(series: dict[str, Any]) -> float | None:
    columns, rows = series.get("columns") or [], series.get("values") or []
    if len(rows) != 1:
        raise MetricQueryError(f"the query returned {len(rows)} rows; it must return a "
                               "single number (aggregate it, e.g. with sum(), mean() or "
                               "last())")
    values = [v for c, v in zip(columns, rows[0], strict=False) if c != "time"]
    if len(values) != 1:
        raise MetricQueryError(f"the query returned {len(values)} values per row; select "
                               "one field or aggregate")
    raw = values[0]
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise MetricQueryError(f"the query returned {raw!r}, not a number")
    value = float(raw)
    return None if math.isnan(value) or math.isinf(value) else value

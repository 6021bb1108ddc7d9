"""Flagger's ``graphite`` provider: a MetricTemplate query over Graphite's render API.

The template's query is the parameter list of a ``/render`` request, as Flagger reads
it (``target=summarize(...)&from=-5min``): runs of white space become one space (so a
target may be written over several lines), ``format`` is always ``json``, and the
request goes to ``render`` under the address's path. The answer is the last non-null
datapoint, taking the series in the order Graphite returns them and each one's points
oldest first (Flagger's loop); no such point is no data. A ``secretRef`` Secret must hold
``username`` and ``password``, sent as basic auth.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.api.metric_query import graphite_params, is_http_url
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers.http import ProviderHTTP, template_headers


def render_params(query: str) -> list[tuple[str, str]]:
    """The ``/render`` parameters of a template query: white space folded, the pairs
    decoded as a URL query string is, and ``format=json`` in place of any format."""
    pairs = graphite_params(query)
    return [(k, v) for k, v in pairs if k != "format"] + [("format", "json")]


def render_url(address: str) -> str:
    """``render`` under the address's path; the address's own query string is not kept
    (the template's query is the request's)."""
    if not is_http_url(address):
        raise MetricQueryError(f"graphite address {address!r} is not an http(s) URL")
    parts = urlsplit(address)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/render"


def basic_auth(credentials: Mapping[str, bytes] | None) -> dict[str, str]:
    """Basic auth from the ``secretRef`` Secret, which must hold both keys; sent only
    when both are non-empty, as Flagger sends it."""
    if credentials is None:
        return {}
    for key in ("username", "password"):
        if key not in credentials:
            raise MetricQueryError(f"the graphite provider's secretRef Secret has no {key} "
                                   "(keys: username and password)")
    user, password = credentials["username"], credentials["password"]
    if not user or not password:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(user + b":" + password).decode()}


class GraphiteProvider:
    """A ``/render`` request per query, within Flagger's 5 second timeout."""

    def __init__(self, client: httpx.Client | None = None, timeout: float = 5.0) -> None:
        self._http = ProviderHTTP(client, timeout)

    def query(self, provider: MetricTemplateProvider, query: str,
              credentials: Mapping[str, bytes] | None = None) -> float | None:
        if not provider.address:
            raise MetricQueryError("the graphite provider has no address")
        url = render_url(provider.address)
        headers = template_headers(provider)
        headers.update(basic_auth(credentials))
        response = self._http.get(provider, url, render_params(query), headers)
        try:
            body = response.json()
        except ValueError as exc:
            raise MetricQueryError(
                f"graphite answered with no JSON: {response.text[:200]}") from exc
        return last_datapoint(body)


def last_datapoint(body: Any) -> float | None:
    """The last non-null value over every series' datapoints, in the order given."""
    if not isinstance(body, list):
        raise MetricQueryError(f"graphite answered {type(body).__name__}, not a list of "
                               "series")
    value: float | None = None
    for series in body:
        points = series.get("datapoints") if isinstance(series, dict) else None
        if not isinstance(points, list):
            raise MetricQueryError("graphite answered a series without datapoints")
        for point in points:
            found = _point_value(point)
            if found is not None:
                value = found
    return value


def _point_value(point: Any) -> float | None:
    """A datapoint's value: ``[value, timestamp]``, the value a number, a numeric string
    or null (Graphite's JSON for a missing point). NaN and infinities count as null: a
    check cannot compare them with a threshold."""
    if not isinstance(point, list) or len(point) != 2:
        raise MetricQueryError(f"graphite datapoint {point!r} is not [value, timestamp]")
    raw = point[0]
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise MetricQueryError(f"graphite datapoint value {raw!r} is not a number")
    try:
        value = float(raw)
    except ValueError:
        raise MetricQueryError(f"graphite datapoint value {raw!r} is not a number") from None
    return None if math.isnan(value) or math.isinf(value) else value

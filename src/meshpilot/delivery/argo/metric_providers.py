"""Argo's ``prometheus`` and ``web`` metric providers: one measurement's value.

- **prometheus** (``metricproviders/prometheus``): an instant query at ``address``; the
  result a condition sees is the list of a vector's sample values (so
  ``result[0] >= 0.95``), a scalar's value, or a matrix's values flattened; the
  measurement's ``value`` reads as Argo writes it (``[0.97]``). A query error or an
  unreachable server is an Error measurement.
- **web** (``metricproviders/webmetric``): an HTTP request (``method``, ``headers``,
  ``body``/``jsonBody``, ``timeoutSeconds``, default 10 s); a non-2xx answer is an Error;
  a JSON answer is narrowed by ``jsonPath`` (the whole document without one), any other
  answer is the text itself.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any, Protocol

import httpx

from meshpilot.api import argo_json_path
from meshpilot.api.argo_analysis import (
    DEFAULT_PROMETHEUS_TIMEOUT_SECONDS,
    DEFAULT_WEB_TIMEOUT_SECONDS,
    Metric,
    PrometheusMetric,
    WebMetric,
)


class MeasureError(Exception):
    """The provider could not produce a value: an Error measurement with this message."""


class Measurer(Protocol):
    def measure(self, metric: Metric) -> tuple[str, Any]:
        """(value as the measurement shows it, result the conditions see)."""
        ...


def _go_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value) if value != int(value) else str(int(value))


def prometheus_result(body: dict[str, Any]) -> tuple[str, Any]:
    """(value, result) of an instant query's JSON answer."""
    if body.get("status") != "success":
        raise MeasureError(f"prometheus query failed: {body.get('error', body)}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        value = float(result[1])
        return _go_float(value), value
    if kind == "vector":
        values = [float(s.get("value", [0, "NaN"])[1]) for s in result or []]
    elif kind == "matrix":
        values = [float(v[1]) for s in result or [] for v in s.get("values") or []]
    else:
        raise MeasureError(f"Prometheus metric type {kind!r} not supported")
    return "[" + " ".join(_go_float(v) for v in values) + "]", values


class HttpMeasurer:
    """Measures with httpx; one client per verification mode, made on first use (runs are
    measured on several workers at once: the clients are shared, made under a lock)."""

    def __init__(self) -> None:
        self._clients: dict[bool, httpx.Client] = {}
        self._lock = threading.Lock()

    def _client(self, insecure: bool) -> httpx.Client:
        with self._lock:
            if insecure not in self._clients:
                self._clients[insecure] = httpx.Client(verify=not insecure)
            return self._clients[insecure]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def measure(self, metric: Metric) -> tuple[str, Any]:
        provider = metric.provider
        if provider.prometheus is not None:
            return self._prometheus(provider.prometheus)
        if provider.web is not None:
            return self._web(provider.web)
        raise MeasureError("the metric's provider is not run by meshpilot (validation "
                           "refuses it)")

    def _prometheus(self, prom: PrometheusMetric) -> tuple[str, Any]:
        url = prom.address.rstrip("/") + "/api/v1/query"
        headers = {h.key: h.value for h in prom.headers or []}
        timeout = prom.timeout or DEFAULT_PROMETHEUS_TIMEOUT_SECONDS
        try:
            response = self._client(bool(prom.insecure)).get(
                url, params={"query": prom.query}, headers=headers, timeout=timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MeasureError(f"prometheus at {prom.address} did not answer: "
                               f"{exc}") from exc
        return prometheus_result(body)

    def _web(self, web: WebMetric) -> tuple[str, Any]:
        headers = {h.key: h.value for h in web.headers or []}
        content: str | None = web.body
        if web.json_body is not None:
            content = json.dumps(web.json_body)
            headers.setdefault("Content-Type", "application/json")
        try:
            response = self._client(bool(web.insecure)).request(
                web.method or "GET", web.url, headers=headers, content=content,
                timeout=web.timeout_seconds or DEFAULT_WEB_TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            raise MeasureError(f"{web.url} did not answer: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise MeasureError(f"received non 2xx response code: {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            return response.text, response.text
        try:
            value = argo_json_path.find(argo_json_path.parse(web.json_path or "{$}"),
                                        document)
        except argo_json_path.JsonPathError as exc:
            raise MeasureError(f"could not find JSONPath in body: {exc}") from exc
        return json.dumps(value), value

"""Flagger's ``prometheus`` provider: a MetricTemplate query over Prometheus' HTTP API."""

from __future__ import annotations

import math
from typing import Any

import httpx

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.delivery.ports import MetricQueryError


class PrometheusProvider:
    """An instant query (``/api/v1/query``) at the template's ``provider.address``."""

    def __init__(self, client: httpx.Client | None = None, timeout: float = 5.0) -> None:
        self._client = client or httpx.Client(timeout=timeout)

    def query(self, provider: MetricTemplateProvider, query: str) -> float | None:
        if not provider.address:
            raise MetricQueryError("the prometheus provider has no address")
        headers = {k: ", ".join(v) for k, v in (provider.headers or {}).items()}
        url = provider.address.rstrip("/") + "/api/v1/query"
        try:
            response = self._client.get(url, params={"query": query}, headers=headers)
        except httpx.HTTPError as exc:
            raise MetricQueryError(
                f"prometheus at {provider.address} did not answer: {exc}"
            ) from exc
        if response.status_code != 200:
            raise MetricQueryError(
                f"prometheus answered {response.status_code}: {response.text[:200]}"
            )
        return parse_prometheus_result(response.json())


def parse_prometheus_result(body: dict[str, Any]) -> float | None:
    """The one number of an instant query result; None when empty or NaN."""
    if body.get("status") != "success":
        raise MetricQueryError(f"prometheus query failed: {body.get('error', body)}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        raw = result[1] if isinstance(result, list) and len(result) == 2 else None
    elif kind == "vector":
        if not result:
            return None
        if len(result) > 1:
            raise MetricQueryError(
                f"the query returned {len(result)} series; it must return a single "
                "number (aggregate it, e.g. with sum())"
            )
        raw = result[0].get("value", [None, None])[1]
    else:
        raise MetricQueryError(f"unsupported result type {kind!r}; return a single number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value

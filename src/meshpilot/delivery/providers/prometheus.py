"""Flagger's ``prometheus`` provider: a MetricTemplate query over Prometheus' HTTP API."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

import httpx

from meshpilot.api.flagger import MetricTemplateProvider
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers.http import ProviderHTTP, template_headers


def auth_headers(credentials: Mapping[str, bytes] | None) -> dict[str, str]:
    """The Authorization header Flagger's provider sends for a ``secretRef``'s Secret:
    a ``token`` key is a bearer token; otherwise ``username`` and ``password`` are basic
    auth, and both must be there. No Secret: no header."""
    if credentials is None:
        return {}
    if "token" in credentials:
        return {"Authorization": "Bearer " + credentials["token"].decode("utf-8").strip()}
    missing = [key for key in ("username", "password") if key not in credentials]
    if missing:
        raise MetricQueryError(
            f"the provider's secretRef Secret has neither a token nor {' and '.join(missing)} "
            "(keys: token, or username and password)")
    pair = credentials["username"] + b":" + credentials["password"]
    return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


class PrometheusProvider:
    """An instant query (``/api/v1/query``) at the template's ``provider.address``, with
    the credentials of its ``secretRef`` and, for ``insecureSkipVerify``, a client that
    does not verify the server's certificate (made only when a template asks for it)."""

    def __init__(self, client: httpx.Client | None = None, timeout: float = 5.0) -> None:
        self._http = ProviderHTTP(client, timeout)

    def query(self, provider: MetricTemplateProvider, query: str,
              credentials: Mapping[str, bytes] | None = None) -> float | None:
        if not provider.address:
            raise MetricQueryError("the prometheus provider has no address")
        headers = template_headers(provider)
        headers.update(auth_headers(credentials))
        url = provider.address.rstrip("/") + "/api/v1/query"
        response = self._http.get(provider, url, {"query": query}, headers)
        try:
            body = response.json()
        except ValueError as exc:
            raise MetricQueryError(
                f"prometheus answered with no JSON: {response.text[:200]}") from exc
        return parse_prometheus_result(body)


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

"""API routes for telemetry: embedded queries (``meshpilot top``, the rollout controller).

``GET /apis/meshpilot.io/v1/telemetry/query`` answers, for the requests matching the
given labels over ``window``, grouped ``by`` some labels: request rate (req/s), success
rate (% of non-5xx), latency quantiles (ms) and the number of requests the answer rests
on. Parameters: ``reporter`` (default ``destination``), ``namespace``, ``workload`` (a
regex, as Flagger's ``destination_workload=~``), ``version``, ``service`` (FQDN or
name), repeatable ``match`` (``label=value``, ``!=``, ``=~``, ``!~``), ``by``
(comma-separated labels), ``window`` (``30s``, ``1m``; default 60 s), ``quantiles``
(default ``0.5,0.9,0.99``).

``GET /apis/meshpilot.io/v1/telemetry/cost``: what reading the proxies costs.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshpilot.api.base import parse_duration
from meshpilot.server.controlplane import MeshControlPlane
from meshpilot.telemetry import Matcher


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "status": "Failure", "code": code,
                         "message": message}, status_code=code)


def matchers_from(params: Any) -> list[Matcher]:
    out = [Matcher("reporter", "=", params.get("reporter") or "destination")]
    if params.get("reporter") == "any":
        out = []
    if params.get("namespace"):
        out.append(Matcher("destination_workload_namespace", "=", params["namespace"]))
    if params.get("workload"):
        out.append(Matcher("destination_workload", "=~", params["workload"]))
    if params.get("version"):
        out.append(Matcher("destination_version", "=", params["version"]))
    if params.get("service"):
        service = params["service"]
        label = "destination_service" if "." in service else "destination_service_name"
        out.append(Matcher(label, "=", service))
    out += [Matcher.parse(m) for m in params.getlist("match")]
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


class TelemetryAPI:
    def __init__(self, mesh: MeshControlPlane) -> None:
        self.mesh = mesh

    async def query(self, request: Request) -> Response:
        telemetry = self.mesh.telemetry
        if telemetry is None:
            return _error(503, "telemetry is not running")
        params = request.query_params
        try:
            matchers = matchers_from(params)
            window = parse_duration(params.get("window") or "60s")
            by = [b.strip() for b in (params.get("by") or "").split(",") if b.strip()]
            quantiles = [float(q) for q in (params.get("quantiles") or "0.5,0.9,0.99")
                         .split(",") if q.strip()]
        except ValueError as exc:
            return _error(400, str(exc))
        if window <= 0:
            return _error(400, "window must be positive, e.g. 30s or 1m")
        rows = await asyncio.to_thread(telemetry.query.summary, matchers, by, window, quantiles)
        return JSONResponse({
            "window": window, "by": by,
            "matchers": [f"{m.name}{m.op}{m.value!r}" for m in matchers],
            "samples": telemetry.query.samples_in(window),
            "interval": telemetry.interval,
            "time": telemetry.history.latest_time(),
            "rows": [_clean(r) for r in rows],
        })

    async def cost(self, request: Request) -> Response:
        telemetry = self.mesh.telemetry
        if telemetry is None:
            return _error(503, "telemetry is not running")
        cost = telemetry.scraper.cost()
        return JSONResponse({**cost.as_dict(), "perProxyCpuMs": cost.per_proxy_cpu_ms,
                             "series": len(telemetry.history)})

    def routes(self) -> list[Route]:
        return [
            Route("/apis/meshpilot.io/v1/telemetry/query", self.query),
            Route("/apis/meshpilot.io/v1/telemetry/cost", self.cost),
        ]

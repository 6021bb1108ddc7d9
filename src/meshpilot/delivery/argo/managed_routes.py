"""The routes a Rollout adds to the user's VirtualService for ``setHeaderRoute`` and
``setMirrorRoute`` steps, as Argo's ``rollout/trafficrouting/istio/istio.go`` does.

- A route in effect is the last step of its name so far; a step without ``match``
  removes it. All are removed when the Rollout is promoted or aborted
  (``RemoveManagedRoutes``).
- A header route sends requests matching every header to the canary (weight 100): the
  canary subset of the DestinationRule's host (subset-level) or ``canaryService``.
- A mirror route serves its matching requests as the weighted route does (a copy of its
  destinations and weights) and mirrors ``percentage`` (default 100) of them to the
  canary.
- The managed routes go first, in ``managedRoutes`` order (Argo's ``orderRoutes``);
  the user's routes follow, unchanged and in their order.
"""

from __future__ import annotations

import copy
from typing import Any

from meshpilot.api.argo import (
    CanaryStep,
    IstioVirtualService,
    Rollout,
    SetHeaderRoute,
    SetMirrorRoute,
    StringMatch,
)


def in_effect(rollout: Rollout, upto: int) -> dict[str, CanaryStep]:
    """name -> the step that set it, for the steps before index ``upto``."""
    out: dict[str, CanaryStep] = {}
    for step in rollout.steps[:upto]:
        route = step.set_header_route or step.set_mirror_route
        if route is None:
            continue
        if route.match:
            out[route.name] = step
        else:
            out.pop(route.name, None)
    return out


def _match(m: StringMatch) -> dict[str, str]:
    return m.model_dump(exclude_none=True)


def _canary_destination(rollout: Rollout, dr_host: str | None,
                        weighted: list[dict[str, Any]]) -> dict[str, Any]:
    rule = rollout.istio.destination_rule if rollout.istio else None
    canary = rollout.spec.strategy.canary
    host = dr_host if rule is not None and dr_host else (
        canary.canary_service if canary else None) or ""
    out: dict[str, Any] = {"host": host}
    port = next(((d.get("destination") or {}).get("port") for d in weighted
                 if (d.get("destination") or {}).get("port")), None)
    if port:
        out["port"] = copy.deepcopy(port)
    if rule is not None:
        out["subset"] = rule.canary_subset_name
    return out


def _header_route(route: SetHeaderRoute, destination: dict[str, Any]) -> dict[str, Any]:
    return {"name": route.name,
            "match": [{"headers": {m.header_name: _match(m.header_value)}}
                      for m in route.match or []],
            "route": [{"destination": destination, "weight": 100}]}


def _mirror_route(route: SetMirrorRoute, destination: dict[str, Any],
                  weighted: list[dict[str, Any]]) -> dict[str, Any]:
    matches = []
    for m in route.match or []:
        match: dict[str, Any] = {}
        if m.method is not None:
            match["method"] = _match(m.method)
        if m.path is not None:
            match["uri"] = _match(m.path)
        if m.headers:
            match["headers"] = {k: _match(v) for k, v in m.headers.items()}
        matches.append(match)
    percent = route.percentage if route.percentage is not None else 100
    return {"name": route.name, "match": matches, "route": copy.deepcopy(weighted),
            "mirror": destination, "mirrorPercentage": {"value": float(percent)}}


def _names(rollout: Rollout) -> list[str]:
    canary = rollout.spec.strategy.canary
    routing = canary.traffic_routing if canary else None
    return [r.name for r in (routing.managed_routes or [])] if routing else []


def _weighted(spec: IstioVirtualService, users: list[Any]) -> list[dict[str, Any]]:
    """The destinations of the route setWeight edits (the first named, or the only one)."""
    if spec.routes:
        found = [r for r in users if isinstance(r, dict) and r.get("name") == spec.routes[0]]
    else:
        found = users if len(users) == 1 else []
    return list((found[0] if found else {}).get("route") or [])


def _route_of(step: CanaryStep, destination: dict[str, Any],
              weighted: list[dict[str, Any]]) -> dict[str, Any]:
    if step.set_header_route is not None:
        return _header_route(step.set_header_route, dict(destination))
    assert step.set_mirror_route is not None
    return _mirror_route(step.set_mirror_route, dict(destination), weighted)


def with_managed_routes(rollout: Rollout, spec: IstioVirtualService, body: dict[str, Any],
                        routes: dict[str, CanaryStep], dr_host: str | None) -> dict[str, Any]:
    """``body`` (already weighted) with exactly the managed ``routes``, first."""
    names = _names(rollout)
    out = copy.deepcopy(body)
    http = (out.get("spec") or {}).get("http") or []
    users = [r for r in http if not (isinstance(r, dict) and r.get("name") in names)]
    weighted = _weighted(spec, users)
    destination = _canary_destination(rollout, dr_host, weighted)
    managed = [_route_of(routes[name], destination, weighted) for name in names
               if name in routes]
    if managed or len(users) != len(http):
        out.setdefault("spec", {})["http"] = [*managed, *users]
    return out

"""setHeaderRoute and setMirrorRoute steps with managedRoutes, stepped tick by tick.

Following ``rollout/trafficrouting/istio/istio.go`` (``SetHeaderRoute``,
``SetMirrorRoute``, ``orderRoutes``, ``RemoveManagedRoutes``) and Argo's
``examples/istio/istio-mirror.yaml`` / the header-routing example of
``docs/features/traffic-management/istio.md``; the objects are ``argo_harness``'s.
"""

from __future__ import annotations

from typing import Any

from tests.unit.argo_harness import ADMIN_ROUTE, DR, NAME, VS, ArgoHarness

ROUTING = {"managedRoutes": [{"name": "set-header"}, {"name": "mirror-route"}],
           "istio": {"virtualService": {"name": VS, "routes": ["primary"]},
                     "destinationRule": {"name": DR, "canarySubsetName": "canary",
                                         "stableSubsetName": "stable"}}}
HEADER = {"setHeaderRoute": {"name": "set-header", "match": [
    {"headerName": "x-canary", "headerValue": {"exact": "yes"}}]}}
MIRROR = {"setMirrorRoute": {"name": "mirror-route", "percentage": 50, "match": [
    {"method": {"exact": "GET"}, "path": {"prefix": "/"}}]}}


def routes(h: ArgoHarness) -> list[dict[str, Any]]:
    vs = h.cluster.get("VirtualService", VS)
    assert vs is not None
    return vs["spec"]["http"]  # type: ignore[no-any-return]


def started(steps: list[dict[str, Any]]) -> ArgoHarness:
    h = ArgoHarness(steps=steps, trafficRouting=ROUTING)
    h.tick(2)
    h.release("v2")
    return h


def test_header_and_mirror_routes_go_first_in_managed_order_then_are_removed() -> None:
    h = started([{"setWeight": 20}, MIRROR, HEADER, {"pause": {}}])
    h.tick(6)
    assert h.status["phase"] == "Paused"
    http = routes(h)
    assert [r.get("name") for r in http] == ["set-header", "mirror-route", "admin", "primary"]
    header, mirror = http[0], http[1]
    assert header["match"] == [{"headers": {"x-canary": {"exact": "yes"}}}]
    assert header["route"] == [{"destination": {"host": NAME, "subset": "canary"},
                                "weight": 100}]
    assert mirror["match"] == [{"method": {"exact": "GET"}, "uri": {"prefix": "/"}}]
    assert mirror["mirror"] == {"host": NAME, "subset": "canary"}
    assert mirror["mirrorPercentage"] == {"value": 50.0}
    # the mirror route serves as the weighted route does at its step
    assert mirror["route"] == [
        {"destination": {"host": NAME, "subset": "stable"}, "weight": 80},
        {"destination": {"host": NAME, "subset": "canary"}, "weight": 20}]
    assert http[2] == ADMIN_ROUTE
    # promoted: RemoveManagedRoutes
    assert h.command("promote") == ""
    h.tick(4)
    assert h.status["phase"] == "Healthy"
    assert [r.get("name") for r in routes(h)] == ["admin", "primary"]


def test_a_route_step_without_match_removes_it() -> None:
    h = started([HEADER, {"pause": {}}, {"setHeaderRoute": {"name": "set-header"}},
                 {"pause": {}}])
    h.tick(3)
    assert routes(h)[0]["name"] == "set-header"
    assert h.command("promote") == ""
    h.tick(2)
    assert [r.get("name") for r in routes(h)] == ["admin", "primary"]


def test_abort_removes_the_managed_routes() -> None:
    h = started([HEADER, {"pause": {}}])
    h.tick(3)
    assert routes(h)[0]["name"] == "set-header"
    assert h.command("abort") == ""
    assert [r.get("name") for r in routes(h)] == ["admin", "primary"]

"""Delegate VirtualServices, after Istio's VirtualService reference ("delegate") and its
merge rules: a root rule hands its matches to another VirtualService's rules, which are
narrowed by the root's matches and inherit what they leave unset; a child change reaches
the proxies through the shared builds like any VirtualService change."""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from tests.unit.test_xds_shared import node, objects, same_as_reference
from tests.unit.test_xds_translate import RATINGS, REVIEWS, routes_for, vs

from meshpilot.api.identity import ObjectKey
from meshpilot.xds import ROUTE, ProxyConfigBuilder

ROOT = vs("""
metadata: {name: reviews-root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: v2-api
    match: [{uri: {prefix: /api}}]
    delegate: {name: reviews-api, namespace: team}
    timeout: 3s
  - route: [{destination: {host: reviews}}]
""")


def child(http: str, name: str = "reviews-api") -> Any:
    return vs(f"metadata: {{name: {name}, namespace: team}}\nspec:\n  http:\n{http}")


def clusters(route: rc.Route) -> list[str]:
    action = route.route
    return [action.cluster] if action.cluster else [c.name for c in
                                                    action.weighted_clusters.clusters]


def test_the_delegate_rules_take_the_root_rule_place_narrowed_by_its_match() -> None:
    team = child("""\
  - name: ratings
    match: [{uri: {prefix: /api/ratings}}]
    route: [{destination: {host: ratings.default.svc.cluster.local}}]
  - match: [{uri: {exact: /api/v1}, headers: {x-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
    timeout: 1s
  - route: [{destination: {host: reviews.default.svc.cluster.local}}]
""")
    routes = routes_for(ROOT, team)
    assert [r.match.WhichOneof("path_specifier") for r in routes] == [
        "prefix", "path", "prefix", "prefix"]
    ratings, exact, rest, catch_all = routes
    assert ratings.name == "v2-api-ratings" and ratings.match.prefix == "/api/ratings"
    assert clusters(ratings) == [f"outbound|8080||{RATINGS}"]
    assert ratings.route.timeout.seconds == 3  # inherited from the root rule
    assert exact.match.path == "/api/v1" and exact.route.timeout.seconds == 1  # its own
    assert [h.name for h in exact.match.headers] == ["x-user"]
    assert rest.match.prefix == "/api"  # no match of its own: the root's
    assert clusters(catch_all) == [f"outbound|9080||{REVIEWS}"]


def test_a_delegate_rule_outside_the_root_match_is_dropped_whole() -> None:
    team = child("""\
  - match: [{uri: {prefix: /admin}}]
    route: [{destination: {host: ratings.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /api/x}}, {uri: {regex: "/api/.*"}}]
    route: [{destination: {host: ratings.default.svc.cluster.local}}]
  - match: [{uri: {prefix: /api/ok}}]
    route: [{destination: {host: ratings.default.svc.cluster.local}}]
""")
    prefixes = [r.match.prefix for r in routes_for(ROOT, team)]
    assert prefixes == ["/api/ok", "/"]


def test_a_missing_delegate_or_one_with_hosts_drops_the_root_rule() -> None:
    with_hosts = vs("""
metadata: {name: reviews-api, namespace: team}
spec:
  hosts: [other.example.com]
  http: [{route: [{destination: {host: ratings.default.svc.cluster.local}}]}]
""")
    for extra in ((), (with_hosts,)):
        assert [r.match.prefix for r in routes_for(ROOT, *extra)] == ["/"]


def test_short_hosts_resolve_in_the_delegate_namespace() -> None:
    team = child("  - route: [{destination: {host: ratings}}]")
    first = routes_for(ROOT, team)[0]
    assert clusters(first)[0].endswith("|ratings.team.svc.cluster.local")


NET = "networking.istio.io"


def _vs(name: str, namespace: str, spec: dict[str, Any]) -> tuple[ObjectKey, dict[str, Any]]:
    return (ObjectKey(NET, "VirtualService", namespace, name), {
        "apiVersion": f"{NET}/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec})


def _mesh(weight_v2: int) -> Any:
    # "a-root" sorts before svc000's own VirtualService, so it is the one for the host
    root = _vs("a-root", "default", {"hosts": ["svc000"], "http": [
        {"match": [{"uri": {"prefix": "/"}}],
         "delegate": {"name": "svc000-child", "namespace": "default"}}]})
    leaf = _vs("svc000-child", "default", {"http": [{"route": [
        {"destination": {"host": "svc000", "subset": "v1"}, "weight": 100 - weight_v2},
        {"destination": {"host": "svc000", "subset": "v2"}, "weight": weight_v2}]}]})
    return objects(3, {}, extra=[root, leaf])


def test_a_delegate_change_rebuilds_the_root_routes_for_every_proxy() -> None:
    builder = ProxyConfigBuilder()
    before = _mesh(10)
    old = builder.config_for(before, node(1))
    after = _mesh(40)
    new = builder.config_for(after, node(1))
    name = "outbound|svc000.default.svc.cluster.local"
    assert new[ROUTE][name].version != old[ROUTE][name].version
    weights = [c.weight.value for c in new[ROUTE][name].message.virtual_hosts[0]
               .routes[0].route.weighted_clusters.clusters]
    assert weights == [60, 40]
    same_as_reference(builder, after, node(1))
    same_as_reference(builder, after, node(2))

"""EnvoyFilter patches on the generated config, after Istio's EnvoyFilter reference
(``applyTo``, ``match``, ``patch.operation``, priority and order) and its task "Enabling
Rate Limits using Envoy" (local rate limit: an HTTP_FILTER inserted before the router
of the inbound connection manager, and per-route config by an HTTP_ROUTE MERGE of
``typed_per_filter_config``). The shared per-class build agrees with the reference build,
and a proxy no filter selects gets the very same sets as before."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from tests.unit.test_xds_shared import node, objects, same_as_reference

from meshpilot.api.identity import ObjectKey
from meshpilot.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, ProxyConfigBuilder
from meshpilot.xds.translate import build_resources

NET = "networking.istio.io"
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
SVC = "svc000.default.svc.cluster.local"


def envoy_filter(name: str, patches: list[dict[str, Any]], namespace: str = "default",
                 selector: dict[str, str] | None = None, **spec: Any) -> Any:
    body: dict[str, Any] = {"configPatches": patches, **spec}
    if selector is not None:
        body["workloadSelector"] = {"labels": selector}
    return (ObjectKey(NET, "EnvoyFilter", namespace, name),
            {"apiVersion": f"{NET}/v1alpha3", "kind": "EnvoyFilter",
             "metadata": {"name": name, "namespace": namespace}, "spec": body})


RATE_LIMIT = {
    "applyTo": "HTTP_FILTER",
    "match": {"context": "SIDECAR_INBOUND", "listener": {"filterChain": {"filter": {
        "name": "envoy.filters.network.http_connection_manager"}}}},
    "patch": {"operation": "INSERT_BEFORE", "value": {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                         "type_url": LRL, "value": {"stat_prefix": "http_local_rate_limiter"}}}},
}
PER_ROUTE = {
    "applyTo": "HTTP_ROUTE",
    "match": {"context": "SIDECAR_INBOUND", "routeConfiguration": {
        "vhost": {"name": "inbound|http|9080", "route": {"action": "ANY"}}}},
    "patch": {"operation": "MERGE", "value": {"typed_per_filter_config": {
        "envoy.filters.http.local_ratelimit": {
            "@type": LRL, "stat_prefix": "http_local_rate_limiter",
            "token_bucket": {"max_tokens": 4, "tokens_per_fill": 4, "fill_interval": "60s"}}}}},
}
CONNECT_TIMEOUT = {
    "applyTo": "CLUSTER",
    "match": {"context": "SIDECAR_OUTBOUND", "cluster": {"service": SVC, "subset": "v1"}},
    "patch": {"operation": "MERGE", "value": {"connect_timeout": "0.25s"}},
}


def inbound_routes(config: Any) -> list[rc.Route]:
    """The routes of an inbound route config: the actions of its vhosts' matchers."""
    found: list[rc.Route] = []

    def walk(matcher: Any) -> None:
        tree = matcher.matcher_tree
        for on_match in [*tree.exact_match_map.map.values(), matcher.on_no_match]:
            if on_match.HasField("matcher"):
                walk(on_match.matcher)
            elif on_match.HasField("action"):
                route = rc.Route()
                assert on_match.action.typed_config.Unpack(route)
                found.append(route)

    for vhost in config.virtual_hosts:
        found.extend(vhost.routes)
        walk(vhost.matcher)
    return found


def http_filters(resources: Any, listener: str) -> list[str]:
    lsn = resources[LISTENER][listener]
    found = []
    for chain in lsn.filter_chains:
        for f in chain.filters:
            if f.name == "envoy.filters.network.http_connection_manager":
                manager = hcm.HttpConnectionManager()
                f.typed_config.Unpack(manager)
                found += [h.name for h in manager.http_filters]
    return found


def test_rate_limit_task_inserts_the_filter_and_per_route_config() -> None:
    snap = objects(2, {}, extra=[envoy_filter("rl", [RATE_LIMIT, PER_ROUTE],
                                              selector={"app": "p1"})])
    got = build_resources(snap, node(1))
    inbound = http_filters(got, "inbound_9080")
    assert inbound[0] == "envoy.filters.http.local_ratelimit"  # no subFilter: first
    assert inbound[-1] == "envoy.filters.http.router"
    assert "envoy.filters.http.local_ratelimit" not in http_filters(got, "outbound_http_proxy")
    routes = inbound_routes(got[ROUTE]["inbound|9080||"])
    assert len(routes) >= 2  # one per counted source (see telemetry)
    for route in routes:
        assert route.typed_per_filter_config[
            "envoy.filters.http.local_ratelimit"].type_url == LRL
    # another workload: not selected, its config as without the filter
    other = build_resources(snap, node(2))
    assert "envoy.filters.http.local_ratelimit" not in http_filters(other, "inbound_9080")


def test_insert_before_a_sub_filter_and_after_it() -> None:
    before = {**RATE_LIMIT, "match": {"listener": {"filterChain": {"filter": {
        "name": "envoy.filters.network.http_connection_manager",
        "subFilter": {"name": "envoy.filters.http.router"}}}}}}
    after = {**before, "patch": {"operation": "INSERT_AFTER", "value": {
        "name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3"
                                  ".Cors"}}},
             "match": {"listener": {"filterChain": {"filter": {
                 "name": "envoy.filters.network.http_connection_manager",
                 "subFilter": {"name": "envoy.filters.http.local_ratelimit"}}}}}}
    snap = objects(1, {}, extra=[envoy_filter("rl", [before, after])])
    chain = http_filters(build_resources(snap, node(1)), "inbound_9080")
    at = chain.index("envoy.filters.http.local_ratelimit")
    assert chain[at + 1] == "envoy.filters.http.cors" and chain[at + 2] == \
        "envoy.filters.http.router"


def test_cluster_merge_by_service_and_subset() -> None:
    snap = objects(2, {}, extra=[envoy_filter("ct", [CONNECT_TIMEOUT])])
    got = build_resources(snap, node(1))
    assert got[CLUSTER][f"outbound|8080|v1|{SVC}"].connect_timeout.ToNanoseconds() == 250_000_000
    assert got[CLUSTER][f"outbound|8080|v2|{SVC}"].connect_timeout.ToNanoseconds() != 250_000_000
    assert got[CLUSTER]["outbound|8080|v1|svc001.default.svc.cluster.local"] \
        .connect_timeout.ToNanoseconds() != 250_000_000


def test_priority_then_order_decides_which_merge_wins() -> None:
    slow = {**CONNECT_TIMEOUT, "patch": {"operation": "MERGE",
                                         "value": {"connect_timeout": "3s"}}}
    # "a-first" sorts first by name, but priority 1 applies it after "b-second"
    snap = objects(1, {}, extra=[envoy_filter("a-first", [slow], priority=1),
                                 envoy_filter("b-second", [CONNECT_TIMEOUT])])
    got = build_resources(snap, node(1))
    assert got[CLUSTER][f"outbound|8080|v1|{SVC}"].connect_timeout.seconds == 3


def test_remove_add_and_replace_clusters() -> None:
    removed = {"applyTo": "CLUSTER", "match": {"cluster": {"service": SVC, "subset": "v2"}},
               "patch": {"operation": "REMOVE"}}
    added = {"applyTo": "CLUSTER", "match": {"context": "SIDECAR_OUTBOUND"},
             "patch": {"operation": "ADD", "value": {
                 "name": "extra", "type": "STATIC", "connect_timeout": "1s",
                 "load_assignment": {"cluster_name": "extra"}}}}
    snap = objects(1, {}, extra=[envoy_filter("f", [removed, added])])
    got = build_resources(snap, node(1))
    assert f"outbound|8080|v2|{SVC}" not in got[CLUSTER]
    assert f"outbound|8080|v2|{SVC}" not in got[ENDPOINT]
    assert got[CLUSTER]["extra"].type == cluster_pb2.Cluster.STATIC


def test_namespaces_and_selectors_decide_who_is_patched() -> None:
    root = envoy_filter("root", [CONNECT_TIMEOUT], namespace="istio-system",
                        selector={"app": "p1"})
    elsewhere = envoy_filter("prod", [CONNECT_TIMEOUT], namespace="prod")
    snap = objects(1, {}, extra=[root, elsewhere])
    name = f"outbound|8080|v1|{SVC}"
    assert build_resources(snap, node(1))[CLUSTER][name].connect_timeout.nanos == 250_000_000
    assert build_resources(snap, node(2))[CLUSTER][name].connect_timeout.nanos != 250_000_000


def test_route_config_vhost_and_route_matches_use_istio_names() -> None:
    vhost_merge = {"applyTo": "VIRTUAL_HOST", "match": {"context": "SIDECAR_OUTBOUND",
                   "routeConfiguration": {"name": "8080", "vhost": {"name": f"{SVC}:8080"}}},
                   "patch": {"operation": "MERGE", "value": {
                       "response_headers_to_add": [{"header": {"key": "x-vh", "value": "1"}}]}}}
    snap = objects(2, {}, extra=[envoy_filter("vh", [vhost_merge])])
    got = build_resources(snap, node(1))
    mine = got[ROUTE][f"outbound|{SVC}"].virtual_hosts[0]
    assert [h.header.key for h in mine.response_headers_to_add][-1] == "x-vh"
    theirs = got[ROUTE]["outbound|svc001.default.svc.cluster.local"].virtual_hosts[0]
    assert "x-vh" not in [h.header.key for h in theirs.response_headers_to_add]


def test_shared_builds_agree_and_unselected_proxies_keep_their_sets() -> None:
    plain = objects(3, {})
    builder = ProxyConfigBuilder()
    before = builder.config_for(plain, node(2))
    snap = objects(3, {}, extra=[envoy_filter("rl", [RATE_LIMIT, PER_ROUTE, CONNECT_TIMEOUT],
                                              selector={"app": "p1"})])
    same_as_reference(builder, snap, node(1))
    same_as_reference(builder, snap, node(2))
    after = builder.config_for(snap, node(2))
    assert {t: dict(s) for t, s in after.items()} == {t: dict(s) for t, s in before.items()}
    patched = builder.config_for(snap, node(1))
    assert builder.builds["patched"] == 1
    # what no patch changed is the very same prepared resource as the unpatched build's
    unpatched = builder.config_for(plain, node(1))
    name = "outbound|8080|v1|svc001.default.svc.cluster.local"
    assert patched[CLUSTER][name] is unpatched[CLUSTER][name]
    assert patched[CLUSTER][f"outbound|8080|v1|{SVC}"].version != \
        unpatched[CLUSTER][f"outbound|8080|v1|{SVC}"].version

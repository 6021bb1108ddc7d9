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
from meshpilot.mesh.model import ProxyNode
from meshpilot.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, ProxyConfigBuilder
from meshpilot.xds.translate import build_resources

NET = "networking.istio.io"
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
SVC = "svc000.default.svc.cluster.local"
HCM = "envoy.filters.network.http_connection_manager"


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


GATEWAY = ProxyNode(id="gateway~127.0.0.1~gw.istio-system", kind="gateway",
                    namespace="istio-system", ip="127.0.0.1",
                    labels={"istio": "ingressgateway"}, gateway_ports={80: 18080})
PUBLIC = (ObjectKey(NET, "Gateway", "istio-system", "public"), {
    "apiVersion": f"{NET}/v1", "kind": "Gateway",
    "metadata": {"name": "public", "namespace": "istio-system"},
    "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}})


def test_gateway_context_reaches_the_gateway_only() -> None:
    """context GATEWAY: the ingress gateway's listener and route config (``http.80``),
    matched by the Gateway server port; sidecars are left alone."""
    idle = {"applyTo": "NETWORK_FILTER", "match": {"context": "GATEWAY", "listener": {
        "portNumber": 80, "filterChain": {"filter": {"name": HCM}}}},
        "patch": {"operation": "MERGE", "value": {"name": HCM, "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                     "http_connection_manager.v3.HttpConnectionManager",
            "server_name": "edge"}}}}
    vhost = {"applyTo": "ROUTE_CONFIGURATION", "match": {"context": "GATEWAY",
             "routeConfiguration": {"portNumber": 80}},
             "patch": {"operation": "MERGE", "value": {"max_direct_response_body_size_bytes":
                                                       2048}}}
    snap = objects(1, {}, extra=[PUBLIC, envoy_filter("edge", [idle, vhost],
                                                      namespace="istio-system")])
    got = build_resources(snap, GATEWAY)
    manager = hcm.HttpConnectionManager()
    got[LISTENER]["gateway_80"].filter_chains[0].filters[0].typed_config.Unpack(manager)
    assert manager.server_name == "edge"
    assert manager.http_filters[-1].name == "envoy.filters.http.router"  # merged, not replaced
    assert got[ROUTE]["http.80"].max_direct_response_body_size_bytes.value == 2048
    sidecar = build_resources(snap, node(1))
    assert all(c.max_direct_response_body_size_bytes.value != 2048
               for c in sidecar[ROUTE].values())


def test_replace_and_remove_of_named_http_filters() -> None:
    """REPLACE and REMOVE act on the HTTP filter subFilter.name names, in the context
    matched only."""
    where = {"listener": {"filterChain": {"filter": {
        "name": HCM, "subFilter": {"name": "envoy.filters.http.cors"}}}}}
    removed = {"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_OUTBOUND", **where},
               "patch": {"operation": "REMOVE"}}
    replaced = {"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_OUTBOUND", "listener": {
        "filterChain": {"filter": {"name": HCM, "subFilter": {
            "name": "envoy.filters.http.fault"}}}}},
        "patch": {"operation": "REPLACE", "value": {
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {"@type": LRL, "stat_prefix": "outbound"}}}}
    snap = objects(1, {}, extra=[envoy_filter("f", [removed, replaced])])
    got = build_resources(snap, node(1))
    plain = build_resources(objects(1, {}), node(1))
    before = http_filters(plain, "outbound_http_proxy")
    # the outbound traffic policy's filter comes first, then the routing ones
    assert before[:3] == ["mp.outbound_traffic_policy", "envoy.filters.http.fault",
                          "envoy.filters.http.cors"]
    assert http_filters(got, "outbound_http_proxy") == [
        before[0], "envoy.filters.http.local_ratelimit", *before[3:]]
    assert http_filters(got, "inbound_9080") == http_filters(plain, "inbound_9080")


def test_listener_merge_by_name_and_filter_chain_add() -> None:
    merged = {"applyTo": "LISTENER", "match": {"listener": {"name": "inbound_9080"}},
              "patch": {"operation": "MERGE", "value": {
                  "per_connection_buffer_limit_bytes": 32768}}}
    chain = {"applyTo": "FILTER_CHAIN", "match": {"context": "SIDECAR_INBOUND"},
             "patch": {"operation": "ADD", "value": {"name": "extra", "filters": [{
                 "name": "envoy.filters.network.tcp_proxy", "typed_config": {
                     "@type": "type.googleapis.com/envoy.extensions.filters.network."
                              "tcp_proxy.v3.TcpProxy",
                     "stat_prefix": "x", "cluster": "inbound|9080||"}}]}}}
    snap = objects(1, {}, extra=[envoy_filter("f", [merged, chain])])
    got = build_resources(snap, node(1))
    inbound = got[LISTENER]["inbound_9080"]
    assert inbound.per_connection_buffer_limit_bytes.value == 32768
    assert inbound.filter_chains[-1].name == "extra"
    assert got[LISTENER]["outbound_http_proxy"].per_connection_buffer_limit_bytes.value == 0
    assert "extra" not in [c.name for c in got[LISTENER]["outbound_http_proxy"].filter_chains]


def test_shared_builds_agree_on_removed_and_added_clusters() -> None:
    """The builder parses only the clusters a match names; what it removes (with its
    endpoint assignment) and adds is what the reference build removes and adds."""
    removed = {"applyTo": "CLUSTER", "match": {"cluster": {"service": SVC, "subset": "v2"}},
               "patch": {"operation": "REMOVE"}}
    added = {"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": {
        "name": "extra", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "extra"}}}}
    snap = objects(3, {}, extra=[envoy_filter("f", [removed, added, CONNECT_TIMEOUT])])
    builder = ProxyConfigBuilder()
    same_as_reference(builder, snap, node(1))
    got = builder.config_for(snap, node(1))
    assert "extra" in got[CLUSTER] and f"outbound|8080|v2|{SVC}" not in got[ENDPOINT]


def test_a_route_config_is_patched_once_for_every_proxy_that_has_it() -> None:
    """The inbound route config is one resource for a class of sidecars: patched once per
    snapshot, every proxy gets the very same patched resource, as the reference build."""
    snap = objects(3, {}, extra=[envoy_filter("rl", [RATE_LIMIT, PER_ROUTE])])
    builder = ProxyConfigBuilder()
    a, b = builder.config_for(snap, node(1)), builder.config_for(snap, node(2))
    assert a[ROUTE]["inbound|9080||"] is b[ROUTE]["inbound|9080||"]
    same_as_reference(builder, snap, node(3))
    plain = ProxyConfigBuilder().config_for(objects(3, {}), node(1))
    assert a[ROUTE]["inbound|9080||"].version != plain[ROUTE]["inbound|9080||"].version


def test_filter_chain_match_fields_pick_the_chain() -> None:
    """``transportProtocol`` picks the inbound mTLS chain (``tls``) apart from the
    plaintext one (``raw_buffer``) of a PERMISSIVE sidecar, as Istio's match does."""
    only_mtls = {**RATE_LIMIT, "match": {"context": "SIDECAR_INBOUND", "listener": {
        "filterChain": {"transportProtocol": "tls", "filter": {"name": HCM}}}}}
    snap = objects(1, {}, extra=[envoy_filter("rl", [only_mtls])])
    chains = build_resources(snap, node(1))[LISTENER]["inbound_9080"].filter_chains
    by_protocol = {}
    for chain in chains:
        manager = hcm.HttpConnectionManager()
        [f] = [f for f in chain.filters if f.name == HCM]
        f.typed_config.Unpack(manager)
        by_protocol[chain.filter_chain_match.transport_protocol] = [
            h.name for h in manager.http_filters]
    assert set(by_protocol) == {"tls", "raw_buffer"}
    assert by_protocol["tls"][0] == "envoy.filters.http.local_ratelimit"
    assert "envoy.filters.http.local_ratelimit" not in by_protocol["raw_buffer"]

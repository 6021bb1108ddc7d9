"""The pure xDS translation: (snapshot, proxy) → Envoy protos, asserted field by field."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.v3 import percent_pb2

from meshpilot.api.networking import DestinationRule, Gateway, VirtualService
from meshpilot.mesh.model import (
    Endpoint,
    InboundPort,
    MeshService,
    MeshSnapshot,
    Named,
    ProxyNode,
    ServicePort,
)
from meshpilot.xds.translate import (
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SCOPED_ROUTE,
    build_resources,
    egress,
)
from meshpilot.xds.translate.policy import HTTP_OPTIONS_KEY

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
WEB = "web.default.svc.cluster.local"
OTHER = "other.prod.svc.cluster.local"
EXT = "api.example.com"


def named(model: type, text: str) -> Named[Any]:
    obj = model.model_validate(yaml.safe_load(text))
    return Named(obj.metadata.namespace, obj.metadata.name, obj)


def vs(text: str) -> Named[VirtualService]:
    return named(
        VirtualService, "apiVersion: networking.istio.io/v1\nkind: VirtualService\n" + text
    )


def dr(text: str) -> Named[DestinationRule]:
    head = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
    return named(DestinationRule, head + text)


def gw(text: str) -> Named[Gateway]:
    return named(Gateway, "apiVersion: networking.istio.io/v1\nkind: Gateway\n" + text)


def svc(host: str, *ports: int, **kw: Any) -> MeshService:
    name, _, rest = host.partition(".")
    ns = rest.split(".")[0] if host.endswith(".svc.cluster.local") else "default"
    return MeshService(host, name, ns, tuple(ServicePort(p, f"http-{p}") for p in ports), **kw)


SERVICES = {
    REVIEWS: svc(REVIEWS, 9080),
    RATINGS: svc(RATINGS, 8080, 9090),
    WEB: svc(WEB, 80, 8080),
    OTHER: svc(OTHER, 8080),
    EXT: svc(EXT, 80, origin="ServiceEntry", resolution="DNS", location="MESH_EXTERNAL"),
}
ENDPOINTS = {
    REVIEWS: (
        Endpoint(REVIEWS, 9080, "127.10.0.2", 9080, {"version": "v2"}, "reviews-v2"),
        Endpoint(REVIEWS, 9080, "127.10.0.1", 9080, {"version": "v1"}, "reviews-v1"),
        Endpoint(REVIEWS, 9080, "127.10.0.3", 9080, {"version": "v3"}, "reviews-v3", ready=False),
    ),
    RATINGS: (
        Endpoint(RATINGS, 8080, "127.10.0.4", 8080, {"version": "v1"}),
        Endpoint(RATINGS, 9090, "127.10.0.4", 9090, {"version": "v1"}),
    ),
}
REVIEWS_DR = dr("""
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 3, http2MaxRequests: 11, maxRetries: 2,
             maxRequestsPerConnection: 5, idleTimeout: 30s}
    outlierDetection:
      consecutive5xxErrors: 4
      consecutiveGatewayErrors: 0
      interval: 5s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
      minHealthPercent: 20
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}
  - name: v3
    labels: {version: v3}
""")
SIDECAR = ProxyNode(
    id="sidecar~127.10.0.9~productpage.default",
    kind="sidecar",
    namespace="default",
    ip="127.10.0.9",
    labels={"app": "productpage", "version": "v1"},
    inbound=(InboundPort(9080, 40001),),
)


def snapshot(*rules: Named[Any], **kw: Any) -> MeshSnapshot:
    return MeshSnapshot(
        version=1,
        services=kw.pop("services", SERVICES),
        endpoints=kw.pop("endpoints", ENDPOINTS),
        virtual_services=tuple(r for r in rules if isinstance(r.obj, VirtualService)),
        destination_rules=tuple(r for r in rules if isinstance(r.obj, DestinationRule)),
        gateways=tuple(r for r in rules if isinstance(r.obj, Gateway)),
    )


def vhost(res: dict, name: str, route_config: str | None = None) -> rc.VirtualHost:
    """Vhost ``name`` (``host:port``); a sidecar's is in its service's ``outbound|<host>``."""
    config = route_config or "outbound|" + name.rsplit(":", 1)[0]
    return next(v for v in res[TYPE_ROUTE][config].virtual_hosts if v.name == name)


def outbound_domains(res: dict) -> list[str]:
    """Every domain of every sidecar outbound route config."""
    return [
        d
        for name, config in res[TYPE_ROUTE].items()
        if name.startswith("outbound|")
        for v in config.virtual_hosts
        for d in v.domains
    ]


def routes_for(
    *rules: Named[Any], node: ProxyNode = SIDECAR, host: str = REVIEWS, port: int = 9080
) -> list[rc.Route]:
    return list(vhost(build_resources(snapshot(*rules), node), f"{host}:{port}").routes)


def reviews_vs(http: str) -> Named[VirtualService]:
    return vs("metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n" + http)


# --------------------------------------------------------------------------- clusters


def test_cluster_names_follow_istio_including_subsets_and_inbound():
    res = build_resources(snapshot(REVIEWS_DR), SIDECAR)
    names = set(res[TYPE_CLUSTER])
    assert {
        f"outbound|9080||{REVIEWS}",
        f"outbound|9080|v1|{REVIEWS}",
        f"outbound|9080|v2|{REVIEWS}",
        f"outbound|8080||{RATINGS}",
        f"outbound|9090||{RATINGS}",
        f"outbound|80||{EXT}",
        "inbound|9080||",
    } <= names
    eds = res[TYPE_CLUSTER][f"outbound|9080|v1|{REVIEWS}"]
    assert eds.type == cluster_pb2.Cluster.EDS
    assert eds.eds_cluster_config.service_name == f"outbound|9080|v1|{REVIEWS}"
    assert eds.eds_cluster_config.eds_config.HasField("ads")
    # every EDS cluster has its assignment, and only EDS clusters do
    eds_names = {n for n, c in res[TYPE_CLUSTER].items() if c.type == cluster_pb2.Cluster.EDS}
    assert eds_names == set(res[TYPE_ENDPOINT])


def _addresses(res: dict, name: str) -> list[str]:
    cla = res[TYPE_ENDPOINT][name]
    return [
        f"{e.endpoint.address.socket_address.address}:{e.endpoint.address.socket_address.port_value}"
        for loc in cla.endpoints
        for e in loc.lb_endpoints
    ]


def test_eds_endpoints_per_subset_only_ready_and_sorted():
    res = build_resources(snapshot(REVIEWS_DR), SIDECAR)
    assert _addresses(res, f"outbound|9080||{REVIEWS}") == ["127.10.0.1:9080", "127.10.0.2:9080"]
    assert _addresses(res, f"outbound|9080|v1|{REVIEWS}") == ["127.10.0.1:9080"]
    assert _addresses(res, f"outbound|9080|v2|{REVIEWS}") == ["127.10.0.2:9080"]
    assert _addresses(res, f"outbound|9080|v3|{REVIEWS}") == []  # not ready
    assert _addresses(res, f"outbound|9090||{RATINGS}") == ["127.10.0.4:9090"]


def test_dns_service_entry_cluster_resolves_the_host():
    """Istio maps resolution DNS to STRICT_DNS whether the entry lists endpoints or not
    (without any, the host is the one name resolved: every address it has is an
    endpoint); meshpilot once made the endpoint-less case LOGICAL_DNS."""
    res = build_resources(snapshot(), SIDECAR)
    cluster = res[TYPE_CLUSTER][f"outbound|80||{EXT}"]
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert not cluster.HasField("typed_dns_resolver_config")  # no dnsResolvers: resolv.conf
    sa = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (sa.address, sa.port_value) == (EXT, 80)
    eps = {EXT: (Endpoint(EXT, 80, "10.1.1.1", 8080), Endpoint(EXT, 80, "10.1.1.2", 8080))}
    res = build_resources(snapshot(endpoints={**ENDPOINTS, **eps}), SIDECAR)
    cluster = res[TYPE_CLUSTER][f"outbound|80||{EXT}"]
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert len(cluster.load_assignment.endpoints[0].lb_endpoints) == 2


def test_every_dns_cluster_asks_the_mesh_configs_resolvers():
    """The mesh config's ``dnsResolvers`` (which the passthrough's DNS cache asks) are
    what DNS, DNS_ROUND_ROBIN and NONE entries' clusters ask too, as Istio gives its DNS
    clusters a c-ares resolver config: one place says where the mesh's names are
    looked up."""
    import dataclasses

    from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2 as cares

    from meshpilot.api.mesh_config import DnsResolver, MeshConfig

    config = MeshConfig(dns_resolvers=(DnsResolver("127.0.0.1", 5353),
                                       DnsResolver("127.0.0.2", 53)))
    snap = dataclasses.replace(snapshot(), mesh_config=config)
    for resolution in ("DNS", "DNS_ROUND_ROBIN", "NONE"):
        service = dataclasses.replace(snap.services[EXT], resolution=resolution)
        changed = dataclasses.replace(snap, services={**snap.services, EXT: service})
        cluster = build_resources(changed, SIDECAR)[TYPE_CLUSTER][f"outbound|80||{EXT}"]
        assert cluster.type == (cluster_pb2.Cluster.STRICT_DNS if resolution == "DNS"
                                else cluster_pb2.Cluster.LOGICAL_DNS), resolution
        found = cares.CaresDnsResolverConfig()
        assert cluster.typed_dns_resolver_config.typed_config.Unpack(found)
        assert [(r.socket_address.address, r.socket_address.port_value)
                for r in found.resolvers] == [("127.0.0.1", 5353), ("127.0.0.2", 53)]
        assert found.dns_resolver_options.no_default_search_domain


def test_circuit_breakers_connect_timeout_and_protocol_options():
    res = build_resources(snapshot(REVIEWS_DR), SIDECAR)
    c = res[TYPE_CLUSTER][f"outbound|9080|v1|{REVIEWS}"]
    t = c.circuit_breakers.thresholds[0]
    assert (t.max_connections.value, t.max_pending_requests.value) == (7, 3)
    assert (t.max_requests.value, t.max_retries.value) == (11, 2)
    assert c.connect_timeout.ToMilliseconds() == 250
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

    opts = hpo.HttpProtocolOptions()
    c.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(opts)
    assert opts.common_http_protocol_options.max_requests_per_connection.value == 5
    assert opts.common_http_protocol_options.idle_timeout.seconds == 30
    # no DestinationRule: Istio's defaults (max thresholds, 10s, LEAST_REQUEST)
    plain = res[TYPE_CLUSTER][f"outbound|8080||{RATINGS}"]
    assert plain.circuit_breakers.thresholds[0].max_connections.value == 4294967295
    assert plain.circuit_breakers.thresholds[0].max_requests.value == 4294967295
    assert plain.connect_timeout.seconds == 10
    assert plain.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert not plain.HasField("outlier_detection")


def test_outlier_detection():
    res = build_resources(snapshot(REVIEWS_DR), SIDECAR)
    c = res[TYPE_CLUSTER][f"outbound|9080||{REVIEWS}"]
    od = c.outlier_detection
    assert (od.consecutive_5xx.value, od.enforcing_consecutive_5xx.value) == (4, 100)
    assert od.consecutive_gateway_failure.value == 0
    assert od.enforcing_consecutive_gateway_failure.value == 0  # 0 disables
    assert od.interval.seconds == 5 and od.base_ejection_time.seconds == 60
    assert od.max_ejection_percent.value == 50
    assert c.common_lb_config.healthy_panic_threshold.value == 20


def test_max_ejection_percent_zero_is_unset_as_in_istio():
    """Istio's applyOutlierDetection sets max_ejection_percent only when it is above 0
    (0 is the proto's unset value), so Envoy's default of 10 % holds; meshpilot once
    sent 0, which made the outlier detection eject nothing."""
    rule = dr("""
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 0}
""")
    od = build_resources(snapshot(rule), SIDECAR)[TYPE_CLUSTER][
        f"outbound|9080||{REVIEWS}"].outlier_detection
    assert od.consecutive_5xx.value == 1 and not od.HasField("max_ejection_percent")


def test_subset_policy_overrides_and_port_level_settings():
    rule = dr("""
metadata: {name: ratings}
spec:
  host: ratings.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 100}}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: sticky
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpCookie: {name: session, ttl: 60s, path: /}}
""")
    res = build_resources(snapshot(rule), SIDECAR)
    c = res[TYPE_CLUSTER]
    assert c[f"outbound|8080||{RATINGS}"].lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert c[f"outbound|9090||{RATINGS}"].lb_policy == cluster_pb2.Cluster.RANDOM
    # port-level settings replace everything: no inherited maxConnections
    assert (
        c[f"outbound|9090||{RATINGS}"].circuit_breakers.thresholds[0].max_connections.value
        == 4294967295
    )
    sticky = c[f"outbound|8080|sticky|{RATINGS}"]
    assert sticky.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert sticky.ring_hash_lb_config.minimum_ring_size.value == 1024
    assert sticky.circuit_breakers.thresholds[0].max_connections.value == 100  # inherited


def test_consistent_hash_route_policy_and_maglev_cluster():
    rule = reviews_vs("  - route:\n    - destination: {host: reviews, subset: v2}\n")
    res = build_resources(snapshot(REVIEWS_DR, rule), SIDECAR)
    assert res[TYPE_CLUSTER][f"outbound|9080|v2|{REVIEWS}"].lb_policy == cluster_pb2.Cluster.MAGLEV
    assert res[TYPE_CLUSTER][f"outbound|9080|v2|{REVIEWS}"].maglev_lb_config.table_size.value == (
        65537
    )
    (route,) = vhost(res, f"{REVIEWS}:9080").routes
    assert route.route.hash_policy[0].header.header_name == "x-user"


@pytest.mark.parametrize(
    ("hash_yaml", "field"),
    [
        ("{httpCookie: {name: s, ttl: 10s, path: /x}}", "cookie"),
        ("{useSourceIp: true}", "connection_properties"),
        ("{httpQueryParameterName: u}", "query_parameter"),
    ],
)
def test_hash_policy_kinds(hash_yaml: str, field: str):
    rule = dr(
        f"metadata: {{name: r}}\nspec:\n  host: reviews\n  trafficPolicy:\n"
        f"    loadBalancer: {{consistentHash: {hash_yaml}}}\n"
    )
    (route,) = routes_for(rule)
    policy = route.route.hash_policy[0]
    assert policy.WhichOneof("policy_specifier") == field
    if field == "cookie":
        assert (policy.cookie.name, policy.cookie.ttl.seconds, policy.cookie.path) == (
            "s",
            10,
            "/x",
        )


# --------------------------------------------------------------------------- listeners


def _hcm(listener: Any) -> hcm.HttpConnectionManager:
    out = hcm.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(out)
    return out


def test_sidecar_listeners_outbound_proxy_and_inbound():
    res = build_resources(snapshot(), SIDECAR)
    out = res[TYPE_LISTENER]["outbound_http_proxy"]
    sa = out.address.socket_address
    assert (sa.address, sa.port_value) == ("127.10.0.9", 15001)
    manager = _hcm(out)
    # routes scoped by request host (SRDS over ADS), each scope's route config over RDS
    assert manager.WhichOneof("route_specifier") == "scoped_routes"
    scoped = manager.scoped_routes
    assert scoped.name == "outbound_http_proxy"
    (fragment,) = scoped.scope_key_builder.fragments
    extractor = fragment.header_value_extractor
    assert (extractor.name, extractor.element_separator, extractor.index) == ("host", ":", 0)
    assert scoped.rds_config_source.HasField("ads")
    assert scoped.scoped_rds.scoped_rds_config_source.HasField("ads")
    assert manager.http_protocol_options.allow_absolute_url.value is True
    assert [f.name for f in manager.http_filters] == [
        "mp.outbound_traffic_policy",  # ECDS: hosts outside the registry (egress.py)
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "mp.passthrough",  # ECDS: the dynamic forward proxy of ALLOW_ANY
        "envoy.filters.http.router",
    ]
    assert manager.use_remote_address.value is False
    assert manager.common_http_protocol_options.idle_timeout.seconds > 0
    inbound = res[TYPE_LISTENER]["inbound_9080"]
    assert inbound.address.socket_address.port_value == 9080
    assert _hcm(inbound).rds.route_config_name == "inbound|9080||"
    (vhost,) = res[TYPE_ROUTE]["inbound|9080||"].virtual_hosts
    # one route per counted source, found by the vhost's matcher (see
    # test_xds_translate_telemetry.py), every one of them to the app
    assert not vhost.routes and vhost.HasField("matcher")
    fallback = vhost.matcher.on_no_match.matcher.on_no_match.matcher.on_no_match
    route = rc.Route()
    assert fallback.action.typed_config.Unpack(route)
    assert route.route.cluster == "inbound|9080||"
    app = res[TYPE_CLUSTER]["inbound|9080||"]
    assert app.type == cluster_pb2.Cluster.STATIC
    sa = app.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (sa.address, sa.port_value) == ("127.10.0.9", 40001)


def test_vhost_domains_cover_short_forms_and_are_unique():
    res = build_resources(snapshot(), SIDECAR)
    # one route config per service with an HTTP port, holding one vhost per HTTP port
    assert set(res[TYPE_ROUTE]) == {f"outbound|{h}" for h in SERVICES} | {
        "inbound|9080||", "allow_any", "block_all"}  # and the outbound traffic policy's
    assert [v.name for v in res[TYPE_ROUTE][f"outbound|{RATINGS}"].virtual_hosts] == [
        f"{RATINGS}:8080",
        f"{RATINGS}:9090",
    ]
    all_domains = outbound_domains(res)
    assert [d for d, n in Counter(all_domains).items() if n > 1] == []
    reviews = set(vhost(res, f"{REVIEWS}:9080").domains)
    assert reviews == {
        "reviews",
        "reviews:9080",
        "reviews.default",
        "reviews.default:9080",
        "reviews.default.svc",
        "reviews.default.svc:9080",
        REVIEWS,
        f"{REVIEWS}:9080",
    }
    # two ports, neither 80: only the forms with a port
    assert "ratings" not in vhost(res, f"{RATINGS}:8080").domains
    assert "ratings:9090" in vhost(res, f"{RATINGS}:9090").domains
    # port 80 of a two-port service keeps the bare name; 8080 does not
    assert "web" in vhost(res, f"{WEB}:80").domains
    assert "web" not in vhost(res, f"{WEB}:8080").domains
    # another namespace: no bare short name
    other = set(vhost(res, f"{OTHER}:8080").domains)
    assert "other" not in other and "other:8080" not in other
    assert {"other.prod", "other.prod:8080"} <= other
    assert set(vhost(res, f"{EXT}:80").domains) == {EXT, f"{EXT}:80"}
    # the default route
    (route,) = vhost(res, f"{REVIEWS}:9080").routes
    assert route.route.cluster == f"outbound|9080||{REVIEWS}"
    # one routing scope per host spelling (the domains without port), keyed by it and
    # pointing at its service's route config
    scopes = res[TYPE_SCOPED_ROUTE]
    # (and the outbound traffic policy's two)
    assert set(scopes) == {d.split(":")[0] for d in all_domains} | set(egress.POLICY_SCOPES)
    for name, scope in scopes.items():
        assert scope.name == name
        assert [f.string_key for f in scope.key.fragments] == [name]
        config = res[TYPE_ROUTE][scope.route_configuration_name]
        assert name in egress.POLICY_SCOPES or any(
            d.split(":")[0] == name for v in config.virtual_hosts for d in v.domains)
    assert scopes["reviews"].route_configuration_name == f"outbound|{REVIEWS}"
    assert scopes["web"].route_configuration_name == f"outbound|{WEB}"
    assert scopes[EXT].route_configuration_name == f"outbound|{EXT}"
    assert "other" not in scopes and "other.prod" in scopes


def test_domains_never_duplicate_when_names_collide():
    # a ServiceEntry host spelled like a Service's short form: the full name wins
    services = {**SERVICES, "reviews.default": svc("reviews.default", 9080, origin="ServiceEntry")}
    res = build_resources(snapshot(services=services), SIDECAR)
    all_domains = outbound_domains(res)
    assert len(all_domains) == len(set(all_domains))
    assert "reviews.default:9080" in vhost(res, "reviews.default:9080").domains
    assert "reviews.default:9080" not in vhost(res, f"{REVIEWS}:9080").domains
    # a spelling is one scope, of one service (Envoy rejects two scopes with one key)
    scope = res[TYPE_SCOPED_ROUTE]["reviews.default"]
    assert scope.route_configuration_name == "outbound|reviews.default"
    assert res[TYPE_SCOPED_ROUTE]["reviews"].route_configuration_name == f"outbound|{REVIEWS}"


# --------------------------------------------------------------------------- routes


def test_weighted_clusters_and_weight_zero_dropped():
    (route,) = routes_for(
        reviews_vs("""\
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 30}
    - {destination: {host: reviews, subset: v2}, weight: 10}
    - {destination: {host: reviews, subset: v3}, weight: 0}
""")
    )
    clusters = [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters]
    assert clusters == [(f"outbound|9080|v1|{REVIEWS}", 30), (f"outbound|9080|v2|{REVIEWS}", 10)]
    (route,) = routes_for(
        reviews_vs("""\
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 100}
    - {destination: {host: reviews, subset: v2}, weight: 0}
""")
    )
    assert route.route.cluster == f"outbound|9080|v1|{REVIEWS}"


def test_destination_port_defaults_and_fallback():
    rule = vs("""\
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /r}}]
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /s}}]
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: ratings, port: {number: 1234}}}]
""")
    r80 = routes_for(rule, host=WEB, port=80)
    # ratings has two ports, neither the listener port 80: falls back to its first port
    assert r80[0].route.cluster == f"outbound|8080||{RATINGS}"
    assert r80[1].route.cluster == f"outbound|9080||{REVIEWS}"  # the only port
    r8080 = routes_for(rule, host=WEB, port=8080)
    assert r8080[0].route.cluster == f"outbound|8080||{RATINGS}"  # the listener port
    assert r8080[2].route.cluster == f"outbound|8080||{RATINGS}"  # 1234 does not exist


def test_first_match_order_and_one_route_per_match():
    routes = routes_for(
        reviews_vs("""\
  - name: canary
    match:
    - {name: hdr, headers: {end-user: {exact: jason}}}
    - {uri: {prefix: /beta}}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: rest
    route: [{destination: {host: reviews, subset: v1}}]
""")
    )
    assert [r.name for r in routes] == ["canary.hdr", "canary", "rest"]
    assert routes[0].match.headers[0].name == "end-user"
    assert routes[0].match.headers[0].string_match.exact == "jason"
    assert routes[1].match.prefix == "/beta"
    assert routes[2].match.prefix == "/"
    assert routes[0].route.cluster == routes[1].route.cluster == f"outbound|9080|v2|{REVIEWS}"


def test_every_match_kind():
    routes = routes_for(
        reviews_vs("""\
  - match:
    - uri: {exact: /a}
      ignoreUriCase: true
      method: {exact: POST}
      authority: {prefix: reviews}
      scheme: {exact: http}
      headers: {x-a: {prefix: p}, x-b: {regex: "v[0-9]+"}, x-c: {}}
      withoutHeaders: {x-d: {exact: "1"}, x-e: {}}
      queryParams: {q: {exact: "1"}, r: {regex: "a.*"}, s: {}}
    - uri: {regex: "/b/[0-9]+"}
    - {uri: {prefix: /c}, port: 9080}
    - {uri: {prefix: /d}, port: 1}
    route: [{destination: {host: reviews}}]
""")
    )
    first, second, third = routes  # the port 1 match does not apply to this vhost
    m = first.match
    assert m.path == "/a" and m.case_sensitive.value is False
    headers = {h.name: h for h in m.headers}
    assert headers[":method"].string_match.exact == "POST"
    assert headers[":authority"].string_match.prefix == "reviews"
    assert headers[":scheme"].string_match.exact == "http"
    assert headers["x-a"].string_match.prefix == "p"
    assert headers["x-b"].string_match.safe_regex.regex == "v[0-9]+"
    assert headers["x-c"].present_match is True and not headers["x-c"].invert_match
    assert headers["x-d"].invert_match and headers["x-d"].string_match.exact == "1"
    assert headers["x-e"].invert_match and headers["x-e"].present_match
    qp = {q.name: q for q in m.query_parameters}
    assert qp["q"].string_match.exact == "1"
    assert qp["r"].string_match.safe_regex.regex == "a.*"
    assert qp["s"].present_match is True
    assert second.match.safe_regex.regex == "/b/[0-9]+"
    assert third.match.prefix == "/c"


def test_source_labels_decide_per_proxy():
    rule = reviews_vs("""\
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
""")
    mine = routes_for(rule)
    assert [r.route.cluster for r in mine] == [
        f"outbound|9080|v2|{REVIEWS}",
        f"outbound|9080|v1|{REVIEWS}",
    ]
    other = ProxyNode(
        id="x", kind="sidecar", namespace="default", ip="127.10.0.8", labels={"app": "details"}
    )
    assert [r.route.cluster for r in routes_for(rule, node=other)] == [
        f"outbound|9080|v1|{REVIEWS}"
    ]


def test_gateway_only_virtual_service_does_not_apply_to_sidecars():
    rule = vs("""\
metadata: {name: edge}
spec:
  hosts: [reviews]
  gateways: [edge-gw]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
""")
    (route,) = routes_for(rule)
    assert route.route.cluster == f"outbound|9080||{REVIEWS}"


def test_mirror_percentages():
    (route,) = routes_for(
        reviews_vs("""\
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 12.5}
""")
    )
    (policy,) = route.route.request_mirror_policies
    assert policy.cluster == f"outbound|9080|v2|{REVIEWS}"
    frac = policy.runtime_fraction.default_value
    assert (frac.numerator, frac.denominator) == (125000, percent_pb2.FractionalPercent.MILLION)
    (route,) = routes_for(
        reviews_vs("""\
  - route: [{destination: {host: reviews, subset: v1}}]
    mirrors:
    - destination: {host: reviews, subset: v2}
    - {destination: {host: ratings}, percentage: {value: 5}}
""")
    )
    fracs = [
        p.runtime_fraction.default_value.numerator for p in route.route.request_mirror_policies
    ]
    assert fracs == [1000000, 50000]
    assert route.route.request_mirror_policies[1].cluster == f"outbound|8080||{RATINGS}"


def test_retries_default_custom_and_disabled():
    (route,) = routes_for(reviews_vs("  - route: [{destination: {host: reviews}}]\n"))
    rp = route.route.retry_policy
    assert rp.num_retries.value == 2
    assert rp.retry_on == (
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    )
    assert rp.host_selection_retry_max_attempts == 5
    assert rp.retry_host_predicate[0].name == "envoy.retry_host_predicates.previous_hosts"
    (route,) = routes_for(
        reviews_vs("""\
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "gateway-error,503,429"}
""")
    )
    rp = route.route.retry_policy
    assert rp.num_retries.value == 4
    assert rp.per_try_timeout.ToMilliseconds() == 500
    assert rp.retry_on == "gateway-error,retriable-status-codes"
    assert list(rp.retriable_status_codes) == [503, 429]
    (route,) = routes_for(
        reviews_vs("  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}\n")
    )
    assert not route.route.HasField("retry_policy")


def test_timeout_default_disabled_and_explicit():
    (route,) = routes_for(reviews_vs("  - route: [{destination: {host: reviews}}]\n"))
    assert route.route.HasField("timeout") and route.route.timeout.ToNanoseconds() == 0
    (route,) = routes_for(
        reviews_vs("  - route: [{destination: {host: reviews}}]\n    timeout: 1.5s\n")
    )
    assert route.route.timeout.ToMilliseconds() == 1500


def test_fault_per_filter_config():
    (route,) = routes_for(
        reviews_vs("""\
  - route: [{destination: {host: reviews}}]
    fault:
      delay: {fixedDelay: 2s, percentage: {value: 50}}
      abort: {httpStatus: 503, percentage: {value: 0.1}}
""")
    )
    fault = fault_pb2.HTTPFault()
    route.typed_per_filter_config["envoy.filters.http.fault"].Unpack(fault)
    assert fault.delay.fixed_delay.seconds == 2
    assert fault.delay.percentage.numerator == 500000
    assert fault.abort.http_status == 503
    assert fault.abort.percentage.numerator == 1000


def test_rewrite_and_headers():
    routes = routes_for(
        reviews_vs("""\
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: backend.local}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 90
      headers: {request: {set: {x-dest: v1}}}
    - destination: {host: reviews, subset: v2}
      weight: 10
    headers:
      request: {set: {x-set: a}, add: {x-add: b}, remove: [x-gone]}
      response: {set: {x-resp: c}, remove: [server]}
  - match: [{uri: {prefix: /re}}]
    rewrite: {uriRegexRewrite: {match: "^/re/(.*)$", rewrite: "/\\\\1"}}
    route: [{destination: {host: reviews}}]
""")
    )
    first, second = routes
    assert first.route.prefix_rewrite == "/new"
    assert first.route.host_rewrite_literal == "backend.local"
    by_key = {h.header.key: h.append_action for h in first.request_headers_to_add}
    from envoy.config.core.v3 import base_pb2

    assert by_key["x-set"] == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert by_key["x-add"] == base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    assert list(first.request_headers_to_remove) == ["x-gone"]
    assert [h.header.key for h in first.response_headers_to_add] == ["x-resp"]
    assert list(first.response_headers_to_remove) == ["server"]
    weighted = first.route.weighted_clusters.clusters[0]
    assert weighted.request_headers_to_add[0].header.key == "x-dest"
    assert second.route.regex_rewrite.pattern.regex == "^/re/(.*)$"
    assert second.route.regex_rewrite.substitution == "/\\1"


def test_redirect_and_direct_response():
    redirect, direct = routes_for(
        reviews_vs("""\
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: other.example, redirectCode: 302, scheme: https, port: 8443}
  - directResponse: {status: 418, body: {string: teapot}}
""")
    )
    r = redirect.redirect
    assert (r.path_redirect, r.host_redirect, r.scheme_redirect, r.port_redirect) == (
        "/new",
        "other.example",
        "https",
        8443,
    )
    assert r.response_code == rc.RedirectAction.FOUND
    assert direct.direct_response.status == 418
    assert direct.direct_response.body.inline_string == "teapot"


def test_cors_per_filter_config():
    (route,) = routes_for(
        reviews_vs("""\
  - route: [{destination: {host: reviews}}]
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {regex: "https://.*\\\\.b\\\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 24h
      allowCredentials: true
""")
    )
    cors = cors_pb2.CorsPolicy()
    route.typed_per_filter_config["envoy.filters.http.cors"].Unpack(cors)
    assert cors.allow_origin_string_match[0].exact == "https://a.example"
    assert cors.allow_origin_string_match[1].safe_regex.regex == "https://.*\\.b\\.example"
    assert cors.allow_methods == "GET,POST"
    assert (cors.allow_headers, cors.expose_headers, cors.max_age) == ("x-a", "x-b", "86400")
    assert cors.allow_credentials.value is True


# --------------------------------------------------------------------------- gateway


GATEWAY_NODE = ProxyNode(
    id="gw",
    kind="gateway",
    namespace="istio-system",
    ip="127.0.0.1",
    labels={"istio": "ingressgateway"},
    gateway_ports={80: 18080},
)


def test_gateway_listener_route_config_and_hosts():
    gateway = gw("""\
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com", "bookinfo.local"]
  - port: {number: 8081, name: http2, protocol: HTTP}
    hosts: ["*"]
""")
    edge = vs("""\
metadata: {name: edge}
spec:
  hosts: [shop.example.com, bookinfo.local, unrelated.org]
  gateways: [istio-system/public]
  http:
  - match: [{uri: {prefix: /reviews}}]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
  - route: [{destination: {host: web.default.svc.cluster.local, port: {number: 80}}}]
""")
    res = build_resources(snapshot(gateway, edge), GATEWAY_NODE)
    assert set(res[TYPE_LISTENER]) == {"gateway_80"}  # 8081 is not mapped here
    listener = res[TYPE_LISTENER]["gateway_80"]
    assert listener.address.socket_address.port_value == 18080
    manager = _hcm(listener)
    assert manager.rds.route_config_name == "http.80"
    assert manager.use_remote_address.value is True
    config = res[TYPE_ROUTE]["http.80"]
    assert [v.name for v in config.virtual_hosts] == ["shop.example.com:80", "bookinfo.local:80"]
    assert [list(v.domains) for v in config.virtual_hosts] == [
        ["shop.example.com"],
        ["bookinfo.local"],
    ]
    routes = config.virtual_hosts[0].routes
    assert routes[0].route.cluster == f"outbound|9080||{REVIEWS}"
    assert routes[1].route.cluster == f"outbound|80||{WEB}"
    assert f"outbound|9080||{REVIEWS}" in res[TYPE_CLUSTER]  # gateways get outbound clusters
    # a gateway whose selector does not match this proxy contributes nothing
    other = ProxyNode(
        id="g2",
        kind="gateway",
        namespace="x",
        ip="127.0.0.1",
        labels={"istio": "egress"},
        gateway_ports={80: 18081},
    )
    assert build_resources(snapshot(gateway, edge), other)[TYPE_LISTENER] == {}


# --------------------------------------------------------------------------- determinism


def test_same_input_gives_identical_bytes():
    rules = (
        REVIEWS_DR,
        reviews_vs("""\
  - match: [{headers: {a: {exact: "1"}, b: {prefix: "2"}}}]
    fault: {abort: {httpStatus: 500}}
    corsPolicy: {allowOrigins: [{exact: x}]}
    route:
    - {destination: {host: reviews, subset: v1}, weight: 1}
    - {destination: {host: reviews, subset: v2}, weight: 2}
"""),
    )

    def dump() -> dict[str, dict[str, bytes]]:
        res = build_resources(snapshot(*rules), SIDECAR)
        return {
            t: {n: m.SerializeToString(deterministic=True) for n, m in items.items()}
            for t, items in res.items()
        }

    first, second = dump(), dump()
    assert first == second
    assert list(first[TYPE_CLUSTER]) == list(second[TYPE_CLUSTER])


def test_keepalive_connection_duration_and_warmup_reach_the_cluster():
    """Istio's tcpKeepalive, maxConnectionDuration and warmup (slow start for
    ROUND_ROBIN and LEAST_REQUEST only, as Istio)."""
    rule = dr("""
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {warmup: {duration: 30s, minimumPercent: 10, aggression: 1.5}}
    connectionPool:
      tcp: {maxConnectionDuration: 1h, tcpKeepalive: {time: 60s, interval: 10s, probes: 3}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 20s}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: RANDOM, warmupDurationSecs: 20s}}
""")
    found = build_resources(snapshot(rule), SIDECAR)[TYPE_CLUSTER]
    plain = found[f"outbound|9080||{REVIEWS}"]
    keepalive = plain.upstream_connection_options.tcp_keepalive
    assert (keepalive.keepalive_time.value, keepalive.keepalive_interval.value,
            keepalive.keepalive_probes.value) == (60, 10, 3)
    slow = plain.least_request_lb_config.slow_start_config
    assert slow.slow_start_window.seconds == 30 and slow.min_weight_percent.value == 10
    assert slow.aggression.default_value == 1.5
    options = hpo.HttpProtocolOptions()
    plain.typed_extension_protocol_options[HTTP_OPTIONS_KEY].Unpack(options)
    assert options.common_http_protocol_options.max_connection_duration.seconds == 3600
    v1 = found[f"outbound|9080|v1|{REVIEWS}"]
    assert v1.round_robin_lb_config.slow_start_config.slow_start_window.seconds == 20
    v2 = found[f"outbound|9080|v2|{REVIEWS}"]
    assert not v2.HasField("round_robin_lb_config") and not v2.HasField(
        "least_request_lb_config")  # RANDOM takes no warm-up, in Istio neither


def test_dns_round_robin_is_logical_dns_as_in_istio():
    """Istio gives resolution DNS_ROUND_ROBIN a LOGICAL_DNS cluster (the first address
    a name resolves to, connections kept across DNS changes), of its one endpoint or of
    the host; meshpilot once treated it as DNS (STRICT_DNS). Several endpoints are
    refused, as the mode connects through one name."""
    from tests.builders import keyed

    from meshpilot.mesh.builder import build_snapshot

    def cluster_of(extra: str) -> Any:
        snap = build_snapshot(1, keyed(f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: rr}}
spec:
  hosts: [rr.example.com]
  resolution: DNS_ROUND_ROBIN
  ports: [{{number: 80, name: http}}]
{extra}"""))
        return build_resources(snap, SIDECAR)[TYPE_CLUSTER]["outbound|80||rr.example.com"]

    plain = cluster_of("")
    assert plain.type == cluster_pb2.Cluster.LOGICAL_DNS
    sa = plain.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (sa.address, sa.port_value) == ("rr.example.com", 80)
    one = cluster_of("  endpoints: [{address: lb.example.net}]\n")
    assert one.type == cluster_pb2.Cluster.LOGICAL_DNS
    sa = one.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert sa.address == "lb.example.net"
    from pydantic import ValidationError

    from meshpilot.api.networking import ServiceEntry
    with pytest.raises(ValidationError, match="at most one endpoint"):
        ServiceEntry.model_validate({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "rr"},
            "spec": {"hosts": ["rr.example.com"], "resolution": "DNS_ROUND_ROBIN",
                     "ports": [{"number": 80, "name": "http"}],
                     "endpoints": [{"address": "a.example.net"}, {"address": "b.example.net"}]}})

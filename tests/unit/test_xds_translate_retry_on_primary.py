"""Retry on the primary (``meshpilot.io/retry-on-primary``): the routes and the aggregate
cluster a VirtualService carrying it gets, and what stays as it was.

Envoy's behaviour followed: an aggregate cluster (``envoy.clusters.aggregate``) puts its
member clusters' priorities one after another, the first member's first; a retry
priority ``envoy.retry_priorities.previous_priorities`` with ``update_frequency: 1``
leaves out, for the next attempt, the priority the last one used; one random value per
request decides every route's ``runtime_fraction``. Istio's default retry policy (2
retries, connect failures and 503) stays on the primary's share as written.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)
from envoy.type.v3 import percent_pb2
from tests.unit.test_xds_translate import (
    REVIEWS,
    REVIEWS_DR,
    SIDECAR,
    gw,
    snapshot,
    vhost,
    vs,
)

from meshpilot.mesh.model import ProxyNode
from meshpilot.xds.translate import TYPE_CLUSTER, TYPE_ROUTE, build_resources, retry_on_primary

V1 = f"outbound|9080|v1|{REVIEWS}"
V2 = f"outbound|9080|v2|{REVIEWS}"
AGGREGATE = f"retry_on_primary|{V2}|{V1}"


def annotated(http: str, value: str = "true") -> object:
    return vs("metadata: {name: reviews, annotations: {meshpilot.io/retry-on-primary: "
              f"'{value}'}}}}\nspec:\n  hosts: [reviews]\n  http:\n" + http)


SPLIT = """\
  - match: [{uri: {prefix: /api}}, {headers: {x-beta: {exact: "1"}}}]
    retries: {attempts: 3, retryOn: gateway-error}
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
"""


def resources(*rules: object, node: ProxyNode = SIDECAR) -> dict:
    return build_resources(snapshot(REVIEWS_DR, *rules), node)  # type: ignore[arg-type]


def routes(res: dict) -> list[rc.Route]:
    return list(vhost(res, f"{REVIEWS}:9080").routes)


def method_regex(route: rc.Route) -> str:
    (method,) = [h for h in route.match.headers if h.name == ":method"]
    return method.string_match.safe_regex.regex


def test_split_rule_gets_idempotent_canary_and_primary_routes_before_its_own() -> None:
    """Per match: canary share (aggregate, one retry to the next priority), then the
    primary for the rest of GET/HEAD/OPTIONS, then the rule as written for the rest."""
    res = resources(annotated(SPLIT))
    got = routes(res)
    assert len(got) == 6  # two matches x (canary copy, primary copy, the rule)
    canary_a, canary_b, primary_a, primary_b, own_a, own_b = got
    for route in (canary_a, canary_b):
        assert route.route.cluster == AGGREGATE
        assert method_regex(route) == "GET|HEAD|OPTIONS"
        assert route.match.runtime_fraction.default_value == percent_pb2.FractionalPercent(
            numerator=100000, denominator=percent_pb2.FractionalPercent.MILLION)
        policy = route.route.retry_policy
        assert policy.retry_on == "5xx,reset,connect-failure,refused-stream"
        assert policy.num_retries.value == 1
        assert policy.retry_priority.name == "envoy.retry_priorities.previous_priorities"
        priorities = previous_priorities_config_pb2.PreviousPrioritiesConfig()
        policy.retry_priority.typed_config.Unpack(priorities)
        assert priorities.update_frequency == 1
        assert route.name.endswith("retry-on-primary")
    assert canary_a.match.prefix == "/api"
    assert [h.name for h in canary_b.match.headers] == ["x-beta", ":method"]
    for route in (primary_a, primary_b):
        assert route.route.cluster == V1
        assert method_regex(route) == "GET|HEAD|OPTIONS"
        assert not route.match.HasField("runtime_fraction")
        # the user's retries keep their meaning on the primary's share
        assert route.route.retry_policy.retry_on == "gateway-error"
        assert route.route.retry_policy.num_retries.value == 3
    for route in (own_a, own_b):  # other methods: weighted as written, the user's retries
        weights = [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters]
        assert weights == [(V1, 90), (V2, 10)]
        assert not [h for h in route.match.headers if h.name == ":method"]
        assert route.route.retry_policy.num_retries.value == 3
    cluster = res[TYPE_CLUSTER][AGGREGATE]
    assert cluster.cluster_type.name == "envoy.clusters.aggregate"
    config = aggregate_pb2.ClusterConfig()
    cluster.cluster_type.typed_config.Unpack(config)
    assert list(config.clusters) == [V2, V1]  # the canary first: priority 0
    (limits,) = cluster.circuit_breakers.thresholds  # a burst of retries is not cut short
    assert limits.max_retries.value == 2**32 - 1


def test_the_canary_share_follows_the_weights() -> None:
    http = SPLIT.replace("weight: 90", "weight: 30").replace("weight: 10", "weight: 10")
    (first, *_) = routes(resources(annotated(http)))
    assert first.match.runtime_fraction.default_value.numerator == 250000  # 10 / 40


def test_without_the_annotation_or_with_false_nothing_changes() -> None:
    plain = resources(vs("metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n"
                         + SPLIT))
    off = resources(annotated(SPLIT, "false"))
    assert routes(plain) == routes(off)
    assert len(routes(plain)) == 2
    for res in (plain, off):
        assert not [n for n in res[TYPE_CLUSTER] if n.startswith("retry_on_primary")]
    assert set(plain[TYPE_CLUSTER]) == set(off[TYPE_CLUSTER])


def test_rules_with_one_weighted_destination_stay_as_written() -> None:
    """Weight 0 (rolled back, or before the first step), an A/B or blue-green route
    with the canary at 100, and a rule of three destinations get no copies; the
    aggregate of a rule of two destinations is held all the same (a retry under way
    when the weight went to 0 still finds it), and a rule of three has none."""
    for http in ("""\
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 100}
    - {destination: {host: reviews, subset: v2}, weight: 0}
""", """\
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 0}
    - {destination: {host: reviews, subset: v2}, weight: 100}
""", """\
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 25}
    - {destination: {host: reviews, subset: v3}, weight: 25}
"""):
        res = resources(annotated(http))
        (route,) = routes(res)
        assert route.route.cluster != AGGREGATE
        held = [n for n in res[TYPE_CLUSTER] if n.startswith("retry_on_primary")]
        assert held == ([] if "v3" in http else [AGGREGATE])


def test_gateways_keep_the_rule_as_written() -> None:
    """The aggregate clusters are a sidecar's and the mesh proxy's: a gateway bound by
    the same VirtualService routes it as written (and holds no aggregate)."""
    gateway = ProxyNode(id="gw", kind="gateway", namespace="istio-system", ip="127.0.0.1",
                        labels={"istio": "ingressgateway"}, gateway_ports={80: 18080})
    rule = vs("metadata: {name: reviews, annotations: {meshpilot.io/retry-on-primary: "
              "'true'}}\nspec:\n  hosts: [reviews.example.com]\n"
              "  gateways: [istio-system/public]\n  http:\n" + SPLIT)
    res = build_resources(snapshot(REVIEWS_DR, rule, gw("""\
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
""")), gateway)
    found = [r.route for c in res[TYPE_ROUTE].values() for h in c.virtual_hosts
             for r in h.routes if h.name.startswith("reviews.example.com")]
    assert len(found) == 2  # the rule's two matches, no copies
    assert all([w.name for w in a.weighted_clusters.clusters] == [V1, V2] for a in found)
    assert AGGREGATE not in res[TYPE_CLUSTER]


def test_aggregate_names_round_trip_and_other_names_are_not_aggregates() -> None:
    name = retry_on_primary.aggregate_name(V2, V1)
    assert retry_on_primary.members(name) == (V2, V1)
    assert retry_on_primary.members(V1) is None
    assert retry_on_primary.members("retry_on_primary|x") is None

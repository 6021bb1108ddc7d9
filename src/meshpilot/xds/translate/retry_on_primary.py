"""Retry on the primary: a failed request at the canary is answered by the primary.

A VirtualService annotated ``meshpilot.io/retry-on-primary: "true"`` (the one a Canary
generates carries it when the Canary does) changes, for sidecars and the mesh proxy,
each HTTP rule that splits traffic between exactly two destinations with weight, the
first being the primary (Flagger's order: primary, then canary). Before the rule's own
routes come, for each of its matches:

1. the same match, restricted to ``GET``, ``HEAD`` and ``OPTIONS`` and to the canary's
   share of requests (``runtime_fraction`` of its weight), routed to an aggregate
   cluster of the canary's cluster then the primary's, with a retry policy of its own:
   one retry on ``5xx``, ``reset``, ``connect-failure`` or ``refused-stream``, whose
   retry priority (``envoy.retry_priorities.previous_priorities``, updated after every
   attempt) leaves out the priority already tried: the canary's, so the retry goes to
   the primary's priority;
2. the same match, restricted to those methods, routed to the primary alone with the
   rule's own settings (its retries, as Istio means them, included).

Other methods reach the rule's own routes, weighted as written: a POST is never sent
twice. The canary's share of idempotent requests keeps its weight (Envoy draws one
random value per request, so (1) takes the canary's share and (2) the rest); only its
retry policy is this one, not the rule's.

The aggregate cluster's name holds both member clusters,
``retry_on_primary|outbound|8080||NAME-canary...|outbound|8080||NAME-primary...``, so
the cluster is a function of its name. A proxy holds one per rule of two destinations
of such a VirtualService whatever the weights, not only while a route names it: at a
rollback the routes stop naming it while retries of requests that matched the old
routes may still be under way, and Envoy answers such a retry "no healthy upstream"
if its cluster was removed meanwhile (seen in ``benchmarks/rollback.py``).
It is not an ``outbound|`` name on purpose: Envoy names the aggregate as the upstream
cluster of a request routed to it whichever member answered, so a proxy holding one
also counts those requests with the host that gave the final answer
(:func:`~meshpilot.xds.translate.telemetry.answered_access_log`), and telemetry reports
each under the member that host belongs to (the primary, on a retried request), never
under the aggregate's own name when the host tells; the canary's own sidecar counts (and
reports, for fail-fast) the failure it answered. Gateways do not get these routes (the
rule stays as written there).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)
from envoy.type.matcher.v3 import string_pb2

from meshpilot.mesh.sources import RETRY_ON_PRIMARY, retry_aggregate
from meshpilot.xds.translate import pb
from meshpilot.xds.translate.matches import regex

PREFIX = RETRY_ON_PRIMARY
RETRY_ON = "5xx,reset,connect-failure,refused-stream"
IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS")
ROUTE_SUFFIX = "retry-on-primary"


def aggregate_name(canary_cluster: str, primary_cluster: str) -> str:
    return f"{PREFIX}|{canary_cluster}|{primary_cluster}"


def members(name: str) -> tuple[str, str] | None:
    """(canary cluster, primary cluster) of an aggregate's name; None for other names."""
    return retry_aggregate(name)


def aggregate_cluster(name: str) -> cluster_pb2.Cluster:
    """The aggregate cluster ``name`` stands for: the canary's cluster first (priority
    0, where requests go while it has healthy endpoints), the primary's second.

    Its circuit breakers are open as Istio leaves a cluster's by default: Envoy counts
    concurrent retries against the route's cluster, this one, whose default of 3 would
    let a burst of canary failures through to users; each request is retried once at
    most, and the members keep their DestinationRules' connection pool limits."""
    pair = members(name)
    if pair is None:
        raise ValueError(f"not a retry-on-primary cluster name: {name!r}")
    return cluster_pb2.Cluster(
        name=name,
        connect_timeout=pb.duration("10s"),
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                max_connections=pb.u32(pb.U32_MAX), max_pending_requests=pb.u32(pb.U32_MAX),
                max_requests=pb.u32(pb.U32_MAX), max_retries=pb.u32(pb.U32_MAX))]),
        cluster_type=cluster_pb2.Cluster.CustomClusterType(
            name="envoy.clusters.aggregate",
            typed_config=pb.pack(aggregate_pb2.ClusterConfig(clusters=list(pair)))),
    )


def retry_policy() -> rc.RetryPolicy:
    """One retry, on the priority not yet tried (the primary's, in the aggregate)."""
    return rc.RetryPolicy(
        retry_on=RETRY_ON,
        num_retries=pb.u32(1),
        retry_priority=rc.RetryPolicy.RetryPriority(
            name="envoy.retry_priorities.previous_priorities",
            typed_config=pb.pack(previous_priorities_config_pb2.PreviousPrioritiesConfig(
                update_frequency=1))),
    )


def _idempotent(route: rc.Route) -> None:
    route.match.headers.append(rc.HeaderMatcher(
        name=":method",
        string_match=string_pb2.StringMatcher(
            safe_regex=regex("|".join(IDEMPOTENT_METHODS)))))
    route.name = ".".join(p for p in (route.name, ROUTE_SUFFIX) if p)


def canary_routes(routes: Iterable[rc.Route], aggregate: str, percent: float) -> list[rc.Route]:
    """Routes to the canary (one per match) turned into (1) of the module's docstring."""
    out = list(routes)
    for route in out:
        _idempotent(route)
        route.match.runtime_fraction.CopyFrom(pb.runtime_fraction(percent))
        route.route.cluster = aggregate
        route.route.retry_policy.CopyFrom(retry_policy())
    return out


def primary_routes(routes: Iterable[rc.Route]) -> list[rc.Route]:
    """Routes to the primary (one per match) turned into (2) of the module's docstring."""
    out = list(routes)
    for route in out:
        _idempotent(route)
    return out



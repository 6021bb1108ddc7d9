"""Retry on the primary keeps the client-side series honest: the requests routed to a
retry-on-primary aggregate are reported under the member that gave the final answer.

Istio's behaviour followed: ``istio_requests_total{reporter="source"}`` counts a request
once, at the client, with its final response, and names the workload that gave it. Envoy's
behaviour followed: the route's cluster (``%UPSTREAM_CLUSTER_RAW%``) is the aggregate
whichever member answered, ``%UPSTREAM_HOST%`` the host of the last attempt (see
``tests/integration/test_retry_on_primary_telemetry_envoy.py``).
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from tests.builders import by_version, destination_rule, named, sidecar_node
from tests.unit.test_xds_shared import node, same_as_reference
from tests.unit.test_xds_shared_retry_on_primary import AGGREGATE, mesh

from meshpilot.api.networking import DestinationRule
from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot
from meshpilot.mesh.sources import answered_by, retry_aggregate
from meshpilot.telemetry.envoy_stats import parse_json
from meshpilot.telemetry.istio import ProxyIdentity, relabel
from meshpilot.xds import LISTENER, ProxyConfigBuilder
from meshpilot.xds.translate import names, telemetry

H = ".default.svc.cluster.local"
CANARY, PRIMARY = f"outbound|8080||app-canary{H}", f"outbound|8080||app-primary{H}"
OUT = "meshpilot.outbound.requests"


def _loggers(builder: ProxyConfigBuilder, snap: MeshSnapshot) -> tuple[bytes, list[str]]:
    """The outbound listener's bytes, and the names of its connection manager's loggers
    (a stats logger with a CEL filter is the answered-by one)."""
    entry = builder.config_for(snap, node(1))[LISTENER][names.OUTBOUND_LISTENER]
    listener = entry.message
    assert isinstance(listener, listener_pb2.Listener)
    manager = hcm.HttpConnectionManager()
    chains = [*listener.filter_chains, listener.default_filter_chain]
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.Is(manager.DESCRIPTOR):
                network_filter.typed_config.Unpack(manager)
    kinds = [f"{a.name}+{a.filter.extension_filter.name}" if a.HasField("filter")
             else a.name for a in manager.access_log]
    return listener.SerializeToString(deterministic=True), kinds


def test_only_a_proxy_holding_an_aggregate_counts_who_answered() -> None:
    """Without the annotation the outbound listener is the same, byte for byte, before
    and after the annotation came and went; with it, one more stats logger, filtered to
    the aggregates' requests. The shared build equals the reference build throughout."""
    builder = ProxyConfigBuilder()
    seen = []
    for annotated in (False, True, False):
        snap = mesh(10, annotated=annotated)
        seen.append(_loggers(builder, snap))
        same_as_reference(builder, snap, node(1))
    (off, off_kinds), (on, on_kinds), (off_again, _) = seen
    assert off == off_again and off != on
    added = [k for k in on_kinds if k not in off_kinds]
    assert added == [f"{telemetry.STATS_LOGGER}+{telemetry.CEL_FILTER}"], on_kinds


def test_the_answered_tag_names_the_aggregate_and_the_host() -> None:
    assert retry_aggregate(AGGREGATE) == (CANARY, PRIMARY)
    assert answered_by(f"{AGGREGATE}|127.32.0.1:18080") == (AGGREGATE, "127.32.0.1:18080")
    assert answered_by(f"{AGGREGATE}|[::1]:8080") == (AGGREGATE, "[::1]:8080")
    assert answered_by(f"{AGGREGATE}|-") == (AGGREGATE, "-")
    assert answered_by(AGGREGATE) is None and answered_by(PRIMARY) is None
    assert retry_aggregate(f"{AGGREGATE}|127.0.0.1:1") is None


def _snapshot() -> MeshSnapshot:
    services = {h: MeshService(host=h, name=h.split(".")[0], namespace="default", ports=())
                for h in (f"app-canary{H}", f"app-primary{H}", f"app{H}")}
    endpoints = {
        f"app-canary{H}": (Endpoint(f"app-canary{H}", 8080, "127.32.0.2", 18080,
                                    {"app": "app"}, workload="app"),),
        f"app-primary{H}": (Endpoint(f"app-primary{H}", 8080, "127.32.0.1", 18080,
                                     {"app": "app-primary"}, workload="app-primary"),),
        f"app{H}": (Endpoint(f"app{H}", 8080, "127.32.0.3", 18080,
                             {"app": "app", "version": "v1"}, workload="app-v1"),
                    Endpoint(f"app{H}", 8080, "127.32.0.4", 18080,
                             {"app": "app", "version": "v2"}, workload="app-v2"))}
    rule = named(DestinationRule, destination_rule("app", subsets=by_version("v1", "v2")))
    return MeshSnapshot(version=1, services=services, endpoints=endpoints,
                        destination_rules=(rule,))


def _source_series(stats: dict[str, float]) -> dict[tuple[str, str, str], float]:
    doc = {"stats": [{"name": n, "value": v} for n, v in stats.items()]}
    client = sidecar_node("client-0", "127.30.0.9", workload="client",
                          labels={"app": "client"})
    series: dict[tuple[str, str, str], float] = {}
    for point in relabel(ProxyIdentity.from_node(client), client, parse_json(doc),
                         _snapshot()):
        labels = dict(point.labels)
        if point.metric == "istio_requests_total" and labels["reporter"] == "source":
            key = (labels["destination_workload"], labels["destination_service"],
                   labels["response_code"])
            series[key] = series.get(key, 0.0) + point.value
    return series


def _name(code: int, cluster: str, flags: str = "-") -> str:
    return f"{OUT}.response_code.{code}.response_flags.{flags}.grpc_status..cluster.{cluster}"


def test_requests_count_under_the_member_that_answered() -> None:
    """3 answered by the canary, 2 retried and answered by the primary, 1 the primary
    failed too: each counted once, under the workload that gave the final answer; the
    aggregate's own count of the same 6 requests is not reported. A direct request to
    the primary adds to the same series."""
    series = _source_series({
        _name(200, AGGREGATE): 5, _name(503, AGGREGATE, "URX"): 1,
        _name(200, f"{AGGREGATE}|127.32.0.2:18080"): 3,
        _name(200, f"{AGGREGATE}|127.32.0.1:18080"): 2,
        _name(503, f"{AGGREGATE}|127.32.0.1:18080", "URX"): 1,
        _name(200, PRIMARY): 4})
    assert series == {("app", f"app-canary{H}", "200"): 3,
                      ("app-primary", f"app-primary{H}", "200"): 6,
                      ("app-primary", f"app-primary{H}", "503"): 1}


def test_a_host_in_no_single_member_keeps_the_aggregate() -> None:
    """No host (no healthy upstream in either member), or an address neither member
    has (an east-west gateway's, which stands for pods of both): the aggregate's name,
    workload unknown, as before; never credited to one member by guess."""
    series = _source_series({
        _name(503, f"{AGGREGATE}|-", "UH"): 2,
        _name(200, f"{AGGREGATE}|10.9.9.9:15443"): 1,
        _name(200, AGGREGATE): 1, _name(503, AGGREGATE, "UH"): 2})
    assert series == {("unknown", AGGREGATE, "503"): 2, ("unknown", AGGREGATE, "200"): 1}


def test_a_proxy_not_counting_apart_reports_the_aggregate_as_before() -> None:
    """A proxy configured before it counted who answered: its requests are not lost."""
    assert _source_series({_name(200, AGGREGATE): 5}) == {("unknown", AGGREGATE, "200"): 5}


def test_subsets_of_one_service_are_told_apart_by_their_labels() -> None:
    """A VirtualService of your own splitting one host's v1 and v2 subsets: the host
    that answered is in one subset only."""
    v1, v2 = f"outbound|8080|v1|app{H}", f"outbound|8080|v2|app{H}"
    aggregate = f"retry_on_primary|{v2}|{v1}"
    series = _source_series({_name(200, aggregate): 3,
                             _name(200, f"{aggregate}|127.32.0.3:18080"): 2,
                             _name(200, f"{aggregate}|127.32.0.4:18080"): 1})
    assert series == {("app-v1", f"app{H}", "200"): 2, ("app-v2", f"app{H}", "200"): 1}

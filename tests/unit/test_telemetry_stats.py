"""Envoy stats parsing, relabelling into Istio series, reset handling and retention."""

from __future__ import annotations

import re

from tests.builders import by_version, destination_rule, named, sidecar_node

from meshpilot.api.networking import DestinationRule
from meshpilot.mesh import index
from meshpilot.mesh.model import (
    Endpoint,
    InboundPort,
    MeshService,
    MeshSnapshot,
    ProxyNode,
)
from meshpilot.mesh.sources import UNKNOWN_SOURCE, node_source_id
from meshpilot.proxy.stats import KEPT_STATS
from meshpilot.telemetry.envoy_stats import (
    STATS_PARAMS,
    Histogram,
    InboundStat,
    OutboundStat,
    parse_json,
    split_cluster_stat,
    split_inbound_stat,
    split_outbound_stat,
)
from meshpilot.telemetry.istio import (
    HistValue,
    Point,
    ProxyIdentity,
    outbound_destination,
    relabel,
)
from meshpilot.telemetry.store import SeriesStore

HOST = "myapp.default.svc.cluster.local"
CLIENT = "client-v1|default|client|v1.2|client"
"""A source id (its version has a dot, as versions often do)."""
COUNTED = "meshpilot.inbound_8080.requests"
OK = "response_code.200.response_flags.-"
OUT = "meshpilot.outbound"
V2 = f"cluster.outbound|8080|v2|{HOST}"
DOC = {"stats": [
    {"name": f"{OUT}.requests.{OK}.grpc_status..{V2}", "value": 7},
    {"name": f"{OUT}.requests.response_code.503.response_flags.UH.grpc_status..{V2}",
     "value": 2},
    {"name": f"{OUT}.requests.response_code.500.response_flags.FI.grpc_status..{V2}",
     "value": 1},
    {"name": f"{OUT}.requests.response_code.404.response_flags.NR.grpc_status..cluster.",
     "value": 3},
    # the router's own per-cluster counts: not read (the logger counts every request)
    {"name": f"cluster.outbound|8080|v2|{HOST}.upstream_rq_200", "value": 7},
    {"name": f"cluster.outbound|8080|v2|{HOST}.external.upstream_rq_200", "value": 7},
    {"name": f"{COUNTED}.{OK}.source.{CLIENT}|none", "value": 4},
    {"name": f"{COUNTED}.{OK}.source.{CLIENT}|mtls", "value": 3},
    {"name": f"{COUNTED}.response_code.403.response_flags.-.source.{CLIENT}|mtls", "value": 2},
    {"name": f"{COUNTED}.response_code.500.response_flags.-.source.{UNKNOWN_SOURCE}|none",
     "value": 1},
    {"name": f"{COUNTED}.response_code.401.response_flags.-.source.{UNKNOWN_SOURCE}|mtls",
     "value": 6},
    {"name": f"{COUNTED}.response_code.400.response_flags.-.source.", "value": 1},
    {"name": f"{COUNTED}.response_code.0.response_flags.DC.source.{CLIENT}|mtls", "value": 5},
    {"histograms": {"supported_percentiles": [50], "details": [
        {"name": f"{OUT}.request_duration.{OK}.{V2}",
         "totals": [{"lower_bound": 3, "width": 0.1, "count": 5},
                    {"lower_bound": 60, "width": 1, "count": 4}]},
        {"name": f"{OUT}.response_bytes.{OK}.{V2}",
         "totals": [{"lower_bound": 480, "width": 10, "count": 7}]},
        {"name": f"cluster.outbound|8080|v2|{HOST}.upstream_rq_time",
         "totals": [{"lower_bound": 3, "width": 0.1, "count": 5}]},
        {"name": f"meshpilot.inbound_8080.request_duration.{OK}.source.{CLIENT}|mtls",
         "totals": [{"lower_bound": 0, "width": 1, "count": 2},
                    {"lower_bound": 25, "width": 1, "count": 3}]},
        {"name": f"meshpilot.inbound_8080.request_duration.response_code.403"
                 f".response_flags.-.source.{CLIENT}|mtls",
         "totals": [{"lower_bound": 0, "width": 1, "count": 2}]},
        {"name": f"meshpilot.inbound_8080.request_duration.{OK}.source.{UNKNOWN_SOURCE}|none",
         "totals": [{"lower_bound": 25, "width": 1, "count": 1}]},
        {"name": f"meshpilot.inbound_8080.request_bytes.{OK}.source.{CLIENT}|none",
         "totals": [{"lower_bound": 0, "width": 0, "count": 4}]},
    ]}},
]}


def _snapshot() -> MeshSnapshot:
    svc = MeshService(host=HOST, name="myapp", namespace="default", ports=())
    eps = (Endpoint(HOST, 8080, "127.10.0.2", 8080, {"app": "myapp", "version": "v2"},
                    workload="myapp-v2", has_sidecar=True, service_account="myapp"),
           Endpoint(HOST, 8080, "127.10.0.1", 8080, {"app": "myapp", "version": "v1"},
                    workload="myapp-v1", has_sidecar=True, service_account="myapp"))
    rule = named(DestinationRule, destination_rule("myapp", subsets=by_version("v2")))
    return MeshSnapshot(version=1, services={HOST: svc}, endpoints={HOST: eps},
                        destination_rules=(rule,))


def test_parse_detailed_json_and_names() -> None:
    raw = parse_json(DOC)
    assert raw.counters[f"cluster.outbound|8080|v2|{HOST}.upstream_rq_200"] == 7
    hist = raw.histograms[f"{OUT}.request_duration.{OK}.{V2}"]
    assert hist.count == 9
    assert hist.cumulative((1, 5, 50, 100)) == (0, 5, 5, 9, 9)
    assert split_cluster_stat(f"cluster.outbound|8080|v2|{HOST}.upstream_rq_200") == (
        f"outbound|8080|v2|{HOST}", "upstream_rq_200")
    assert split_cluster_stat(f"cluster.outbound|8080|v2|{HOST}.external.upstream_rq_200") \
        is None
    assert split_cluster_stat("cluster.inbound|8080||.upstream_rq_time") == (
        "inbound|8080||", "upstream_rq_time")
    assert split_inbound_stat(f"{COUNTED}.response_code.403.response_flags.-.source."
                              f"{CLIENT}|mtls") == (
        InboundStat("requests", "403", "-", "", 8080, f"{CLIENT}|mtls"))
    assert split_inbound_stat(f"meshpilot.inbound_9080.request_duration.{OK}.source."
                              f"{CLIENT}|none") == InboundStat(
        "request_duration", "200", "-", "", 9080, f"{CLIENT}|none")
    assert split_inbound_stat(f"{COUNTED}.response_code.0.response_flags.DC,UT.source.") == (
        InboundStat("requests", "0", "DC,UT", "", 8080, ""))  # no response, no route
    assert split_inbound_stat("http.inbound_8080.downstream_rq_4xx") is None
    assert split_outbound_stat(f"{OUT}.requests.response_code.503.response_flags.UH"
                               f".grpc_status.14.{V2}") == OutboundStat(
        "requests", "503", "UH", "14", f"outbound|8080|v2|{HOST}")
    assert split_outbound_stat(f"{OUT}.response_bytes.{OK}.cluster.") == OutboundStat(
        "response_bytes", "200", "-", "", "")
    assert split_outbound_stat(f"{COUNTED}.{OK}.source.{CLIENT}|none") is None


def test_the_admin_filter_reads_the_request_stats() -> None:
    wanted = re.compile(STATS_PARAMS["filter"])
    assert wanted.search(f"{COUNTED}.response_code.403.response_flags.-.source.{CLIENT}|mtls")
    assert wanted.search(f"{OUT}.requests.{OK}.grpc_status..{V2}")
    assert wanted.search(f"cluster.outbound|9000||{HOST}.upstream_cx_rx_bytes_total")
    # the clusters' request stats are counted by the loggers instead: not read
    assert not wanted.search("cluster.inbound|8080||.upstream_rq_time")
    assert not wanted.search(f"cluster.outbound|8080|v2|{HOST}.upstream_rq_200")
    assert not wanted.search(f"cluster.outbound|8080|v2|{HOST}.upstream_rq_body_size")
    assert not wanted.search("http.inbound_8080.downstream_rq_4xx")


def test_envoy_keeps_the_request_stats_of_both_sides() -> None:
    """The bootstrap's inclusion list lets the loggers' stats be made (a stat no pattern
    matches is never created)."""
    patterns = [re.compile(r) for r in KEPT_STATS]
    for name in (f"{OUT}.requests.{OK}.grpc_status..{V2}",
                 f"{OUT}.response_bytes.{OK}.{V2}",
                 f"meshpilot.inbound_8080.request_bytes.{OK}.source.{CLIENT}|none"):
        assert any(p.search(name) for p in patterns), name


def test_bin_ending_on_a_bound_counts_below_it() -> None:
    assert Histogram(((24, 1, 1), (25, 1, 1))).cumulative((25,)) == (1, 2)


def test_source_ids() -> None:
    """The workload (Deployment) name and the service account travel with the proxy and
    the endpoints; the pod name is the proxy's own."""
    node = sidecar_node("client-v1-0123456789-bcdfg", "127.10.0.3", workload="client-v1",
                        labels={"app": "client", "version": "v1"})
    assert node_source_id(node) == "client-v1|default|client|v1|default"
    sources = index.of(_snapshot()).sources
    assert "myapp-v1|default|myapp|v1|myapp" in sources
    assert "mesh-proxy|default|mesh-client|unknown|default" in sources


def _by(points: list[Point], metric: str, **want: str) -> list[Point]:
    return [p for p in points if p.metric == metric
            and all(dict(p.labels).get(k) == v for k, v in want.items())]


def _relabelled() -> list[Point]:
    node = sidecar_node("myapp-v2-0123456789-bcdfg", "127.10.0.2", workload="myapp-v2",
                        labels={"app": "myapp", "version": "v2"},
                        inbound=(InboundPort(8080, 40000, "http"),))
    identity = ProxyIdentity.from_node(node, "myapp-v2")
    return list(relabel(identity, node, parse_json(DOC), _snapshot()))


def test_relabel_source_and_destination_sides() -> None:
    points = _relabelled()
    (ok,) = _by(points, "istio_requests_total", reporter="source", response_code="200")
    labels = dict(ok.labels)
    assert ok.value == 7
    assert labels["destination_service"] == HOST
    assert labels["destination_version"] == "v2"  # the DestinationRule subset's label
    assert labels["destination_workload"] == "myapp-v2"  # its endpoints' Deployment
    assert labels["source_workload"] == "myapp-v2"
    assert labels["connection_security_policy"] == "unknown"
    (dest,) = _by(points, "istio_requests_total", reporter="destination",
                  source_workload="client-v1", connection_security_policy="none")
    d = dict(dest.labels)
    assert dest.value == 4 and d["source_version"] == "v1.2" and d["source_app"] == "client"
    assert d["destination_workload"] == "myapp-v2" and d["destination_version"] == "v2"
    assert d["destination_service_name"] == "myapp"
    assert d["source_principal"] == "unknown" and d["destination_principal"] == "unknown"
    # the same caller proved by its certificate: mutual_tls, with both identities
    (proved,) = _by(points, "istio_requests_total", reporter="destination",
                    source_workload="client-v1", connection_security_policy="mutual_tls",
                    response_code="200")
    p = dict(proved.labels)
    assert proved.value == 3
    assert p["source_principal"] == "spiffe://cluster.local/ns/default/sa/client"
    assert p["destination_principal"] == "spiffe://cluster.local/ns/default/sa/default"
    (unknown,) = _by(points, "istio_requests_total", reporter="destination",
                     response_code="500")
    u = dict(unknown.labels)
    assert u["source_workload"] == "unknown" and u["connection_security_policy"] == "none"
    (hist,) = _by(points, "istio_request_duration_milliseconds", reporter="source")
    assert hist.hist is not None and hist.hist.count == 9
    assert dict(hist.labels)["response_code"] == "200"
    assert not [p for p in points if "external" in p.raw]
    assert not [p for p in points if "upstream_rq" in p.raw]  # the logger's, not the router's


def test_source_side_requests_carry_envoys_response_flags() -> None:
    """Envoy's response flags as its access log documents them: ``UH`` no healthy
    upstream, ``FI`` a fault injected abort (answered by the client sidecar, never
    reaching the router's cluster counters), ``NR`` no route (no destination known: as
    Istio reports it, ``unknown``); the size histograms carry the code too."""
    points = _relabelled()
    flags = {(dict(p.labels)["response_code"], dict(p.labels)["response_flags"]): p
             for p in _by(points, "istio_requests_total", reporter="source")}
    assert {k: p.value for k, p in flags.items()} == {
        ("200", "-"): 7, ("503", "UH"): 2, ("500", "FI"): 1, ("404", "NR"): 3}
    assert dict(flags["503", "UH"].labels)["destination_version"] == "v2"
    unrouted = dict(flags["404", "NR"].labels)
    assert unrouted["destination_service"] == "unknown"
    assert unrouted["destination_workload"] == "unknown"
    (sizes,) = _by(points, "istio_response_bytes", reporter="source")
    assert dict(sizes.labels)["response_code"] == "200" and sizes.hist is not None
    assert sizes.hist.count == 7


def test_destination_side_carries_flags_and_codes_on_histograms() -> None:
    """A request its caller hung up on is ``DC`` with code ``0`` (Envoy's downstream
    connection termination); durations and sizes are per code, as Istio's are."""
    points = _relabelled()
    (hung_up,) = _by(points, "istio_requests_total", reporter="destination",
                     response_flags="DC")
    assert dict(hung_up.labels)["response_code"] == "0" and hung_up.value == 5
    (sizes,) = _by(points, "istio_request_bytes", reporter="destination")
    assert dict(sizes.labels)["source_workload"] == "client-v1"
    assert dict(sizes.labels)["response_code"] == "200"


def test_requests_the_sidecar_refused_count_at_the_destination() -> None:
    """A 403 (RBAC) or 401 (JWT) the inbound sidecar answered itself counts like any
    other answer: with its code, its caller, and its duration."""
    points = _relabelled()
    (denied,) = _by(points, "istio_requests_total", reporter="destination",
                    response_code="403")
    d = dict(denied.labels)
    assert denied.value == 2
    assert (d["source_workload"], d["connection_security_policy"]) == (
        "client-v1", "mutual_tls")
    assert d["source_principal"] == "spiffe://cluster.local/ns/default/sa/client"
    durations = _by(points, "istio_request_duration_milliseconds", reporter="destination",
                    source_workload="client-v1")
    assert sorted((dict(h.labels)["response_code"], h.hist.count if h.hist else None)
                  for h in durations) == [("200", 5), ("403", 2)]
    assert durations[0].hist is not None and durations[0].hist.buckets[:2] == (0, 2)
    # over mTLS from no known source: still mutual_tls, the pod's own principal
    (unproved,) = _by(points, "istio_requests_total", reporter="destination",
                      response_code="401")
    u = dict(unproved.labels)
    assert u["source_workload"] == "unknown" and u["source_principal"] == "unknown"
    assert u["connection_security_policy"] == "mutual_tls"
    assert u["destination_principal"] == "spiffe://cluster.local/ns/default/sa/default"
    # answered before any route was picked: nothing is known of the caller
    (malformed,) = _by(points, "istio_requests_total", reporter="destination",
                       response_code="400")
    assert dict(malformed.labels)["connection_security_policy"] == "unknown"


def test_outbound_destination_without_a_subset_keeps_only_shared_labels() -> None:
    node = ProxyNode(id="x", kind="client", namespace="default", ip="127.0.0.1")
    dest = outbound_destination(_snapshot(), node, f"outbound|8080||{HOST}")
    assert dest is not None and dest.protocol == "HTTP"
    assert dest.labels["destination_version"] == "unknown"  # v1 and v2 pods
    assert dest.labels["destination_app"] == "myapp"
    assert dest.labels["destination_canonical_service"] == "myapp"
    assert dest.labels["destination_canonical_revision"] == "latest"
    assert dest.labels["destination_workload"] == "unknown"
    assert dest.labels["destination_cluster"] == "unknown"
    assert dest.labels["destination_service_namespace"] == "default"
    unknown_subset = outbound_destination(_snapshot(), node, f"outbound|8080|v9|{HOST}")
    assert unknown_subset is not None
    assert unknown_subset.labels["destination_version"] == "unknown"  # matched every pod
    assert outbound_destination(_snapshot(), node, f"outbound|http|v2|{HOST}") is None
    assert outbound_destination(_snapshot(), node, f"inbound|8080||{HOST}") is None


def _counter(raw: str, value: float) -> Point:
    return Point("istio_requests_total", (("response_code", "200"),), raw, value=value)


def _values(store: SeriesStore) -> dict[str, float]:
    return {proxy: v for proxy, _, _, v in store.series()}  # type: ignore[misc]


def test_counters_never_go_backwards() -> None:
    store = SeriesStore()
    store.update("p", 100, [_counter("a", 10)], now=0)
    store.update("p", 100, [_counter("a", 15)], now=1)
    assert _values(store) == {"p": 15}
    store.update("p", 100, [_counter("a", 3)], now=2)  # a reset seen on the stat
    assert _values(store) == {"p": 18}
    store.update("p", 200, [_counter("a", 20)], now=3)  # new pid: restarted, yet higher
    assert _values(store) == {"p": 38}
    store.update("p", 200, [], now=4)  # the stat vanished (cluster removed): value kept
    assert _values(store) == {"p": 38}
    assert store.resets == 2


def test_histogram_resets() -> None:
    store = SeriesStore()
    point = Point("istio_request_duration_milliseconds", (), "h",
                  hist=HistValue((1, 3, 4), 10.0))
    store.update("p", 1, [point], now=0)
    store.update("p", 1, [Point(point.metric, (), "h", hist=HistValue((0, 1, 1), 2.0))],
                 now=1)
    ((_, _, _, value),) = list(store.series())
    assert isinstance(value, HistValue)
    assert value.buckets == (1, 4, 5) and value.sum == 12.0


def test_gone_proxies_are_kept_for_the_retention_then_dropped() -> None:
    store = SeriesStore(retention=300)
    store.update("gone", 1, [_counter("a", 5)], now=0)
    store.update("live", 1, [_counter("a", 5)], now=0)
    store.update("live", 1, [_counter("a", 6)], now=299)
    assert store.expire(now=299) == []
    store.update("live", 1, [_counter("a", 7)], now=301)
    assert store.expire(now=301) == ["gone"]
    assert set(_values(store)) == {"live"}

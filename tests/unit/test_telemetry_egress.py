"""Requests to hosts outside the registry as Istio reports them at the source (istio.io
metrics reference; "Accessing External Services" shows them as
``destination_service_name="PassthroughCluster"`` / ``"BlackHoleCluster"``): the
cluster's name is the destination service, nothing is known of a workload there, and a
blackholed request counts as the 502 the client got (the outbound logger records the
answered code), not Envoy's internal 503."""

from __future__ import annotations

import re

from tests.builders import sidecar_node

from meshpilot.mesh.model import MeshSnapshot
from meshpilot.proxy.stats import KEPT_STATS
from meshpilot.telemetry.envoy_stats import STATS_PARAMS, parse_json
from meshpilot.telemetry.istio import ProxyIdentity, relabel

NODE = sidecar_node("sleep-0123456789-bcdfg", "127.10.0.3", workload="sleep",
                    labels={"app": "sleep"})
OUT = "meshpilot.outbound.requests.response_code"
STATS = {
    f"{OUT}.200.response_flags.-.grpc_status.0.cluster.PassthroughCluster": 3,
    f"{OUT}.502.response_flags.UH.grpc_status.14.cluster.BlackHoleCluster": 2,
    # the router's own cluster counts: not read (the logger counts every request)
    "cluster.BlackHoleCluster.upstream_rq_503": 2,
}


def test_passthrough_and_blackhole_requests_become_istio_series() -> None:
    raw = parse_json({"stats": [{"name": n, "value": v} for n, v in STATS.items()]})
    points = [p for p in relabel(ProxyIdentity.from_node(NODE), NODE, raw,
                                 MeshSnapshot(version=1, services={}, endpoints={}))
              if p.metric == "istio_requests_total"]
    got = {(dict(p.labels)["destination_service_name"], dict(p.labels)["response_code"]):
           (p.value, dict(p.labels)) for p in points}
    assert set(got) == {("PassthroughCluster", "200"), ("BlackHoleCluster", "502")}
    value, labels = got[("BlackHoleCluster", "502")]
    assert value == 2
    assert labels["reporter"] == "source" and labels["source_workload"] == "sleep"
    assert labels["destination_service"] == "BlackHoleCluster"
    assert labels["destination_workload"] == "unknown"
    assert labels["response_flags"] == "UH"
    assert got[("PassthroughCluster", "200")][0] == 3


def test_envoy_keeps_and_the_scraper_asks_for_those_stats() -> None:
    kept = [re.compile(p) for p in KEPT_STATS]
    asked = re.compile(STATS_PARAMS["filter"])
    for name in STATS:
        if name.startswith("meshpilot."):
            assert any(k.search(name) for k in kept), name
            assert asked.search(name), name

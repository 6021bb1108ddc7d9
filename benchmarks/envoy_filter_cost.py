"""What an EnvoyFilter costs: building the selected proxies' config, and Envoy's check at apply.

A mesh of S services (default 1,000; each with subsets v1/v2 and a weighted
VirtualService) and P sidecars of one namespace (default 50). Side by side, in the same
process, for the same proxies:

- ``no EnvoyFilter``: the baseline (and what the push is then: nothing changes);
- ``cluster MERGE``: a connect timeout on one service's clusters, for every sidecar;
- ``rate limit``: Istio's local rate limit task (an HTTP filter on every sidecar's inbound
  listener, its bucket per route on the inbound virtual host).

Per case: milliseconds per proxy for ``ProxyConfigBuilder.config_for`` once the class is
built (the first proxy's build is left out), and, for the rate limit, the time of the
apply-time check on one proxy (build, patch, ``envoy --mode validate``).

Run:  .venv/bin/python benchmarks/envoy_filter_cost.py [--services 1000] [--proxies 50]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import yaml

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.builder import SnapshotBuilder
from meshpilot.mesh.model import InboundPort, MeshSnapshot, ProxyNode, WorkloadInstance
from meshpilot.server.envoy_filter_check import EnvoyFilterCheck
from meshpilot.validation import plan_apply
from meshpilot.xds import ProxyConfigBuilder

NET = "networking.istio.io"
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
HCM = "envoy.filters.network.http_connection_manager"
BUCKET = {"max_tokens": 4, "tokens_per_fill": 4, "fill_interval": "60s"}
CLUSTER_MERGE = [{"applyTo": "CLUSTER", "match": {"context": "SIDECAR_OUTBOUND", "cluster": {
    "service": "svc0000.default.svc.cluster.local"}},
    "patch": {"operation": "MERGE", "value": {"connect_timeout": "0.25s"}}}]
RATE_LIMIT = [
    {"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND", "listener": {
        "filterChain": {"filter": {"name": HCM}}}},
     "patch": {"operation": "INSERT_BEFORE", "value": {
         "name": "envoy.filters.http.local_ratelimit",
         "typed_config": {"@type": LRL, "stat_prefix": "http_local_rate_limiter"}}}},
    {"applyTo": "HTTP_ROUTE", "match": {"context": "SIDECAR_INBOUND", "routeConfiguration": {
        "vhost": {"name": "inbound|http|9080", "route": {"action": "ANY"}}}},
     "patch": {"operation": "MERGE", "value": {"typed_per_filter_config": {
         "envoy.filters.http.local_ratelimit": {
             "@type": LRL, "stat_prefix": "http_local_rate_limiter", "token_bucket": BUCKET}}}}},
]


def _filter(patches: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{NET}/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": "bench", "namespace": "default"},
            "spec": {"configPatches": patches}}


def mesh(services: int, patches: list[dict[str, Any]] | None) -> MeshSnapshot:
    objects: list[tuple[ObjectKey, dict[str, Any]]] = []
    pods = []
    for i in range(services):
        name = f"svc{i:04d}"
        meta = {"name": name, "namespace": "default"}
        objects += [
            (ObjectKey("", "Service", "default", name), {
                "apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
                    "selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]}}),
            (ObjectKey(NET, "DestinationRule", "default", name), {
                "apiVersion": f"{NET}/v1", "kind": "DestinationRule", "metadata": meta,
                "spec": {"host": name, "subsets": [
                    {"name": v, "labels": {"version": v}} for v in ("v1", "v2")]}}),
            (ObjectKey(NET, "VirtualService", "default", name), {
                "apiVersion": f"{NET}/v1", "kind": "VirtualService", "metadata": meta,
                "spec": {"hosts": [name], "http": [{"route": [
                    {"destination": {"host": name, "subset": "v1"}, "weight": 90},
                    {"destination": {"host": name, "subset": "v2"}, "weight": 10}]}]}}),
        ]
        pods += [WorkloadInstance(name=f"{name}-{v}", namespace="default",
                                  ip=f"127.40.{i // 200}.{(i % 200) + (v == 'v2') * 50}",
                                  labels={"app": name, "version": v},
                                  ports=(InboundPort(9080, 18080, "http"),)) for v in ("v1", "v2")]
    if patches is not None:
        objects.append((ObjectKey(NET, "EnvoyFilter", "default", "bench"), _filter(patches)))
    return SnapshotBuilder().build(1, objects, pods)


def proxy(i: int) -> ProxyNode:
    return ProxyNode(id=f"sidecar~127.41.0.{i}~p{i}.default", kind="sidecar",
                     namespace="default", ip=f"127.41.0.{i % 250 + 1}", workload=f"p{i}",
                     labels={"app": f"p{i}"}, inbound=(InboundPort(9080, 40000),))


def per_proxy_ms(snapshot: MeshSnapshot, proxies: int) -> float:
    builder = ProxyConfigBuilder()
    builder.config_for(snapshot, proxy(0))  # the class's shared sets
    start = time.perf_counter()
    for i in range(1, proxies + 1):
        builder.config_for(snapshot, proxy(i))
    return (time.perf_counter() - start) / proxies * 1000


def check_seconds(snapshot: MeshSnapshot) -> float:
    plan = plan_apply([("bench.yaml", yaml.safe_dump(_filter(RATE_LIMIT)))], [])
    checker = EnvoyFilterCheck(lambda: snapshot, lambda: [proxy(1)])
    start = time.perf_counter()
    found = checker(plan)
    assert not [d for d in found if d.is_error], found
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--proxies", type=int, default=50)
    args = parser.parse_args()
    print(f"EnvoyFilter cost: {args.services} services, {args.proxies} sidecars selected\n")
    print(f"{'case':<20}{'config_for, ms/proxy':>24}")
    for label, patches in (("no EnvoyFilter", None), ("cluster MERGE", CLUSTER_MERGE),
                           ("rate limit", RATE_LIMIT)):
        print(f"{label:<20}{per_proxy_ms(mesh(args.services, patches), args.proxies):>24.1f}")
    seconds = check_seconds(mesh(args.services, None))
    print(f"\napply-time check of the rate limit on one proxy (build, patch, envoy "
          f"--mode validate): {seconds:.2f} s")


if __name__ == "__main__":
    main()

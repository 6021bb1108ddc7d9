"""Wildcard ServiceEntry hosts in the translation: a service, clusters and a routing
scope per pattern, and the outbound listener computing scope keys only when a proxy
knows a wildcard (Istio's "Egress using Wildcard Hosts": a covered host reaches the
entry's endpoints; an exact host under the same suffix keeps its own routes)."""

from __future__ import annotations

from typing import Any

import yaml
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.builder import build_snapshot
from meshpilot.mesh.model import ProxyNode
from meshpilot.xds.translate import (
    TYPE_CLUSTER,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SCOPED_ROUTE,
    build_resources,
)
from meshpilot.xds.translate.wildcards import SCOPE_HEADER, key_expression, scope_rules

NODE = ProxyNode(id="c", kind="client", namespace="default", ip="127.0.0.1")


def entry(name: str, hosts: list[str], resolution: str, **spec: Any
          ) -> tuple[ObjectKey, dict[str, Any]]:
    body = yaml.safe_load(f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  resolution: {resolution}
  ports: [{{number: 80, name: http, protocol: HTTP}}]
""")
    body["spec"].update(hosts=hosts, **spec)
    return ObjectKey("networking.istio.io", "ServiceEntry", "default", name), body


def manager(res: dict[str, Any]) -> hcm.HttpConnectionManager:
    out = hcm.HttpConnectionManager()
    res[TYPE_LISTENER]["outbound_http_proxy"].filter_chains[0].filters[0].typed_config \
        .Unpack(out)
    return out


def test_a_wildcard_with_endpoints_is_a_service_with_its_own_scope() -> None:
    snap = build_snapshot(1, [
        entry("w", ["*.example.com"], "STATIC", endpoints=[{"address": "10.0.0.1"}]),
        entry("e", ["api.example.com"], "DNS"),
        entry("none", ["*.passthrough.org"], "NONE")])
    assert "*.example.com" in snap.services
    # resolution NONE: passed through to the host each request names (Istio's "Egress
    # using Wildcard Hosts"), by a dynamic forward proxy cluster
    assert snap.services["*.passthrough.org"].resolution == "NONE"
    res = build_resources(snap, NODE)
    passthrough = res[TYPE_CLUSTER]["outbound|80||*.passthrough.org"]
    assert passthrough.cluster_type.name == "envoy.clusters.dynamic_forward_proxy"
    assert not passthrough.HasField("load_assignment")
    assert "outbound|80||*.example.com" in res[TYPE_CLUSTER]
    assert res[TYPE_SCOPED_ROUTE]["*.example.com"].route_configuration_name \
        == "outbound|*.example.com"
    (vhost,) = res[TYPE_ROUTE]["outbound|*.example.com"].virtual_hosts
    assert "*.example.com" in vhost.domains
    listener = manager(res)
    assert listener.scoped_routes.scope_key_builder.fragments[0] \
        .header_value_extractor.name == SCOPE_HEADER
    assert [f.name for f in listener.http_filters][-2:] == [
        "envoy.filters.http.header_mutation", "envoy.filters.http.router"]
    assert scope_rules(snap, NODE) == (("*.passthrough.org", ()),
                                       ("*.example.com", ("api.example.com",)))


def test_the_key_prefers_exact_names_then_the_most_specific_pattern() -> None:
    expr = key_expression((("*.a.example.com", ()), ("*.example.com", ("api.example.com",))))
    exact = expr.index("api\\\\.example\\\\.com")
    specific, wide = expr.index("'*.a.example.com'"), expr.index("'*.example.com'")
    assert exact < specific < wide
    assert expr.endswith(": (request.host)))")


def test_no_wildcard_keeps_the_listener_keyed_by_host() -> None:
    snap = build_snapshot(1, [entry("e", ["api.example.com"], "DNS")])
    listener = manager(build_resources(snap, NODE))
    assert listener.scoped_routes.scope_key_builder.fragments[0] \
        .header_value_extractor.name == "host"
    assert "meshpilot.wildcard_scope" not in [
        e.name for e in listener.early_header_mutation_extensions]  # no expression to run


def test_a_destination_a_wildcard_covers_goes_to_the_entrys_cluster() -> None:
    """Istio sends a route's destination that only a wildcard entry covers to that
    entry's cluster (the most specific pattern's)."""
    vs_key = ObjectKey("networking.istio.io", "VirtualService", "default", "wiki")
    vs_body = yaml.safe_load("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wiki, namespace: default}
spec:
  hosts: ["*.example.com"]
  http:
  - match: [{headers: {":authority": {prefix: "en."}}}]
    route: [{destination: {host: en.a.example.com}}]
  - route: [{destination: {host: www.example.com}}]
""")
    snap = build_snapshot(1, [
        entry("w", ["*.example.com"], "STATIC", endpoints=[{"address": "10.0.0.1"}]),
        entry("a", ["*.a.example.com"], "STATIC", endpoints=[{"address": "10.0.0.2"}]),
        (vs_key, vs_body)])
    (vhost,) = build_resources(snap, NODE)[TYPE_ROUTE]["outbound|*.example.com"].virtual_hosts
    assert [r.route.cluster for r in vhost.routes] == [
        "outbound|80||*.a.example.com", "outbound|80||*.example.com"]

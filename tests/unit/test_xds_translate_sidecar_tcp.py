"""A sidecar's outbound TCP and TLS listeners → the mesh's ``tcp`` and ``tls`` routes,
asserted on the protobufs. Cases after Istio's "TCP Traffic Shifting" task done in the
mesh (tcp-echo, all to v1, then 80/20 by weight), its VirtualService reference for
``tcp`` / ``tls`` match semantics (``port``, ``sourceLabels``, ``gateways: [mesh]``,
``sniHosts``) and its sidecar's defaults (a TCP port with no route goes to the service
itself; a TLS port with SNI routes closes a connection whose SNI none names)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import yaml
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.sni_dynamic_forward_proxy.v3 import (
    sni_dynamic_forward_proxy_pb2 as sni_dfp,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshpilot.api.networking import VirtualService
from meshpilot.mesh.model import (
    MeshService,
    MeshSnapshot,
    Named,
    ProxyNode,
    ServicePort,
    TcpOutbound,
    node_from_metadata,
    node_to_metadata,
)
from meshpilot.xds.config_builder import ProxyConfigBuilder
from meshpilot.xds.resources import PreparedResource
from meshpilot.xds.translate import TYPE_LISTENER, build_resources
from meshpilot.xds.translate.sidecar_tcp import listeners
from meshpilot.xds.types import LISTENER

ECHO = "tcp-echo.default.svc.cluster.local"
FRONT = "tls-front.default.svc.cluster.local"
WEB = "web.default.svc.cluster.local"
SERVICES = {
    ECHO: MeshService(ECHO, "tcp-echo", "default", (ServicePort(9000, "tcp", "TCP"),)),
    FRONT: MeshService(FRONT, "tls-front", "default", (ServicePort(8443, "tls", "TLS"),)),
    "tls-a.default.svc.cluster.local": MeshService(
        "tls-a.default.svc.cluster.local", "tls-a", "default",
        (ServicePort(8443, "tls", "TLS"),)),
    WEB: MeshService(WEB, "web", "default", (ServicePort(8080, "http"),)),
}
NODE = ProxyNode(id="sleep", kind="sidecar", namespace="default", ip="127.10.0.9",
                 labels={"app": "sleep"},
                 tcp_outbound=(TcpOutbound(ECHO, 9000, 15100), TcpOutbound(FRONT, 8443, 15101)))


def vs(body: str, hosts: str = "[tcp-echo]", name: str = "tcp-echo") -> Named[VirtualService]:
    obj = VirtualService.model_validate(yaml.safe_load(f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: {hosts}
  {body}"""))
    return Named("default", name, obj)


def snapshot(*routes: Named[VirtualService], version: int = 1) -> MeshSnapshot:
    return MeshSnapshot(version=version, services=SERVICES, endpoints={},
                        virtual_services=tuple(routes))


def by_name(snap: MeshSnapshot, node: ProxyNode = NODE) -> dict[str, listener_pb2.Listener]:
    return {listener.name: listener for listener in listeners(snap, node)}


def proxy_of(listener: listener_pb2.Listener, chain: int = 0) -> tcp_proxy_pb2.TcpProxy:
    (network_filter,) = listener.filter_chains[chain].filters
    out = tcp_proxy_pb2.TcpProxy()
    assert network_filter.typed_config.Unpack(out)
    return out


def split(v1: int, v2: int, match: str = "") -> str:
    return (f"tcp: [{{{match}route: [{{destination: {{host: tcp-echo, subset: v1}}, "
            f"weight: {v1}}}, {{destination: {{host: tcp-echo, subset: v2}}, weight: {v2}}}]}}]")


def test_each_listed_service_port_listens_on_the_pod_address_and_goes_to_the_service(
        ) -> None:
    got = by_name(snapshot())
    assert set(got) == {f"outbound_tcp|9000|{ECHO}", f"outbound_tcp|8443|{FRONT}"}
    echo = got[f"outbound_tcp|9000|{ECHO}"]
    assert (echo.address.socket_address.address, echo.address.socket_address.port_value) \
        == ("127.10.0.9", 15100)
    assert proxy_of(echo).cluster == f"outbound|9000||{ECHO}"
    front = got[f"outbound_tcp|8443|{FRONT}"]
    assert not front.listener_filters  # no SNI route: opaque, no TLS inspector
    assert proxy_of(front).cluster == f"outbound|8443||{FRONT}"


def test_a_weighted_tcp_route_splits_connections() -> None:
    echo = by_name(snapshot(vs(split(80, 20))))[f"outbound_tcp|9000|{ECHO}"]
    weighted = proxy_of(echo).weighted_clusters.clusters
    assert [(c.name, c.weight) for c in weighted] == [
        (f"outbound|9000|v1|{ECHO}", 80), (f"outbound|9000|v2|{ECHO}", 20)]
    all_v1 = by_name(snapshot(vs(split(100, 0))))[f"outbound_tcp|9000|{ECHO}"]
    assert proxy_of(all_v1).cluster == f"outbound|9000|v1|{ECHO}"  # weight 0 dropped


def test_matches_apply_by_port_source_labels_and_gateways() -> None:
    def cluster(match: str, node: ProxyNode = NODE) -> str:
        body = (f"tcp: [{{match: [{match}], route: [{{destination: {{host: tcp-echo, "
                "subset: v2}}]}, {route: [{destination: {host: tcp-echo, subset: v1}}]}]")
        return proxy_of(by_name(snapshot(vs(body)), node)[f"outbound_tcp|9000|{ECHO}"]).cluster

    v1, v2 = f"outbound|9000|v1|{ECHO}", f"outbound|9000|v2|{ECHO}"
    assert cluster("{port: 9000}") == v2
    assert cluster("{port: 9001}") == v1
    assert cluster("{sourceLabels: {app: sleep}}") == v2
    assert cluster("{sourceLabels: {app: other}}") == v1
    assert cluster("{sourceLabels: {app: other}}", replace(NODE, labels={"app": "other"})) == v2
    assert cluster("{gateways: [mesh]}") == v2
    assert cluster("{gateways: [istio-system/public]}") == v1
    # subnets are held against the pod's address (127.10.0.9): the source of all its
    # app's connections, and the address the app connected to (Istio's L4 match)
    assert cluster("{destinationSubnets: [10.0.0.0/8]}") == v1
    assert cluster("{sourceSubnet: 10.1.0.0/16}") == v1
    assert cluster("{destinationSubnets: [10.0.0.0/8, 127.10.0.0/16]}") == v2
    assert cluster("{sourceSubnet: 127.10.0.9}") == v2
    assert cluster("{sourceSubnet: 127.10.0.9, destinationSubnets: [10.0.0.0/8]}") == v1


def test_a_route_bound_to_a_gateway_only_is_not_the_mesh_s() -> None:
    bound = vs("gateways: [istio-system/public]\n  " + split(0, 100))
    echo = by_name(snapshot(bound))[f"outbound_tcp|9000|{ECHO}"]
    assert proxy_of(echo).cluster == f"outbound|9000||{ECHO}"


TLS_ROUTES = """tls:
  - match: [{port: 8443, sniHosts: [a.example.com]}]
    route: [{destination: {host: tls-a}}]
  - match: [{sniHosts: [b.example.com, a.example.com]}]
    route: [{destination: {host: tls-front}}]
  - match: [{sniHosts: [c.example.com], sourceLabels: {app: other}}]
    route: [{destination: {host: tls-a}}]"""


def test_tls_routes_pick_the_destination_by_sni() -> None:
    routes = vs(TLS_ROUTES, hosts="[tls-front, a.example.com, b.example.com, c.example.com]",
                name="tls-front")
    front = by_name(snapshot(routes))[f"outbound_tcp|8443|{FRONT}"]
    assert [f.name for f in front.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    chains = [(list(c.filter_chain_match.server_names), proxy_of(front, i).cluster)
              for i, c in enumerate(front.filter_chains)]
    # the first match keeps a.example.com; the third does not apply to app=sleep; no
    # catch-all chain: a connection with another SNI is closed
    assert chains == [(["a.example.com"], "outbound|8443||tls-a.default.svc.cluster.local"),
                      (["b.example.com"], f"outbound|8443||{FRONT}")]


def test_the_node_carries_its_tcp_ports_through_its_metadata() -> None:
    assert node_from_metadata(NODE.id, node_to_metadata(NODE)) == NODE


def listener_set(builder: ProxyConfigBuilder, snap: MeshSnapshot) -> Any:
    return builder.config_for(snap, NODE)[LISTENER]


def test_the_config_builder_gives_what_build_resources_gives_and_rebuilds_on_a_weight_change(
        ) -> None:
    builder = ProxyConfigBuilder()
    first = snapshot(vs(split(100, 0)))
    got = listener_set(builder, first)
    expected = build_resources(first, NODE)[TYPE_LISTENER]
    assert {n: e.version for n, e in got.items()} == {
        n: PreparedResource.of(n, m).version for n, m in expected.items()}
    assert set(got) >= {f"outbound_tcp|9000|{ECHO}", f"outbound_tcp|8443|{FRONT}"}

    # an unrelated change (another service's routes) rebuilds no TCP listener
    builds = builder.builds["tcp"]
    unrelated = snapshot(vs(split(100, 0)), vs("http: [{route: [{destination: {host: web}}]}]",
                                               hosts="[web]", name="web"), version=2)
    listener_set(builder, unrelated)
    assert builder.builds["tcp"] == builds

    # a weight change moves the one listener of that service, and only it
    before = listener_set(builder, unrelated)
    after = listener_set(builder, snapshot(vs(split(80, 20)), version=3))
    moved = {n for n in after if before.get(n) is not after[n]}
    assert moved == {f"outbound_tcp|9000|{ECHO}"}


API = "api.example.com"
WILD = "*.wiki.test"


def entries(*routes: Named[VirtualService]) -> MeshSnapshot:
    services = {
        API: MeshService(API, API, "egress", (ServicePort(27017, "mongo", "TCP"),),
                         origin="ServiceEntry", location="MESH_EXTERNAL", resolution="DNS"),
        WILD: MeshService(WILD, WILD, "egress", (ServicePort(443, "https", "HTTPS"),),
                          origin="ServiceEntry", location="MESH_EXTERNAL",
                          resolution="NONE"),
    }
    return MeshSnapshot(version=1, services=services, endpoints={},
                        virtual_services=tuple(routes))


ENTRY_NODE = replace(NODE, tcp_outbound=(TcpOutbound(API, 27017, 15102),
                                         TcpOutbound(WILD, 443, 15103)))


def test_service_entry_hosts_get_listeners_as_services_do() -> None:
    """Istio's "Accessing External Services" with a TCP port: the entry's port is
    forwarded to its cluster, and a mesh ``tcp`` route on the entry's host applies."""
    got = by_name(entries(), ENTRY_NODE)
    assert proxy_of(got[f"outbound_tcp|27017|{API}"]).cluster == f"outbound|27017||{API}"
    routed = vs("tcp: [{route: [{destination: {host: api.example.com, subset: v2}}]}]",
                hosts=f"[{API}]", name="api")
    got = by_name(entries(routed), ENTRY_NODE)
    assert proxy_of(got[f"outbound_tcp|27017|{API}"]).cluster == f"outbound|27017|v2|{API}"


def test_a_wildcard_entry_resolved_none_passes_tls_through_by_sni() -> None:
    """Istio's "Egress using Wildcard Hosts": the names the pattern covers are resolved
    from the SNI and connected to on the entry's port; a tls route's exact SNI name is
    more specific and keeps its own destination."""
    listener = by_name(entries(), ENTRY_NODE)[f"outbound_tcp|443|{WILD}"]
    assert [f.name for f in listener.listener_filters] == [
        "envoy.filters.listener.tls_inspector"]
    (chain,) = listener.filter_chains
    assert list(chain.filter_chain_match.server_names) == [WILD]
    sni, proxy = chain.filters
    config = sni_dfp.FilterConfig()
    assert sni.typed_config.Unpack(config) and config.port_value == 443
    assert proxy_of_filter(proxy).cluster == f"outbound|443||{WILD}"

    routed = vs("tls: [{match: [{sniHosts: [en.wiki.test]}], "
                "route: [{destination: {host: api.example.com}}]}]",
                hosts='["*.wiki.test"]', name="wiki")
    listener = by_name(entries(routed), ENTRY_NODE)[f"outbound_tcp|443|{WILD}"]
    assert [list(c.filter_chain_match.server_names) for c in listener.filter_chains] == [
        ["en.wiki.test"], [WILD]]


def proxy_of_filter(network_filter: Any) -> tcp_proxy_pb2.TcpProxy:
    out = tcp_proxy_pb2.TcpProxy()
    assert network_filter.typed_config.Unpack(out)
    return out

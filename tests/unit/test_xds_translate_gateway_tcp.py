"""The ingress gateway's TCP servers → listeners forwarding by VirtualService ``tcp``
routes, asserted on the protobufs. Cases after Istio's "TCP Traffic Shifting" task
(tcp-echo: a TCP server on the gateway, all to v1, then 80/20) and its Gateway reference
(TLS termination on a TLS port forwards by tcp routes)."""

from __future__ import annotations

from dataclasses import replace

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from tests.unit.test_xds_translate_gateway_tls import (
    NODE,
    gateway,
    route,
    snapshot,
    tls_secret,
)

from meshpilot.mesh.model import MeshService, MeshSnapshot, ServicePort
from meshpilot.xds.translate.gateway import gateway_resources

ECHO = "tcp-echo.default.svc.cluster.local"
TCP_NODE = replace(NODE, gateway_ports={**NODE.gateway_ports, 31400: 18400, 31401: 18401})
TCP_SERVER = """\
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
"""
ALL_V1 = "tcp: [{match: [{port: 31400}], route: [{destination: {host: tcp-echo, subset: v1}}]}]"
SPLIT = ("tcp: [{match: [{port: 31400}], route: ["
         "{destination: {host: tcp-echo, subset: v1}, weight: 80}, "
         "{destination: {host: tcp-echo, subset: v2}, weight: 20}]}]")


def with_echo(snap: MeshSnapshot) -> MeshSnapshot:
    echo = MeshService(ECHO, "tcp-echo", "default", (ServicePort(9000, "tcp", "TCP"),))
    return replace(snap, services={**snap.services, ECHO: echo})


def proxy_of(listener: listener_pb2.Listener, chain: int = 0) -> tcp_proxy_pb2.TcpProxy:
    (network_filter,) = listener.filter_chains[chain].filters
    out = tcp_proxy_pb2.TcpProxy()
    assert network_filter.typed_config.Unpack(out)
    return out


def test_a_tcp_server_forwards_to_the_route_destination() -> None:
    built = gateway_resources(with_echo(snapshot(
        gateway(TCP_SERVER), route('["*"]', ALL_V1, name="tcp-echo"))), TCP_NODE)
    assert built.problems == ()
    (listener,) = built.listeners
    assert listener.name == "gateway_31400"
    assert listener.address.socket_address.port_value == 18400
    assert not listener.listener_filters  # no TLS inspector: plain TCP
    assert proxy_of(listener).cluster == f"outbound|9000|v1|{ECHO}"


def test_weighted_tcp_routes_split_connections() -> None:
    built = gateway_resources(with_echo(snapshot(
        gateway(TCP_SERVER), route('["*"]', SPLIT, name="tcp-echo"))), TCP_NODE)
    weighted = proxy_of(built.listeners[0]).weighted_clusters.clusters
    assert [(c.name, c.weight) for c in weighted] == [
        (f"outbound|9000|v1|{ECHO}", 80), (f"outbound|9000|v2|{ECHO}", 20)]


def test_without_a_route_nothing_listens_and_the_problem_is_said() -> None:
    narrow = TCP_SERVER.replace('["*"]', "[tcp.example.com]")
    for server, routes in ((TCP_SERVER, ()),
                           (narrow, (route("[web.example.com]", ALL_V1, name="elsewhere"),)),
                           (TCP_SERVER, (route('["*"]', ALL_V1.replace("31400", "31401"),
                                               name="other-port"),))):
        built = gateway_resources(with_echo(snapshot(gateway(server), *routes)), TCP_NODE)
        assert built.listeners == ()
        (problem,) = built.problems
        assert "tcp route" in problem.message and problem.port == 31400


def test_destination_subnets_are_held_against_the_gateway_s_own_address() -> None:
    """Istio's L4MatchAttributes.destinationSubnets: the destination IP of a connection
    to the gateway is the gateway's address, so a match on another block never applies
    and one on a block holding it does; the first route that applies wins."""
    body = ("tcp: [{{match: [{{port: 31400, destinationSubnets: [{net}]}}], "
            "route: [{{destination: {{host: tcp-echo, subset: v2}}}}]}}, "
            "{{route: [{{destination: {{host: tcp-echo, subset: v1}}}}]}}]")
    for net, subset in (("10.0.0.0/8", "v1"), (f"{TCP_NODE.ip}/32", "v2"),
                        ("127.0.0.0/8", "v2")):
        built = gateway_resources(with_echo(snapshot(
            gateway(TCP_SERVER), route('["*"]', body.format(net=net), name="tcp-echo"))),
            TCP_NODE)
        assert built.problems == ()
        assert len(built.listeners[0].filter_chains) == 1
        assert proxy_of(built.listeners[0]).cluster == f"outbound|9000|{subset}|{ECHO}", net


def ranges(chain: object) -> list[str]:
    return [f"{r.address_prefix}/{r.prefix_len.value}"
            for r in chain.filter_chain_match.source_prefix_ranges]  # type: ignore[attr-defined]


def test_source_subnets_become_chains_that_keep_the_first_match_order() -> None:
    """L4MatchAttributes.sourceSubnet is the client's address, known per connection: a
    chain per route on its own source ranges. A later route's block inside an earlier
    one's loses what the earlier took, so Envoy's most-specific choice is the first
    route that matches; the route without a subnet takes every other client."""
    body = ("tcp: ["
            "{match: [{sourceSubnet: 127.0.0.0/30}], "
            "route: [{destination: {host: tcp-echo, subset: v2}}]}, "
            "{match: [{sourceSubnet: 127.0.0.0/29}, {sourceSubnet: 10.1.0.0/16}], "
            "route: [{destination: {host: tcp-echo, subset: v3}}]}, "
            "{route: [{destination: {host: tcp-echo, subset: v1}}]}, "
            "{match: [{sourceSubnet: 127.0.0.9/32}], "
            "route: [{destination: {host: tcp-echo, subset: v4}}]}]")
    built = gateway_resources(with_echo(snapshot(
        gateway(TCP_SERVER), route('["*"]', body, name="tcp-echo"))), TCP_NODE)
    assert built.problems == ()
    (listener,) = built.listeners
    got = [(ranges(c), proxy_of(listener, i).cluster.split("|")[2])
           for i, c in enumerate(listener.filter_chains)]
    assert got == [(["127.0.0.0/30"], "v2"),
                   (["127.0.0.4/30", "10.1.0.0/16"], "v3"),
                   ([], "v1")]  # v4 comes after the catch-all: unreachable, no chain


def test_one_port_serves_one_tcp_server_and_one_kind() -> None:
    servers = TCP_SERVER + """\
  - port: {number: 31400, name: tcp-2, protocol: MONGO}
    hosts: ["*"]
  - port: {number: 31400, name: http, protocol: HTTP}
    hosts: ["*"]
"""
    built = gateway_resources(with_echo(snapshot(
        gateway(servers), route('["*"]', ALL_V1, name="tcp-echo"))), TCP_NODE)
    assert len(built.listeners) == 1
    assert [(p.server, p.field) for p in built.problems] == [(2, "port"), (1, "port")]
    assert "already serves TCP" in built.problems[0].message


def test_tls_terminated_on_a_tls_port_forwards_by_the_tcp_route() -> None:
    servers = """\
  - port: {number: 31401, name: tls, protocol: TLS}
    hosts: [echo.example.com]
    tls: {mode: SIMPLE, credentialName: echo-cert}
"""
    body = "tcp: [{route: [{destination: {host: tcp-echo, subset: v1}}]}]"
    built = gateway_resources(with_echo(snapshot(
        gateway(servers), route("[echo.example.com]", body, name="tcp-echo"),
        tls_secret("echo-cert"))), TCP_NODE)
    assert built.problems == ()
    (listener,) = built.listeners
    (chain,) = listener.filter_chains
    assert list(chain.filter_chain_match.server_names) == ["echo.example.com"]
    assert chain.HasField("transport_socket")  # terminated with the credential
    assert proxy_of(listener).cluster == f"outbound|9000|v1|{ECHO}"
    assert built.routes == ()  # no HTTP route config: the connection is not HTTP
    assert [s.name for s in built.secrets] == ["kubernetes://echo-cert"]


def test_tls_terminated_on_a_tls_port_splits_by_source_like_a_tcp_server() -> None:
    """The decrypted connection is forwarded by the same first-matching ``tcp`` route as
    on a TCP server, so ``sourceSubnet`` gives one terminating chain per source range,
    each for the server's SNI names and with its certificate."""
    servers = """\
  - port: {number: 31401, name: tls, protocol: TLS}
    hosts: [echo.example.com]
    tls: {mode: SIMPLE, credentialName: echo-cert}
"""
    body = ("tcp: [{match: [{sourceSubnet: 127.0.0.2}], "
            "route: [{destination: {host: tcp-echo, subset: v2}}]}, "
            "{route: [{destination: {host: tcp-echo, subset: v1}}]}]")
    built = gateway_resources(with_echo(snapshot(
        gateway(servers), route("[echo.example.com]", body, name="tcp-echo"),
        tls_secret("echo-cert"))), TCP_NODE)
    assert built.problems == ()
    (listener,) = built.listeners
    got = [(list(c.filter_chain_match.server_names), ranges(c), c.HasField("transport_socket"),
            proxy_of(listener, i).cluster.split("|")[2])
           for i, c in enumerate(listener.filter_chains)]
    assert got == [(["echo.example.com"], ["127.0.0.2/32"], True, "v2"),
                   (["echo.example.com"], [], True, "v1")]
    assert len({c.name for c in listener.filter_chains}) == 2  # Envoy wants them distinct

"""VirtualService routes at apply (and in analyze / describe), TCP and TLS routes and
delegates: what meshpilot accepts but does not apply everywhere Istio would is a
warning with a stable code, never silent."""

from __future__ import annotations

import pytest
from tests.unit.test_validation_gateway_tls import found, gateway, plan

from meshpilot.api.identity import ObjectKey
from meshpilot.validation import StateObject, check_state


def virtual_service(body: str, gateways: str = "[public]", hosts: str = '["*"]') -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: tcp-echo, namespace: shop}}
    spec:
      hosts: {hosts}
      gateways: {gateways}
      {body}
    """


TCP_ROUTE = "tcp: [{match: [{port: 443}], route: [{destination: {host: tcp-echo}}]}]"


def test_a_tcp_server_without_a_tcp_route_is_a_warning() -> None:
    p = plan(gateway("", protocol="TCP", hosts='["*"]'))
    assert p.ok
    (d,) = found(p, "MP2013")
    assert d.path == "spec.servers[0]"
    assert not found(plan(gateway("", protocol="TCP", hosts='["*"]'),
                          virtual_service(TCP_ROUTE)), "MP2013")
    elsewhere = virtual_service(TCP_ROUTE, gateways="[other]")
    assert found(plan(gateway("", protocol="TCP", hosts='["*"]'), elsewhere), "MP2013")


def test_tls_termination_on_a_tls_port_is_served_by_tcp_routes() -> None:
    tls = "tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}"
    p = plan(gateway(tls, protocol="TLS"))
    assert p.ok  # no longer refused (it was MP0038)
    assert [d.code for d in p.diagnostics] == ["MP2013"]
    served = plan(gateway(tls, protocol="TLS"),
                  virtual_service(TCP_ROUTE, hosts="[shop.example.com]"))
    assert served.ok
    assert [d.code for d in served.diagnostics] == ["MP2001"]  # no tcp-echo Service here


@pytest.mark.parametrize(("gateways", "match_gateways", "warned"), [
    ("[]", "", True),  # no gateways: the mesh
    ("[public, mesh]", "", True),
    ("[public]", "", False),
    ("[public]", ", gateways: [mesh]", True),  # a match's own list replaces the VS's
    ("[mesh]", ", gateways: [public]", False),
])
def test_routes_for_the_mesh_on_hosts_no_sidecar_listens_for_are_warned_about(
        gateways: str, match_gateways: str, warned: bool) -> None:
    for kind, match in (("tcp", "{port: 443"), ("tls", "{sniHosts: [a.example.com]")):
        body = (f"{kind}: [{{match: [{match}{match_gateways}}}], "
                "route: [{destination: {host: tcp-echo}}]}]")
        p = plan(virtual_service(body, gateways=gateways,
                                 hosts="[a.example.com, '*.example.com']"))
        assert p.ok
        assert [d.path for d in found(p, "MP2014")] == ([f"spec.{kind}[0]"] if warned else [])
        # a tls route on entry hosts still takes CONNECT tunnels (HTTPS_PROXY): said so
        said = " ".join(d.message for d in found(p, "MP2014"))
        assert ("CONNECT tunnels" in said) == (warned and kind == "tls"), said


@pytest.mark.parametrize("hosts", ["[tcp-echo]", "[tcp-echo.shop.svc.cluster.local]", '["*"]',
                                   '["*.svc.cluster.local"]', "[a.example.com, tcp-echo]"])
def test_mesh_routes_on_a_service_are_applied_at_sidecars_without_a_warning(
        hosts: str) -> None:
    """Istio applies a mesh VirtualService's tcp/tls routes at every sidecar; meshpilot's
    sidecars listen for the TCP and TLS ports of Kubernetes Services."""
    for kind, match in (("tcp", "{port: 443}"), ("tls", "{sniHosts: [a.example.com]}")):
        body = f"{kind}: [{{match: [{match}], route: [{{destination: {{host: tcp-echo}}}}]}}]"
        assert not found(plan(virtual_service(body, gateways="[]", hosts=hosts)), "MP2014")


def test_subnet_matches_are_warned_about() -> None:
    body = ("tcp: [{match: [{port: 443, destinationSubnets: [10.0.0.0/8]}, "
            "{sourceSubnet: 10.1.0.0/16}], route: [{destination: {host: tcp-echo}}]}]")
    p = plan(virtual_service(body))
    assert [d.path for d in found(p, "MP2015")] == [
        "spec.tcp[0].match[0].destinationSubnets", "spec.tcp[0].match[1].sourceSubnet"]


def test_a_udp_server_is_refused() -> None:
    p = plan(gateway("", protocol="UDP"))
    assert not p.ok
    assert [(d.code, d.path) for d in p.errors] == [("MP0045", "spec.servers[0].port.protocol")]


def test_describe_shows_the_warnings_of_a_stored_route() -> None:
    body = plan(virtual_service(TCP_ROUTE, gateways="[]",
                                hosts="[tcp.example.com]")).objects[0].body
    state = [StateObject(ObjectKey("networking.istio.io", "VirtualService", "shop",
                                   "tcp-echo"), body)]
    assert "MP2014" in [d.code for d in check_state(state, all_objects=True)]


# --- delegate VirtualServices (MP2023) ---------------------------------------------------

ROOT = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: root, namespace: shop}
    spec:
      hosts: [reviews]
      http:
      - match: [{uri: {prefix: /api}}]
        delegate: {name: api}
    """


def delegate(extra: str = "", hosts: str = "") -> str:
    return f"""
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: api, namespace: shop}}
    spec:
      {hosts}
      http: [{{route: [{{destination: {{host: reviews}}}}]}}]
      {extra}
    """


def test_a_delegate_that_is_not_there_or_has_hosts_is_warned_on_the_root() -> None:
    assert [d.path for d in found(plan(ROOT), "MP2023")] == ["spec.http[0].delegate"]
    assert found(plan(ROOT, delegate(hosts="hosts: [api.example.com]")), "MP2023")
    assert not found(plan(ROOT, delegate()), "MP2023")


def test_what_a_delegate_does_not_read_is_warned_on_it() -> None:
    p = plan(ROOT, delegate(extra="gateways: [public]"))
    assert [d.path for d in found(p, "MP2023")] == ["spec.gateways"]


def service(ports: str) -> str:
    return f"""
    apiVersion: v1
    kind: Service
    metadata: {{name: tcp-echo, namespace: shop}}
    spec:
      selector: {{app: tcp-echo}}
      ports: {ports}
    """


@pytest.mark.parametrize(("ports", "warned"), [
    ("[{name: http, port: 9000}]", ["tcp", "tls"]),
    ("[{port: 9000}]", ["tcp", "tls"]),  # unnamed: HTTP through the sidecar's HTTP proxy
    ("[{name: tcp, port: 9000}]", ["tls"]),
    ("[{name: web, port: 9000, appProtocol: mongo}]", ["tls"]),
    ("[{name: https-web, port: 443}, {name: http, port: 80}]", ["tcp"]),
    ("[{name: tcp, port: 9000}, {name: tls, port: 443}]", []),
])
def test_mesh_routes_on_a_service_without_a_port_of_their_kind_are_warned_about(
        ports: str, warned: list[str]) -> None:
    """Istio's sidecars apply tcp routes on a Service's TCP ports and tls routes on its
    TLS/HTTPS ports only; elsewhere they do nothing, which apply says (MP2014)."""
    body = ("tcp: [{route: [{destination: {host: tcp-echo}}]}]\n      "
            "tls: [{match: [{sniHosts: [tcp-echo]}], route: [{destination: {host: tcp-echo}}]}]")
    p = plan(service(ports), virtual_service(body, gateways="[]", hosts="[tcp-echo]"))
    assert p.ok
    assert [d.path for d in found(p, "MP2014")] == [f"spec.{k}[0]" for k in warned]
    # bound to a Gateway only, the routes are not the mesh's: nothing to say
    gateway_only = plan(service(ports), virtual_service(body, hosts="[tcp-echo]"))
    assert not found(gateway_only, "MP2014")

"""Which proxies the control plane sends through its east-west gateway, and the
gateway's own config, as Istio's istiod tells a proxy on another network the gateway
address of the network it cannot reach, and gives the east-west gateway its SNI
clusters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tests.unit.test_xds_east_west import snapshot

from meshpilot.mesh.model import MeshSnapshot, ProxyNode
from meshpilot.server.east_west import EastWestGateway
from meshpilot.xds.translate import east_west, names


def seen(node: ProxyNode) -> Mapping[str, Any]:
    return {"node": node}


def test_joined_proxies_go_through_the_gateway_and_the_others_do_not() -> None:
    """A node id the hosts' credentials name gets ``via_gateway``; any other proxy is
    passed on unchanged; the gateway's own node gets the gateway's config, built once per
    snapshot and access log file."""
    gateway = EastWestGateway("192.0.2.1")
    assert gateway.endpoint == "192.0.2.1:15443"
    snap = snapshot()
    config_for = gateway.wrap(snap, {"sidecar~192.0.2.7~vm.default"}, seen)
    joined = ProxyNode(id="sidecar~192.0.2.7~vm.default", kind="sidecar",
                       namespace="default", ip="192.0.2.7")
    local = replace(joined, id="sidecar~127.40.0.1~p.default", ip="127.40.0.1")
    assert config_for(joined)["node"].via_gateway == ("192.0.2.1", 15443)
    assert config_for(local)["node"] is local

    node = replace(gateway.node, access_log="/run/eastwestgateway.access.log")
    first = config_for(node)
    assert first is config_for(node)  # the same snapshot: not built again
    listener = first[names.TYPE_LISTENER][east_west.LISTENER]
    assert "eastwestgateway.access.log" in str(listener)
    again = gateway.wrap(MeshSnapshot(version=2, services={}, endpoints={}), set(), seen)
    assert again(node)[names.TYPE_LISTENER] == {}


def test_ipv6_listen_address_is_bracketed() -> None:
    assert EastWestGateway("2001:db8::1").endpoint == "[2001:db8::1]:15443"

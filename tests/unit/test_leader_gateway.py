"""Which east-west gateway a replica's proxies reach the pods through when replicas run
on different hosts: the leader's, as Istio's multi-primary replicas on different
networks reach another network's workloads through that network's east-west gateway
(the leader's host is the pods' network here)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tests.unit.test_xds_east_west import V1, addresses, objects, pods, snapshot

from meshpilot.mesh.builder import SnapshotBuilder
from meshpilot.mesh.model import ProxyNode
from meshpilot.server.east_west import EastWestGateway
from meshpilot.server.leader_gateway import leader_gateway, loopback_identity, parse
from meshpilot.xds import ENDPOINT, ProxyConfigBuilder

A, B = "10.77.1.2:15443", "10.77.1.3:15443"


def replicas(leader: str | None, gateways: Mapping[str, str] | None = None,
             loopbacks: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    gateways = gateways or {"a": A, "b": B}
    loopbacks = loopbacks or {"a": "m1/4026531833", "b": "m2/4026531833"}
    return [{"identity": name, "leading": name == leader, "east_west": gateway,
             "loopback": loopbacks[name]} for name, gateway in gateways.items()]


def test_a_follower_on_another_host_uses_the_leader_s_gateway() -> None:
    """From B, while A leads on another loopback: A's gateway; while B leads: its own
    (None); with no leader known, or a leader without a gateway, or one on B's loopback
    (replicas on one host, whatever their listen addresses): none either."""
    mine = "m2/4026531833"
    assert leader_gateway(replicas("a"), "b", mine) == ("10.77.1.2", 15443)
    assert leader_gateway(replicas("b"), "b", mine) is None
    assert leader_gateway(replicas(None), "b", mine) is None
    assert leader_gateway(replicas("a", {"a": "", "b": B}), "b", mine) is None
    same = {"a": mine, "b": mine}
    assert leader_gateway(replicas("a", loopbacks=same), "b", mine) is None
    assert parse("[2001:db8::1]:15443") == ("2001:db8::1", 15443)
    assert parse("nonsense") is None


def test_the_loopback_identity_tells_network_namespaces_apart() -> None:
    """Two processes in one namespace have the same identity; one in a fresh network
    namespace (unshare -n, as root) another, on the same machine."""
    here = loopback_identity()
    assert here == loopback_identity()
    code = "from meshpilot.server.leader_gateway import loopback_identity as f; print(f())"
    apart = subprocess.run(["unshare", "-n", sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert apart.strip() != here
    assert apart.split("/")[0] == here.split("/")[0]  # the same machine


def test_with_the_pods_elsewhere_every_proxy_goes_through_that_gateway() -> None:
    """Given the pods at another replica's gateway, this replica's own proxies and its
    joined hosts get that gateway as ``via_gateway``; its own gateway node still gets
    its own config; without it, only the joined hosts go through this one's."""
    gateway = EastWestGateway("10.77.1.3")
    joined = ProxyNode(id="sidecar~10.77.1.9~vm.default", kind="sidecar",
                       namespace="default", ip="10.77.1.9")
    mesh_proxy = replace(joined, id="client~127.0.0.1~mesh-proxy.default", ip="127.0.0.1")

    def seen(node: ProxyNode) -> Mapping[str, Any]:
        return {"node": node}

    leader = ("10.77.1.2", 15443)
    config_for = gateway.wrap(snapshot(), {joined.id}, seen, leader)
    assert config_for(joined)["node"].via_gateway == leader
    assert config_for(mesh_proxy)["node"].via_gateway == leader
    assert "node" not in config_for(gateway.node)  # the gateway's own resources
    alone = gateway.wrap(snapshot(), {joined.id}, seen)
    assert alone(joined)["node"].via_gateway == ("10.77.1.3", 15443)
    assert alone(mesh_proxy)["node"].via_gateway is None


def test_a_proxy_whose_gateway_moves_gets_the_new_one_at_the_next_snapshot() -> None:
    """When the leader changes, a proxy keeps its node id and its class inputs (the same
    Sidecars), yet its gateway moves: the shared build must not reuse the class it was
    in, or it keeps sending the proxy to the dead leader's gateway."""
    builder = SnapshotBuilder()
    first, second = builder.build(1, objects(), pods()), builder.build(2, objects(), pods())
    assert first.sidecars is second.sidecars
    configs = ProxyConfigBuilder()
    node = ProxyNode(id="sidecar~10.77.1.9~vm.default", kind="sidecar", namespace="default",
                     ip="10.77.1.9", via_gateway=("10.77.1.2", 15443))
    seen = configs.config_for(first, node)[ENDPOINT][V1].message
    assert addresses(seen) == [("10.77.1.2", 15443, 2)]
    moved = replace(node, via_gateway=("10.77.1.3", 15443))
    seen = configs.config_for(second, moved)[ENDPOINT][V1].message
    assert addresses(seen) == [("10.77.1.3", 15443, 2)]

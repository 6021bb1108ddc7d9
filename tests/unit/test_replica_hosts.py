"""Pods of a control-plane replica on another host, reached through that host's
east-west gateway: as Istio's multi-primary replicas on different networks reach another
network's workloads through that network's east-west gateway (each replica's host being
a network of its own here, since its pods have loopback addresses)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from typing import Any

from tests.unit.test_xds_east_west import V1, addresses, objects, pods

from meshpilot.mesh.builder import SnapshotBuilder
from meshpilot.mesh.model import ProxyNode
from meshpilot.server.replica_hosts import host_gateway, loopback_identity
from meshpilot.server.shared_endpoints import SharedEndpoints, record
from meshpilot.store.replicas import SingleReplica
from meshpilot.xds import ENDPOINT, ProxyConfigBuilder
from meshpilot.xds.resources import prepare, versions
from meshpilot.xds.translate import build_resources, east_west, names

MINE, THEIRS = "m1/4026531833", "m2/4026531833"
A = "10.77.1.2:15443"


def test_another_loopback_s_pods_are_reached_through_its_gateway() -> None:
    """A record on another loopback names its gateway; one on this loopback, or one that
    does not say which it has (an older replica), is reached directly."""
    assert host_gateway({"loopback": THEIRS, "east_west": A}, MINE) == A
    assert host_gateway({"loopback": MINE, "east_west": A}, MINE) == ""
    assert host_gateway({"east_west": A}, MINE) == ""
    assert host_gateway({"loopback": THEIRS, "east_west": ""}, MINE) == ""


def test_the_loopback_identity_tells_network_namespaces_apart() -> None:
    """Two calls in one namespace agree; a process in a fresh network namespace
    (unshare -n, as root) on the same machine has another."""
    here = loopback_identity()
    assert here == loopback_identity()
    code = "from meshpilot.server.replica_hosts import loopback_identity as f; print(f())"
    apart = subprocess.run(["unshare", "-n", sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert apart.strip() != here
    assert apart.split("/")[0] == here.split("/")[0]  # the same machine


class Directory(SingleReplica):
    """This replica and another one, with the records given."""

    identity = "b"

    def __init__(self, other: dict[str, Any]) -> None:
        super().__init__()
        self.other = other

    def replicas(self) -> list[dict[str, Any]]:
        return [self.other, {"identity": "b", "loopback": MINE}]


def test_the_leader_s_pods_on_another_host_carry_its_gateway() -> None:
    """The pods another replica runs come with its gateway when it is on another
    loopback (none on the same one)."""
    rows = [record(p) for p in pods()[:2]]
    apart = SharedEndpoints(Directory({"identity": "a", "loopback": THEIRS, "east_west": A,
                                       "workloads": rows}), loopback=MINE)
    assert {w.host_gateway for w in apart.others()} == {A}
    near = SharedEndpoints(Directory({"identity": "a", "loopback": MINE, "east_west": A,
                                      "workloads": rows}), loopback=MINE)
    assert {w.host_gateway for w in near.others()} == {""}


def test_every_proxy_reaches_another_host_s_pods_at_its_gateway() -> None:
    """With the v1 pods on another replica's host: a proxy of this host (no gateway of
    its own to go through) and a joined host's (through this host's gateway for this
    host's pods) both get that host's gateway as the v1 endpoint, as the reference build
    does; this host's east-west gateway does not serve them (that host's does)."""
    remote = [replace(p, host_gateway=A) if p.ip.startswith("127.") else p for p in pods()]
    snap = SnapshotBuilder().build(1, objects(), remote)
    builder = ProxyConfigBuilder()
    local = ProxyNode(id="client~127.0.0.1~mesh-proxy.default", kind="client",
                      namespace="default", ip="127.0.0.1")
    joined = ProxyNode(id="sidecar~10.77.1.9~vm.default", kind="sidecar", namespace="default",
                       ip="10.77.1.9", via_gateway=("10.77.1.3", 15443))
    for node in (local, joined):
        got = builder.config_for(snap, node)
        assert addresses(got[ENDPOINT][V1].message) == [("10.77.1.2", 15443, 2)]
        assert versions(got[ENDPOINT]) == versions(prepare(build_resources(snap, node))[ENDPOINT])
    out, _ = east_west.gateway_resources(snap, east_west.gateway_node("10.77.1.3"))
    sni = names.outbound_sni(8080, "v1", V1.split("|")[3])
    assert addresses(out[names.TYPE_ENDPOINT][sni]) == []


def test_a_proxy_whose_gateway_moves_gets_the_new_one_at_the_next_snapshot() -> None:
    """A proxy keeps its node id and its class inputs (the same Sidecars), yet its
    gateway (or network) moves: the shared build must not reuse the class it was in, or
    it keeps sending the proxy to the old gateway."""
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

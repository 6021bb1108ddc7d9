"""East-west gateways run by joined hosts (``host join --east-west-gateway``), pure and
with the host registry.

Follows Istio's multi-network model: each network has an east-west gateway
(``istio-eastwestgateway``, port 15443, ``AUTO_PASSTHROUGH``) that ``meshNetworks`` names
by ``registryServiceName``, and a proxy on another network reaches that network's
workloads through it. Here that name on the control-plane host's network is its own
gateway; on another network it is each live gateway a joined host of that network runs,
which serves that network's mutual-TLS workloads only (never the control-plane host's
pods)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.test_host_registry import ENTRY, Clock, joined, new_registry
from tests.unit.test_mesh_networks import HOST, MESH, addresses, objects, pods

from meshpilot.api.identity import ObjectKey
from meshpilot.api.mesh_networks import EAST_WEST_SERVICE
from meshpilot.hosts.agent import AgentOptions, HostAgent, gateway_node
from meshpilot.mesh import networks
from meshpilot.mesh.builder import SnapshotBuilder
from meshpilot.mesh.model import MeshSnapshot, ProxyNode
from meshpilot.server import host_gateways
from meshpilot.server.host_registry import HostRegistry
from meshpilot.server.hosts_api import HostsAPI
from meshpilot.store import SqliteStore
from meshpilot.validation.mesh_config import parse_mesh_config
from meshpilot.xds.translate import names

CP = "10.1.0.1"
JOINED_MESH = MESH.replace(
    "gateways: [{address: 10.3.0.1, port: 15443}, {address: 10.3.0.9, port: 15443}]",
    f"gateways: [{{registryServiceName: {EAST_WEST_SERVICE}, port: 15443}}]")
VM_A = ObjectKey("networking.istio.io", "WorkloadEntry", "default", "vm-a")
SNI = names.outbound_sni(8080, None, HOST)


def snapshot(joined_gateways: dict[str, tuple[str, ...]] | None = None) -> MeshSnapshot:
    config, _ = parse_mesh_config(JOINED_MESH, "mesh.yaml")
    resolved = networks.gateway_named(config, CP)
    assert resolved is not None
    if joined_gateways:
        resolved = replace(resolved, networks=resolved.networks.with_joined(
            EAST_WEST_SERVICE, joined_gateways))
    return SnapshotBuilder(mesh_config=resolved).build(1, objects(), pods())


def test_the_service_name_is_the_control_planes_gateway_on_its_own_network_only() -> None:
    """network-b (the control plane's, fromRegistry) gets the --listen address; network-a
    names the same service and has no gateway until a joined host of it runs one."""
    nets = snapshot().mesh_config.networks
    assert nets.gateways("network-b") == ((CP, 15443),)
    assert nets.gateways("network-a") == ()
    joined_nets = snapshot({"network-a": ("10.3.0.5", "10.3.0.6")}).mesh_config.networks
    assert joined_nets.gateways("network-a") == (("10.3.0.5", 15443), ("10.3.0.6", 15443))
    assert joined_nets.gateways("network-b") == ((CP, 15443),)  # not another network's


def test_gateways_are_grouped_by_their_hosts_network() -> None:
    """vm-a is on network-a by its address; an entry with no network has no gateway to
    be (its endpoints are on every network)."""
    snap = snapshot()
    plain = ObjectKey("networking.istio.io", "WorkloadEntry", "default", "nowhere")
    joined_gateways = {host_gateways.node_id(VM_A, "10.3.0.2"): (VM_A, "10.3.0.2"),
                       host_gateways.node_id(plain, "10.8.0.2"): (plain, "10.8.0.2")}
    assert host_gateways.by_network(joined_gateways, snap) == {"network-a": ("10.3.0.2",)}


def test_a_joined_gateway_serves_its_networks_mtls_workloads_and_no_pod_here() -> None:
    """Its listener is at its host's address; network-a's vm-a and vm-l (by label) are
    its endpoints, not the control-plane host's pod (loopback), nor network-b's vm-b,
    nor network-a's workload without a sidecar."""
    snap = snapshot({"network-a": ("10.3.0.2",)})
    node = ProxyNode(id=host_gateways.node_id(VM_A, "10.3.0.2"), kind="gateway",
                     namespace="istio-system", ip="10.3.0.2")
    out = host_gateways.config(snap, node, VM_A, "10.3.0.2")
    assert addresses(out[names.TYPE_ENDPOINT][SNI]) == [("10.3.0.2", 8080, 1),
                                                        ("10.9.0.2", 8080, 1)]
    listener = next(iter(out[names.TYPE_LISTENER].values()))
    assert listener.address.socket_address.address == "10.3.0.2"  # type: ignore[attr-defined]
    assert listener.address.socket_address.port_value == 15443  # type: ignore[attr-defined]


@pytest.fixture
def registry(store: SqliteStore, tmp_path: Path) -> tuple[HostRegistry, Clock]:
    """A host registry with the group of :mod:`tests.unit.test_host_registry`."""
    return new_registry(store, tmp_path)


def test_a_member_asks_for_its_gateway_with_its_credential(
        registry: tuple[HostRegistry, Any]) -> None:
    """The answer is a node id and its xDS token (the proxies' issuing path); the member
    is a gateway from then on, kept across a restart, and leaves the list once its host
    reports unready."""
    reg, clock = registry
    answer = joined(reg)
    assert reg.gateway("shop", ENTRY.name, "not-it") is None
    assert reg.gateways() == {}
    given = reg.gateway("shop", ENTRY.name, answer["hostToken"])
    assert given is not None and given["port"] == 15443
    assert given["nodeId"] == host_gateways.node_id(ENTRY, "10.77.0.2")
    # the token binds the identity the agent's gateway declares, and only that
    declared = gateway_node(given["nodeId"], "10.77.0.2")
    assert reg.proxy_tokens.verify_proxy(declared, given["xdsToken"])
    assert not reg.proxy_tokens.verify_proxy(replace(declared, namespace="shop"),
                                             given["xdsToken"])
    assert reg.gateways() == {given["nodeId"]: (ENTRY, "10.77.0.2")}
    assert reg.report("shop", ENTRY.name, answer["hostToken"], ready=False)
    assert reg.gateways() == {}
    again = HostRegistry(reg.store, reg.config, reg.tokens, reg.proxy_tokens, reg.ca,
                         reg.cert_ttl, reg.xds_address, clock=clock,
                         members_file=reg.members_file)
    assert list(again.gateways()) == [given["nodeId"]]  # until its host reports


def test_the_gateway_route_needs_the_host_credential(
        registry: tuple[HostRegistry, Any]) -> None:
    reg, _ = registry
    answer = joined(reg)
    client = TestClient(HostsAPI(reg, reg.tokens).public_app())
    path = "/apis/meshpilot.io/v1/hosts/gateway"
    body = {"namespace": "shop", "entry": ENTRY.name, "hostToken": answer["hostToken"]}
    assert client.post(path, json={**body, "hostToken": "x"}).status_code == 403
    assert client.post(path, content=json.dumps({"namespace": "shop"})).status_code == 400
    r = client.post(path, json=body)
    assert r.status_code == 200 and r.json()["nodeId"].startswith("router~10.77.0.2~")


def test_an_agent_without_the_flag_runs_no_gateway(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    agent = HostAgent(AgentOptions(server="https://10.77.0.1:8443", token="x",
                                   group="shop/reviews", address="10.77.0.2", ca_file=ca,
                                   state_dir=tmp_path))
    assert agent.start_gateway() is None and agent.gateway is None

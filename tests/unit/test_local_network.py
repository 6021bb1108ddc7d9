"""``up --network NAME``: the control-plane host's network, and how it meets the mesh
config's ``meshNetworks`` (pure).

Istio names a cluster's network twice: its ``values.global.network`` and, in
``meshNetworks``, the network whose endpoints list ``fromRegistry: <cluster id>``; the two
must agree. Here the flag adds ``fromRegistry: Kubernetes`` to the network it names, a file
that puts the registry on another network is refused (MP0095) at that item's line, and a
network the file does not list is added with no gateway and warned about (MP2039), since
Istio's split horizon leaves out a network with no gateway for proxies on every other."""

from __future__ import annotations

import pytest
from tests.two_networks import TWO_NETWORKS

from meshpilot.api.mesh_config import MeshConfig
from meshpilot.api.mesh_networks import LOCAL_REGISTRY
from meshpilot.server.mesh_config_file import own_network
from meshpilot.validation.mesh_config import MeshConfigError, parse_mesh_config
from meshpilot.validation.mesh_networks import network_name_problem

MESH = TWO_NETWORKS
UNPLACED = MESH.replace("      - fromRegistry: Kubernetes\n", "      - fromCidr: 10.1.0.0/16\n")


def test_the_same_network_as_the_file_changes_nothing() -> None:
    config, found = parse_mesh_config(MESH, "mesh.yaml", "network-b")
    plain, _ = parse_mesh_config(MESH, "mesh.yaml")
    assert found == [] and config == plain
    assert config.networks.registry_network() == "network-b"


def test_another_network_than_the_files_registry_is_refused_at_its_line() -> None:
    with pytest.raises(MeshConfigError) as refused:
        parse_mesh_config(MESH, "mesh.yaml", "network-a")
    (finding,) = refused.value.diagnostics
    assert finding.code == "MP0095" and finding.line == 8, finding.format()
    assert finding.path == "meshNetworks.networks.network-b.endpoints[0].fromRegistry"
    assert "--network network-b" in finding.message  # the valid alternatives
    assert "move this item to network 'network-a'" in finding.message


def test_a_listed_network_without_the_registry_gains_it() -> None:
    """The flag places the host's pods on network-a, whose gateways stay those listed."""
    config, found = parse_mesh_config(UNPLACED, "mesh.yaml", "network-a")
    assert found == []
    assert config.networks.registry_network() == "network-a"
    assert config.networks.gateways("network-a") == (("10.3.0.1", 15443),)
    network_a = next(n for n in config.networks.networks if n.name == "network-a")
    assert network_a.cidrs == ("10.3.0.0/16",) and network_a.registries == (LOCAL_REGISTRY,)


def test_a_network_the_file_does_not_list_is_added_with_a_warning() -> None:
    config, found = parse_mesh_config(UNPLACED, "mesh.yaml", "network-c")
    (warning,) = found
    assert warning.code == "MP2039" and warning.severity.value == "warning"
    assert warning.line == 2 and "network-a, network-b" in warning.message
    assert "registryServiceName" in warning.message  # how to list it with a gateway
    assert config.networks.registry_network() == "network-c"
    assert config.networks.gateways("network-c") == ()


def test_without_mesh_networks_the_name_routes_nothing() -> None:
    config, found = parse_mesh_config("dnsResolvers: ['127.0.0.1']\n", "m.yaml", "network-c")
    assert found == [] and not config.networks
    assert own_network(config, "network-c") == "network-c"
    assert own_network(MeshConfig(), "") == ""


def test_the_shown_network_is_the_files_without_the_flag() -> None:
    config, _ = parse_mesh_config(MESH, "mesh.yaml")
    assert own_network(config, "") == "network-b"
    placed, _ = parse_mesh_config(UNPLACED, "mesh.yaml", "network-a")
    assert own_network(placed, "network-a") == "network-a"


@pytest.mark.parametrize("name", ["network-a", "n", "net_1.b", "A" * 63])
def test_network_names_are_label_values(name: str) -> None:
    assert network_name_problem(name) == ""


@pytest.mark.parametrize("name", ["", "-a", "a-", "a b", "a/b", "A" * 64, "ä"])
def test_other_names_are_refused_saying_what_a_name_is(name: str) -> None:
    assert "letters, digits" in network_name_problem(name)

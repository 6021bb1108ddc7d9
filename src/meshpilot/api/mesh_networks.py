"""Istio's named networks (``meshNetworks``): which endpoints are on which network, and
through which gateways a proxy on another network reaches them.

Istio reads the same shape from its ``meshNetworks`` setting::

    networks:
      network-b:
        endpoints: [{fromRegistry: Kubernetes}, {fromCidr: 10.2.0.0/16}]
        gateways: [{address: 10.1.0.1, port: 15443}]

An endpoint's network is, first, what its workload names (a WorkloadEntry's ``network``,
else its ``topology.istio.io/network`` label); else the network whose ``fromCidr`` holds
its address; else, for the control-plane host's pods (the local registry, Istio's
default cluster id ``Kubernetes``), the network listing ``fromRegistry: Kubernetes``.
Endpoints of no network are on every network, as Istio treats an unset network.
These objects are plain data: :mod:`meshpilot.mesh.networks` resolves with them and
:mod:`meshpilot.xds.translate.networks` rewrites a proxy's endpoints by them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

NETWORK_LABEL = "topology.istio.io/network"
"""The label Istio reads a workload's network from when its spec names none."""
LOCAL_REGISTRY = "Kubernetes"
"""The registry of the control-plane host's own pods: Istio's default cluster id."""
EAST_WEST_SERVICE = "istio-eastwestgateway.istio-system.svc.cluster.local"
"""The ``registryServiceName`` that names a network's east-west gateway, as Istio's
multi-network samples name theirs: the control plane's own (``up --listen``) on its
host's network, the ones joined hosts run (``host join --east-west-gateway``) on theirs."""


@dataclass(frozen=True)
class NetworkGateway:
    """One gateway of a network: an address (or the east-west gateway's service name,
    resolved to the ``--listen`` address by the control plane) and its port."""

    port: int
    address: str = ""
    registry_service_name: str = ""


@dataclass(frozen=True)
class MeshNetwork:
    """A named network: the address blocks and registries whose endpoints it holds, and
    its gateways."""

    name: str
    cidrs: tuple[str, ...] = ()
    registries: tuple[str, ...] = ()
    gateways: tuple[NetworkGateway, ...] = ()


@dataclass(frozen=True)
class MeshNetworks:
    """Every named network; empty means one flat network, as without ``meshNetworks``."""

    networks: tuple[MeshNetwork, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.networks)

    def registry_network(self, registry: str = LOCAL_REGISTRY) -> str:
        """The network whose endpoints include ``fromRegistry: registry`` ("" if none)."""
        return next((n.name for n in self.networks if registry in n.registries), "")

    def network_of_address(self, address: str) -> str:
        """The network whose ``fromCidr`` holds ``address`` ("" if none does)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return ""
        for network in self.networks:
            for block in network.cidrs:
                net = ipaddress.ip_network(block, strict=False)
                if ip.version == net.version and ip in net:
                    return network.name
        return ""

    def gateways(self, name: str) -> tuple[tuple[str, int], ...]:
        """(address, port) of each gateway of network ``name`` with an address (a
        registry service name not yet resolved has none)."""
        for network in self.networks:
            if network.name == name:
                return tuple((g.address, g.port) for g in network.gateways if g.address)
        return ()

    def resolve(self, service: str, address: str, network: str = "") -> MeshNetworks:
        """These networks with every gateway named by ``service`` given ``address`` (only
        those of ``network`` when one is given)."""
        if not self.networks:
            return self
        return MeshNetworks(tuple(
            MeshNetwork(n.name, n.cidrs, n.registries, tuple(
                NetworkGateway(g.port, address, g.registry_service_name)
                if g.registry_service_name == service and network in ("", n.name) else g
                for g in n.gateways))
            for n in self.networks))

    def with_joined(self, service: str, joined: Mapping[str, tuple[str, ...]]
                    ) -> MeshNetworks:
        """These networks with each gateway named by ``service`` and not resolved yet
        given, per network, the addresses in ``joined`` (the east-west gateways joined
        hosts run on that network): one gateway per address, at the listed port."""
        if not self.networks or not joined:
            return self
        return MeshNetworks(tuple(
            MeshNetwork(n.name, n.cidrs, n.registries, tuple(
                resolved for g in n.gateways for resolved in (
                    [NetworkGateway(g.port, address, service)
                     for address in joined.get(n.name, ())]
                    if g.registry_service_name == service and not g.address else [g])))
            for n in self.networks))


NO_NETWORKS = MeshNetworks()
"""One flat network (frozen, so one object serves everyone)."""

"""Which named network a workload and a proxy are on (Istio's ``meshNetworks``).

A workload's network is what it names itself (a WorkloadEntry's ``network``, else its
``topology.istio.io/network`` label, Istio's order), else the network whose ``fromCidr``
holds its address, else, for a pod of the control-plane host (a loopback address), the
network that lists ``fromRegistry: Kubernetes``; a pod on a joined host is on that
host's network (its WorkloadEntry's) unless its own label names one. A ServiceEntry's
inline endpoint is on the network it names, or on none. A proxy is on its workload's
network: a joined host's sidecar on its WorkloadEntry's, a joined pod's sidecar on its
pod's, every proxy the control plane
runs itself on the control-plane host's. Without ``meshNetworks`` every network is "",
which is every network, and nothing here changes a thing.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import replace

from meshpilot.api.mesh_config import MeshConfig
from meshpilot.api.mesh_networks import EAST_WEST_SERVICE, NETWORK_LABEL, MeshNetworks
from meshpilot.api.networking import WorkloadEntry
from meshpilot.api.workload_group import AUTO_REGISTRATION_ANNOTATION
from meshpilot.mesh.model import MeshSnapshot, Named, ProxyNode, WorkloadInstance

log = logging.getLogger(__name__)


def place(networks: MeshNetworks, workload: WorkloadInstance) -> WorkloadInstance:
    """``workload`` with its network resolved (the same object when it is unchanged). A
    loopback address is a pod of the control-plane host: the local registry's."""
    if not networks:
        return workload
    name = (workload.network or workload.labels.get(NETWORK_LABEL, "")
            or networks.network_of_address(workload.ip)
            or (networks.registry_network() if _loopback(workload.ip) else ""))
    return workload if name == workload.network else replace(workload, network=name)


def place_all(networks: MeshNetworks, instances: Iterable[WorkloadInstance]
              ) -> list[WorkloadInstance]:
    """Every instance placed (:func:`place`), and a joined host's pod on that host's network
    (its WorkloadEntry's, resolved as any entry's: the group's ``network``, its label or
    the ``fromCidr`` of the host's address), as Istio puts a workload on its registry's
    network; only the pod's own network label, or a host on no network, leaves it to
    the pod's own address."""
    placed = [place(networks, w) for w in instances]
    if not networks:
        return placed
    hosts = {(w.namespace, w.name): w.network for w in placed
             if w.host_entry is None and not w.workload}
    out = []
    for w in placed:
        network = hosts.get(w.host_entry, "") if w.host_entry is not None else ""
        if network and network != w.network and not w.labels.get(NETWORK_LABEL):
            w = replace(w, network=network)
        out.append(w)
    return out


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def of_entries(networks: MeshNetworks, entries: Iterable[Named[WorkloadEntry]],
               instances: Iterable[WorkloadInstance]) -> dict[tuple[str, str], str]:
    """(namespace, name) → network of each WorkloadEntry a joined host registered (its
    sidecar's network) and of each pod on a joined host (its sidecar's: the node id
    names the pod); empty without named networks."""
    if not networks:
        return {}
    registered = {(e.namespace, e.name) for e in entries
                  if e.obj.metadata.annotations.get(AUTO_REGISTRATION_ANNOTATION)}
    return {(w.namespace, w.name): w.network for w in instances
            if (w.namespace, w.name) in registered or w.host_entry is not None}


def entry_of(node_id: str) -> tuple[str, str] | None:
    """(namespace, name) of the workload a sidecar's node id names
    (``sidecar~IP~NAME.NAMESPACE~...``; a namespace has no dots, a name may)."""
    parts = node_id.split("~")
    if len(parts) < 3 or parts[0] != "sidecar":
        return None
    name, _, namespace = parts[2].rpartition(".")
    return (namespace, name) if name and namespace else None


def proxy_network(snapshot: MeshSnapshot, node: ProxyNode) -> str:
    """The network ``node`` is on: its joined host's WorkloadEntry's, else (a proxy the
    control plane runs) the control-plane host's; "" without named networks. Read from
    the authenticated node id, never from what the proxy says of itself."""
    networks = snapshot.mesh_config.networks
    if not networks:
        return ""
    key = entry_of(node.id)
    if key is not None and key in snapshot.entry_networks:
        return snapshot.entry_networks[key]
    return networks.registry_network()


def on_network(snapshot: MeshSnapshot, node: ProxyNode) -> ProxyNode:
    """``node`` with :func:`proxy_network` set (the same object when it already is)."""
    network = proxy_network(snapshot, node)
    return node if network == node.network else replace(node, network=network)


def gateway_named(config: MeshConfig | None, listen: str | None) -> MeshConfig | None:
    """``config`` with the ``meshNetworks`` gateways named by the east-west gateway's
    service (:data:`~meshpilot.api.mesh_networks.EAST_WEST_SERVICE`) on the control-plane
    host's network at ``listen``, where this gateway is (on every network when none lists
    the host's registry); without ``--listen`` they stay unresolved (no gateway: warned).
    On another network that name is the gateways joined hosts run there
    (:mod:`meshpilot.server.host_gateways`)."""
    if config is None or not config.networks or not listen:
        if config is not None and any(g.registry_service_name and not g.address
                                      for n in config.networks.networks for g in n.gateways):
            log.warning("meshNetworks names the east-west gateway %s, and there is none "
                        "without up --listen: that network has no gateway", EAST_WEST_SERVICE)
        return config
    # the control plane's gateway serves its own host's network; another network's
    # gateways of that name are the ones its joined hosts run (with_joined)
    own = config.networks.registry_network()
    return replace(config, networks=config.networks.resolve(EAST_WEST_SERVICE, listen, own))

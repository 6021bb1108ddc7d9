"""Which named network a workload and a proxy are on (Istio's ``meshNetworks``).

A workload's network is what it names itself (a WorkloadEntry's or ServiceEntry
endpoint's ``network``, else its ``topology.istio.io/network`` label, Istio's order), else
the network whose ``fromCidr`` holds its address, else, for a pod of the control-plane
host, the network that lists ``fromRegistry: Kubernetes``. A proxy is on its workload's
network: a joined host's sidecar on its WorkloadEntry's, every proxy the control plane
runs itself on the control-plane host's. Without ``meshNetworks`` every network is "",
which is every network, and nothing here changes a thing.
"""

from __future__ import annotations

from dataclasses import replace

from meshpilot.api.mesh_networks import NETWORK_LABEL, MeshNetworks
from meshpilot.mesh.model import MeshSnapshot, ProxyNode, WorkloadInstance


def place(networks: MeshNetworks, workload: WorkloadInstance, *, local: bool
          ) -> WorkloadInstance:
    """``workload`` with its network resolved (the same object when it is unchanged);
    ``local`` for a pod of the control-plane host (the local registry)."""
    if not networks:
        return workload
    name = (workload.network or workload.labels.get(NETWORK_LABEL, "")
            or networks.network_of_address(workload.ip)
            or (networks.registry_network() if local else ""))
    return workload if name == workload.network else replace(workload, network=name)


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

"""East-west gateways that joined hosts run for their networks (``host join
--east-west-gateway``).

Istio gives each network a gateway (``istio-eastwestgateway``, port 15443,
``AUTO_PASSTHROUGH``) that ``meshNetworks`` names by ``registryServiceName``; proxies on
other networks reach that network's workloads through it. The control plane runs one for
its own host's network (``up --listen``). A network made only of joined hosts gets its
own the same way: a host that joins with ``--east-west-gateway`` runs a gateway Envoy at
its address, which the control plane configures as its own (forwarding mutual-TLS
connections by their SNI, unopened) but serving only the endpoints of that host's network,
never the control-plane host's pods (loopback addresses, meaningless there).

``meshNetworks`` names such a gateway as Istio names any east-west gateway: under the
network, ``gateways: [{registryServiceName: istio-eastwestgateway.istio-system.svc.
cluster.local, port: 15443}]``. On the control-plane host's network that name is the
control plane's gateway; on another network it is every live joined gateway on it. The
gateway's stream is authenticated like every proxy's (a token bound to its node id,
issued with the host's credential), over the host's mutual-TLS xDS.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.model import MeshSnapshot, ProxyNode
from meshpilot.security.proxy_tokens import BoundIdentity
from meshpilot.xds.translate import east_west

log = logging.getLogger(__name__)

PORT = east_west.GATEWAY_PORT
"""Where a joined host's gateway listens at its address (Istio's port)."""

Joined = Mapping[str, tuple[ObjectKey, str]]
"""A joined gateway's node id -> (its host's WorkloadEntry, the host's address)."""


def node_id(entry: ObjectKey, address: str) -> str:
    """The node id of the gateway a joined host runs: a router, named after its entry."""
    return (f"router~{address}~{east_west.GATEWAY_NAME}-{entry.name}.{entry.namespace}"
            f"~{entry.namespace}.svc.cluster.local")


def identity(address: str) -> BoundIdentity:
    """What a joined host's gateway is, bound into its xDS token: the control plane's
    own east-west gateway's identity (the agent declares the same), at another address."""
    return BoundIdentity.of(east_west.gateway_node(address))


def by_network(joined: Joined, snapshot: MeshSnapshot) -> dict[str, tuple[str, ...]]:
    """network -> the addresses of the joined gateways on it (their hosts' networks)."""
    out: dict[str, list[str]] = {}
    for entry, address in joined.values():
        network = snapshot.entry_networks.get((entry.namespace, entry.name), "")
        if network:
            out.setdefault(network, []).append(address)
    return {name: tuple(sorted(addresses)) for name, addresses in sorted(out.items())}


def config(snapshot: MeshSnapshot, node: ProxyNode, entry: ObjectKey, address: str
           ) -> east_west.Resources:
    """The joined gateway's resources at ``snapshot``: the control plane's gateway's, at
    the host's address, on its host's network, without the control-plane host's pods."""
    me = replace(east_west.gateway_node(address), id=node.id, access_log=node.access_log,
                 network=snapshot.entry_networks.get((entry.namespace, entry.name), ""))
    resources, problems = east_west.gateway_resources(snapshot, me, local=False)
    for problem in problems:
        log.warning("proxy %s at mesh version %d: %s", node.id, snapshot.version, problem)
    return resources

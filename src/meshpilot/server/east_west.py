"""The east-west gateway the control plane runs when it listens beyond loopback.

With ``up --listen ADDR`` an Envoy of the control plane listens at
``ADDR:``:data:`~meshpilot.xds.translate.east_west.GATEWAY_PORT` and passes mutual-TLS
connections through, by their SNI, to the pods of this host
(:mod:`meshpilot.xds.translate.east_west` says how). This object is its owner: the
gateway's node, its configuration per mesh snapshot (built once per snapshot, whatever
the number of its xDS streams), and which proxies see the pods through it: the proxies
of joined hosts, told apart by the credentials their hosts obtained (never by anything
a proxy says of itself). Without ``--listen`` there is none, and nothing changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from meshpilot.mesh import networks
from meshpilot.mesh.model import MeshSnapshot, ProxyNode
from meshpilot.xds.translate import east_west

log = logging.getLogger(__name__)

PROXY_NAME = "eastwestgateway"
"""The gateway's name among the control plane's own proxies (its run directory)."""


class EastWestGateway:
    """The gateway at ``listen``: its node and the config each proxy gets through it."""

    def __init__(self, listen: str) -> None:
        self.node = east_west.gateway_node(listen)
        self.address = (listen, east_west.GATEWAY_PORT)
        self._lock = threading.Lock()
        self._built: tuple[tuple[MeshSnapshot, str] | None, east_west.Resources] = (None, {})

    @property
    def endpoint(self) -> str:
        """host:port where joined hosts reach it (for endpoints.json)."""
        host = f"[{self.address[0]}]" if ":" in self.address[0] else self.address[0]
        return f"{host}:{self.address[1]}"

    def config(self, snapshot: MeshSnapshot, node: ProxyNode) -> east_west.Resources:
        """The gateway's resources at ``snapshot`` for the gateway's ``node`` as it
        introduced itself (its access log file), built once for them."""
        with self._lock:
            built_from, resources = self._built
            if built_from is None or built_from[0] is not snapshot or \
                    built_from[1] != node.access_log:
                me = replace(self.node, access_log=node.access_log)
                resources, problems = east_west.gateway_resources(
                    snapshot, networks.on_network(snapshot, me))
                for problem in problems:
                    log.warning("proxy %s at mesh version %d: %s", node.id,
                                snapshot.version, problem)
                self._built = ((snapshot, node.access_log), resources)
            return resources

    def wrap(self, snapshot: MeshSnapshot, remote: Collection[str],
             config_for: Callable[[ProxyNode], Mapping[str, Any]]
             ) -> Callable[[ProxyNode], Mapping[str, Any]]:
        """``config_for`` with the gateway's own config for the gateway, and, for the
        proxies whose node ids are in ``remote`` (joined hosts), endpoints through it."""

        def wrapped(node: ProxyNode) -> Mapping[str, Any]:
            if node.id == self.node.id:
                return self.config(snapshot, node)
            if node.id in remote:
                node = replace(node, via_gateway=self.address)
            return config_for(node)

        return wrapped

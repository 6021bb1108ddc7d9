"""Which joined host's node runs each Deployment, and what each node is to run.

A Deployment whose template names a node (``spec.nodeName`` or the hostname selector, see
:mod:`meshpilot.api.placement`) other than the control plane's own host runs on the joined
host that declared that node name. One moved from a joined host's node to another's keeps
running on the first until the second reports it ready, so the move fails no request;
:class:`Placements` keeps both, and counts each node's changes so a host's watch answers
as soon as what it is to run changed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from meshpilot.api.kubernetes import Deployment
from meshpilot.api.placement import is_local, node_of_spec
from meshpilot.mesh.tcp_outbound import TcpTarget
from meshpilot.runtime.pod_config import ConfigData, references

Key = tuple[str, str]  # (namespace, Deployment name)


@dataclass(frozen=True)
class Placed:
    """A Deployment placed on a joined host's node."""

    node: str
    deployment: Deployment
    body: Mapping[str, Any]  # as sent to the host's agent
    configs: tuple[dict[str, Any], ...] = ()
    """The ConfigMaps and Secrets its pods read (values in base64), sent with it: a host
    gets only those of the Deployments it runs, as a kubelet does."""


# Whether a Deployment placed on a node runs there with every replica ready.
ReadyThere = Callable[[Key, Placed], bool]


def placement(dep: Deployment) -> str:
    """The node a Deployment's template names (see :mod:`meshpilot.api.placement`)."""
    return node_of_spec(dep.spec.template.spec)


def configs_read_by(dep: Deployment, namespace: str, configs: ConfigData
                    ) -> tuple[dict[str, Any], ...]:
    """The ConfigMaps and Secrets (that exist) a Deployment's pods read, values in base64."""
    out = []
    for kind, name in references(dep.spec.template.spec):
        data = configs.get((kind, namespace, name))
        if data is not None:
            out.append({"kind": kind, "namespace": namespace, "name": name,
                        "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})
    return tuple(out)


@dataclass
class Placements:
    """The Deployments placed on joined hosts' nodes (see the module). Its owner's lock
    guards it: every method is called under that lock."""

    placed: dict[Key, Placed] = field(default_factory=dict)
    leaving: dict[Key, Placed] = field(default_factory=dict)
    """A Deployment moved from one joined host's node to another's: its old placement,
    run on by the old node until the new one reports it ready (as a rolling update
    keeps the old pods), so the move fails no request."""
    configs: ConfigData = field(default_factory=dict)
    tcp: tuple[TcpTarget, ...] = ()
    versions: dict[str, int] = field(default_factory=dict)
    """node -> how often what it is to run changed: a host's watch answers when its
    node's does, so the host syncs at once instead of at its next round."""

    def take_inputs(self, configs: ConfigData | None,
                    tcp_targets: Iterable[TcpTarget] | None) -> None:
        """The ConfigMaps and Secrets pods read, and the Services' TCP ports their
        sidecars give them; None keeps those last given."""
        if configs is not None:
            self.configs = configs
        if tcp_targets is not None:
            self.tcp = tuple(tcp_targets)

    def split(self, deployments: Iterable[tuple[str, str, Deployment]]
              ) -> tuple[list[tuple[str, str, Deployment]], dict[Key, Placed]]:
        """The Deployments this host runs, and those placed on other nodes. Reads only
        the configs last taken, so it may run outside the lock."""
        local, placed = [], {}
        for namespace, name, dep in deployments:
            node = placement(dep)
            if is_local(node):
                local.append((namespace, name, dep))
                continue
            body = dep.model_dump(mode="json", by_alias=True, exclude_none=True)
            placed[(namespace, name)] = Placed(node, dep, MappingProxyType(body),
                                               configs_read_by(dep, namespace, self.configs))
        return local, placed

    def replace(self, placed: dict[Key, Placed], ready: ReadyThere) -> None:
        """``placed`` from now on: moved Deployments kept leaving, changed nodes bumped."""
        for key, old in self.placed.items():
            new = placed.get(key)
            if new is not None and new.node != old.node and key not in self.leaving:
                self.leaving[key] = old  # left at once only when never ready there
        for key in self.placed.keys() | placed.keys():
            old, new = self.placed.get(key), placed.get(key)
            if old != new:
                self.bump(*(p.node for p in (old, new) if p is not None))
        self.placed = placed
        self.settle_leaving(ready)

    def settle_leaving(self, ready: ReadyThere) -> None:
        """Forget the old placements of moved Deployments that are ready where they went
        (or deleted, or back where they were)."""
        for key, old in list(self.leaving.items()):
            new = self.placed.get(key)
            if new is None or new.node == old.node or ready(key, new):
                del self.leaving[key]
                self.bump(old.node)

    def bump(self, *nodes: str) -> None:
        """What ``nodes`` run changed."""
        for node in nodes:
            self.versions[node] = self.versions.get(node, 0) + 1

    def version_of(self, node: str) -> int:
        """How often what ``node`` is to run has changed (0: never)."""
        return self.versions.get(node, 0)

    def of_node(self, node: str, ready: ReadyThere) -> dict[Key, Placed]:
        """The Deployments ``node`` runs: those placed on it, and those moving away from
        it that are not ready where they go yet."""
        self.settle_leaving(ready)
        mine = {k: p for k, p in self.leaving.items() if p.node == node}
        mine.update((k, p) for k, p in self.placed.items() if p.node == node)
        return mine

"""The control plane's runtime as its readers see it: this host's pods and the joined
hosts' (see :mod:`meshpilot.server.host_pods`), behind the one interface of
:class:`~meshpilot.runtime.LocalRuntime` that the mesh, the API and the rollouts read.

``sync`` hands this host's runtime only the Deployments placed here (and, while one
moves between this host and a joined one, its old pods stay where they were until the new
ones are ready, as a rolling update keeps them); ``pods`` and
``deployment_status`` answer for every Deployment wherever its pods run, so endpoints,
``kubectl get pods`` and Flagger's or Argo's readiness checks need not know where that is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from meshpilot.api.kubernetes import Deployment
from meshpilot.api.placement import is_local
from meshpilot.mesh.tcp_outbound import TcpTarget
from meshpilot.runtime import LocalRuntime, Pod
from meshpilot.runtime.pod_config import ConfigData
from meshpilot.server.host_placement import placement
from meshpilot.server.host_pods import HostPods


class PlacedRuntime:
    def __init__(self, local: LocalRuntime, hosts: HostPods) -> None:
        self.local = local
        self.hosts = hosts
        self._here: dict[tuple[str, str], Deployment] = {}
        """The Deployments last run here, kept while one placed elsewhere since has no
        ready pods of its new template there (as a rolling update keeps the old pods)."""
        self._there: dict[tuple[str, str], Deployment] = {}
        """The Deployments last placed on joined hosts, kept there while one moved here
        since has no ready pods here."""
        self.placing = False
        """Whether the last sync placed the Deployments (this replica leads and has placed
        since it took the lead): only then may joined hosts take what it places on their
        nodes, since a replica that does not place would tell them to run nothing."""

    @property
    def adopted(self) -> list[str]:
        return self.local.adopted

    def sync(self, deployments: Iterable[tuple[str, str, Deployment]],
             configs: ConfigData | None = None,
             tcp_targets: Iterable[TcpTarget] | None = None, *, placing_here: bool = True
             ) -> None:
        """Run ``deployments`` here or on the joined hosts' nodes; ``placing_here`` False: this
        replica does not lead (``deployments`` is empty), so hosts are to ask the one that
        does."""
        wanted = list(deployments)
        tcp = tuple(tcp_targets) if tcp_targets is not None else None
        back = {(ns, name): dep for ns, name, dep in wanted if (ns, name) in self._there
                and is_local(placement(dep)) and not self._ready_here(ns, name, dep)}
        placing = [w for w in wanted if (w[0], w[1]) not in back] + [
            (ns, name, self._there[(ns, name)]) for ns, name in back]
        here = {(ns, name): dep for ns, name, dep in self.hosts.place(placing, configs, tcp)}
        self.placing = placing_here
        self._there = {(ns, name): dep for ns, name, dep in placing if (ns, name) not in here}
        here.update(back)  # run here too, the old pods there kept until these are ready
        for ns, name, _dep in wanted:
            old = self._here.get((ns, name))
            if (ns, name) not in here and old is not None and not self._moved(ns, name):
                here[(ns, name)] = old
        self._here = here
        self.local.sync([(ns, name, dep) for (ns, name), dep in here.items()], configs, tcp)

    def _ready_here(self, namespace: str, name: str, dep: Deployment) -> bool:
        status = self.local.deployment_status(namespace, name)
        wanted = dep.spec.replicas
        return int(status.get("readyReplicas") or 0) >= wanted and \
            int(status.get("updatedReplicas") or 0) >= wanted

    def _moved(self, namespace: str, name: str) -> bool:
        status = self.hosts.deployment_status(namespace, name) or {}
        desired = int(status.get("desiredReplicas") or 0)
        return int(status.get("readyReplicas") or 0) >= desired and \
            int(status.get("updatedReplicas") or 0) >= desired

    def pods(self) -> list[Pod]:
        return sorted([*self.local.pods(), *self.hosts.pods()],
                      key=lambda p: (p.namespace, p.name))

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any]:
        placed = self.hosts.deployment_status(namespace, name)
        return placed if placed is not None else self.local.deployment_status(namespace, name)

    def sessions(self) -> set[int]:
        return self.local.sessions()

    def stop(self, timeout: float = 60.0) -> None:
        self.local.stop(timeout)

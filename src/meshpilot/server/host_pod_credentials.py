"""Certificates and xDS tokens of the sidecars of pods on joined hosts.

A pod's credential is issued only for a pod of a Deployment placed on its host's node
(the CSR's key stays on the host, as for the host's own sidecar), its xDS token bound to
the pod's identity as the template gives it (namespace, Deployment, pod, service account,
labels), so a host cannot have its sidecar served as another workload. The credentials
issued are kept while their pods run, and forgotten (and withdrawn from the other
replicas) once they are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from meshpilot.api.kubernetes import Deployment
from meshpilot.security.proxy_tokens import BoundIdentity
from meshpilot.server.host_registry import HostCredential

UNREPORTED_SECONDS = 60.0
"""How long a pod's credential is kept before its host first reports the pod."""

Held = tuple[str, HostCredential, float]  # (its host's node name, its credential, when issued)


def is_pod_node_id(nid: str, namespace: str, deployment: str) -> bool:
    """Whether ``nid`` is a node id (:func:`meshpilot.proxy.bootstrap.node_id`) of a
    sidecar of a pod of that Deployment: ``sidecar~IP~DEPLOYMENT-HASH-XXXXX.NS~...``."""
    parts = nid.split("~")
    if len(parts) != 4 or parts[0] != "sidecar":
        return False
    pod, _, ns = parts[2].rpartition(".")
    return ns == namespace and pod.startswith(f"{deployment}-") and \
        parts[3] == f"{namespace}.svc.cluster.local"


def service_account_of(dep: Deployment) -> str:
    """The service account a Deployment's pods run as (Kubernetes' default if none)."""
    spec = dep.spec.template.spec
    return spec.service_account_name or spec.service_account or "default"


def pod_identity(nid: str, namespace: str, deployment: str, dep: Deployment
                 ) -> BoundIdentity:
    """The identity a joined pod's sidecar token binds: the placed Deployment's template
    (labels, service account) and the pod name its node id carries, as the host's runtime
    describes the sidecar from the same Deployment (``runtime.LocalRuntime``), whatever
    the host says."""
    pod = nid.split("~")[2].rpartition(".")[0]
    return BoundIdentity.issued(
        kind="sidecar", namespace=namespace, workload=deployment, name=pod,
        service_account=service_account_of(dep), labels=dep.spec.template.metadata.labels)


@dataclass
class IssuedCredentials:
    """The credentials issued here, by the node id of the pod's sidecar. Its owner's lock
    guards it: every method is called under that lock. ``sharing``: whether the other
    replicas hold copies, so the forgotten ones are kept to withdraw there."""

    held: dict[str, Held] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    """Node ids whose credentials were forgotten here, to withdraw from the shared state."""

    def add(self, nid: str, node: str, credential: HostCredential, at: float) -> None:
        self.held[nid] = (node, credential, at)

    def keep(self, keep: Callable[[str, Held], bool], *, sharing: bool) -> None:
        """Keep the credentials ``keep`` says; the others are withdrawn from the shared
        state at the next round."""
        kept = {nid: held for nid, held in self.held.items() if keep(nid, held)}
        if sharing:
            self.dropped += [nid for nid in self.held if nid not in kept]
        self.held = kept

    def forget_gone(self, node: str, reported: set[str], now: float, *,
                    sharing: bool) -> None:
        """Credentials of ``node``'s pods that are gone (a pod's is issued before it is
        first reported, so one is kept for :data:`UNREPORTED_SECONDS`)."""
        self.keep(lambda nid, held: held[0] != node or nid in reported
                  or now - held[2] <= UNREPORTED_SECONDS, sharing=sharing)

    def forget_node(self, node: str, *, sharing: bool) -> None:
        """Every credential of a node forgotten (its host went silent)."""
        self.keep(lambda _nid, c: c[0] != node, sharing=sharing)

    def missing(self, node_ids: Iterable[str]) -> list[str]:
        """Those of ``node_ids`` that hold no credential here, sorted."""
        return sorted(nid for nid in node_ids if nid not in self.held)

    def of_pods(self, live: set[str], roots: bytes) -> dict[str, HostCredential]:
        """The credentials of the sidecars in ``live``, with today's trust bundle."""
        return {nid: HostCredential(c.chain_pem, c.key_file, roots)
                for nid, (_node, c, _at) in self.held.items() if nid in live}

    def take_dropped(self) -> list[str]:
        """The node ids forgotten since the last call, to withdraw from the others."""
        dropped, self.dropped = self.dropped, []
        return dropped


def refreshed(others: Mapping[str, HostCredential], mine: Mapping[str, HostCredential],
              roots: bytes) -> dict[str, HostCredential]:
    """Those another replica issued (its host reports there) with today's trust bundle,
    unless issued here too."""
    return {**{nid: replace(c, roots_pem=roots) for nid, c in others.items()}, **mine}

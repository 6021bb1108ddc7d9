"""Pods on joined hosts: which Deployments each host runs, and what its agent reports.

A Deployment whose template names a node (``spec.nodeName`` or the hostname selector,
see :mod:`meshpilot.api.placement`) other than the control plane's own host is not run
here: the joined host whose agent declared that node name runs its pods, with the same
runtime as this host's (:class:`meshpilot.runtime.LocalRuntime`), each pod with its own
sidecar. The agent asks for its Deployments and reports their pods and counts with every
sync; the leader folds those pods into the mesh's endpoints, ``kubectl get pods`` and the
rollouts' readiness checks as if they ran here.

What a host may claim is bounded by what it was given: a reported pod counts only for a
Deployment placed on that host's node, and it carries the template's labels, never the
host's; a pod's certificate and xDS token are issued only for a pod of such a Deployment
(the CSR's key stays on the host, as for the host's own sidecar), the token bound to the
pod's identity as the template gives it (namespace, Deployment, pod, service account,
labels): the host cannot have its sidecar served as another workload. A host whose syncs stop
for longer than ``timeout`` has its pods taken out of the endpoints (not ready), as its
WorkloadEntry is.

A Deployment placed on a node no host declared keeps its pods Pending with Kubernetes'
reason, Unschedulable, until a host of that name joins. One moved from a joined host's
node to another's keeps running on the first until the second reports it ready.

:class:`HostPods` holds the one lock and answers the sync protocol; what a node runs is
:mod:`host_placement`'s, how a report is read :mod:`host_pod_reports`', and the pods'
credentials :mod:`host_pod_credentials`'.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kubernetes import Deployment
from meshpilot.api.placement import LOCAL_NODE, joinable
from meshpilot.mesh.tcp_outbound import TcpTarget
from meshpilot.runtime.pod import Pod
from meshpilot.runtime.pod_config import ConfigData
from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.csr import CertificateRequestRefused
from meshpilot.security.identity import workload_identity
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.server.host_placement import Key, Placed, Placements
from meshpilot.server.host_pod_credentials import (
    UNREPORTED_SECONDS,
    IssuedCredentials,
    is_pod_node_id,
    pod_identity,
    refreshed,
    service_account_of,
)
from meshpilot.server.host_pod_reports import (
    NodeReport,
    endpoint_view,
    ready_on,
    reported_pod,
    reported_status,
    reported_statuses,
    unready,
    unscheduled,
)
from meshpilot.server.host_registry import HostCredential
from meshpilot.server.shared_pod_credentials import SharedPodCredentials
from meshpilot.validation.codes import NODE_NAME_REFUSED

__all__ = ["UNREPORTED_SECONDS", "HostPods", "HostPodsRefused"]


class HostPodsRefused(Exception):
    """A sync or credential request refused: ``status`` for the HTTP answer, ``code`` its
    diagnostic code (empty when none applies)."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class HostPods:
    """The placement of Deployments on joined hosts and their pods (see the module)."""

    proxy_tokens: ProxyTokens
    ca: Callable[[], CertificateAuthority]
    cert_ttl: timedelta
    timeout: float = 10.0
    grace: float = 300.0
    """Silence after which a host's node and pods are forgotten (its pods Pending again),
    as its WorkloadEntry is deleted after ``up --host-grace``."""
    changed: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.monotonic
    _placements: Placements = field(default_factory=Placements)
    _nodes: dict[str, NodeReport] = field(default_factory=dict)
    _issued: IssuedCredentials = field(default_factory=IssuedCredentials)
    shared: SharedPodCredentials | None = None
    """With replicas on etcd: where the credentials issued here go for the others, and
    theirs come from (a pod sidecar's xDS stream may be at any replica)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- placement (the control plane's side) -------------------------------------------
    def place(self, deployments: Iterable[tuple[str, str, Deployment]],
              configs: ConfigData | None = None,
              tcp_targets: Iterable[TcpTarget] | None = None
              ) -> list[tuple[str, str, Deployment]]:
        """Record the Deployments placed on other nodes, with the ConfigMaps and Secrets
        their pods read (``configs``) and the Services' TCP ports their sidecars give them
        (``tcp_targets``; None: those last given); the ones this host runs."""
        self._placements.take_inputs(configs, tcp_targets)
        local, placed = self._placements.split(deployments)
        with self._lock:
            self._placements.replace(placed, self._ready_there())
        return local

    def _ready_there(self) -> Callable[[Key, Placed], bool]:
        """Whether a Deployment runs ready on the node it is placed on, by that node's
        latest report (one within ``timeout``). Under the lock."""
        since = self.clock() - self.timeout
        return lambda key, placed: ready_on(self._nodes.get(placed.node), key, placed, since)

    def version_of(self, node: str) -> int:
        """How often what ``node`` is to run has changed (0: never)."""
        with self._lock:
            return self._placements.version_of(node)

    def _of_node(self, node: str) -> dict[Key, Placed]:
        """The Deployments ``node`` runs. Under the lock."""
        return self._placements.of_node(node, self._ready_there())

    def placed(self, namespace: str, name: str) -> bool:
        with self._lock:
            return (namespace, name) in self._placements.placed

    # --- the hosts' side ----------------------------------------------------------------
    def sync(self, member: ObjectKey, node: str, pods: list[Any],
             statuses: Mapping[str, Any],
             stats: Mapping[str, tuple[int, bytes]] | None = None) -> list[dict[str, Any]]:
        """A host's sync: it runs ``node``; its pods and counts as its runtime sees them,
        and their sidecars' counters (node id -> epoch, /stats JSON). Answers the
        Deployments it is to run (namespace, name, body)."""
        self._claim(member, node)
        with self._lock:
            mine = self._of_node(node)
            before = self._nodes[node].pods
            taken = tuple(replace(p, host_entry=(member.namespace, member.name))
                          for p in (reported_pod(raw, node, mine) for raw in pods)
                          if p is not None)
            self._issued.forget_gone(node, {p.node_id for p in taken}, self.clock(),
                                     sharing=self.shared is not None)
            self._nodes[node] = NodeReport(member, self.clock(), taken,
                                           reported_statuses(statuses, mine), {
                p.node_id: (stats or {})[p.node_id] for p in taken
                if p.node_id in (stats or {})})
        if endpoint_view(before) != endpoint_view(taken):
            self.changed()
        return [{"namespace": k[0], "name": k[1], "deployment": dict(p.body),
                 "configs": list(p.configs)} for k, p in sorted(mine.items())]

    def _claim(self, member: ObjectKey, node: str) -> None:
        if not joinable(node):
            raise HostPodsRefused(422, f"node name {node!r} refused: a DNS label (lower-case "
                                       f"letters, digits, '-') other than {LOCAL_NODE!r}, the "
                                       "control plane's own host", NODE_NAME_REFUSED.code)
        with self._lock:
            held = self._nodes.get(node)
            fresh = held is not None and self.clock() - held.seen <= self.timeout
            if fresh and held is not None and held.member != member:
                raise HostPodsRefused(409, f"node name {node!r} is taken by the host of "
                                           f"{held.member.namespace}/{held.member.name}: "
                                           "give this host another --node-name",
                                      NODE_NAME_REFUSED.code)
            self._nodes.setdefault(node, NodeReport(member, self.clock()))

    def credential(self, member: ObjectKey, node: str, request: Mapping[str, str]
                   ) -> dict[str, Any]:
        """The certificate (from the CSR made on the host) and xDS token of one pod's
        sidecar, only for a pod of a Deployment placed on that host's node; the token is bound
        to that pod's identity (:func:`host_pod_credentials.pod_identity`)."""
        namespace, deployment = request["namespace"], request["deployment"]
        with self._lock:
            held = self._nodes.get(node)
            placed = self._of_node(node).get((namespace, deployment))
        if held is None or held.member != member or placed is None or placed.node != node:
            raise HostPodsRefused(403, f"{namespace}/{deployment} is not placed on node "
                                       f"{node!r}, or that node is another host's")
        nid = request["nodeId"]
        if not is_pod_node_id(nid, namespace, deployment):
            raise HostPodsRefused(403, f"{nid!r} is not the sidecar of a pod of "
                                       f"{namespace}/{deployment}")
        ca = self.ca()
        try:
            identity = workload_identity(namespace, service_account_of(placed.deployment),
                                         trust_domain=ca.trust_domain)
            issued = ca.issue(request["csr"].encode(), identity, ttl=self.cert_ttl)
        except (CertificateRequestRefused, ValueError) as exc:
            raise HostPodsRefused(400, f"the CSR was refused: {exc}") from None
        credential = HostCredential(issued.chain_pem, request["keyFile"], ca.trust_bundle.pem)
        with self._lock:
            self._issued.add(nid, node, credential, self.clock())
        if self.shared is not None:
            self.shared.publish(nid, node, credential)
        self.changed()
        return {"certificateChain": issued.chain_pem.decode(),
                "roots": ca.trust_bundle.pem.decode(), "identity": issued.identity.uri,
                "xdsToken": self.proxy_tokens.issue(nid, pod_identity(
                    nid, namespace, deployment, placed.deployment))}

    def tcp_targets(self, node: str) -> list[dict[str, Any]]:
        """The TCP and TLS ports of the Services and ServiceEntry hosts the namespaces of
        ``node``'s Deployments reach:
        their pods reach them through local ports of their sidecars, as pods here do."""
        with self._lock:
            namespaces = {ns for ns, _ in self._of_node(node)}
            return [asdict(t) for t in self._placements.tcp
                    if any(t.reaches(ns) for ns in sorted(namespaces))]

    def uncredentialed(self, node: str) -> list[str]:
        """The node ids of ``node``'s reported pods whose sidecars this control plane
        holds no credential for (it restarted, or another replica issued them): the
        host is asked to issue them again, each with a new key made there."""
        with self._lock:
            held = self._nodes.get(node)
            return self._issued.missing(p.node_id for p in held.pods if p.node_id) \
                if held else []

    def credentials(self) -> Mapping[str, HostCredential]:
        """node id -> credential of every pod sidecar on a joined host that still runs."""
        roots = self.ca().trust_bundle.pem
        others = self.shared.held() if self.shared is not None else {}
        with self._lock:
            self._forget_silent(self.clock())
            live = {p.node_id for n in self._nodes.values() for p in n.pods}
            mine = self._issued.of_pods(live, roots)
        return MappingProxyType(refreshed(others, mine, roots))

    def sync_shared(self) -> None:
        """One round with the other replicas: withdraw the credentials forgotten here,
        take theirs (the mesh rebuilds when they changed)."""
        if self.shared is None:
            return
        with self._lock:
            self._forget_silent(self.clock())
            dropped = self._issued.take_dropped()
        self.shared.withdraw(dropped)
        if self.shared.take():
            self.changed()

    def sidecar_stats(self) -> list[tuple[Pod, int, bytes]]:
        """Every joined pod's sidecar whose counters its host sent last (while the host
        syncs): the pod, the epoch and the /stats JSON, for the mesh's telemetry."""
        now = self.clock()
        with self._lock:
            nodes = list(self._nodes.values())
        return [(p, *held.stats[p.node_id]) for held in nodes
                if now - held.seen <= self.timeout for p in held.pods
                if p.node_id in held.stats]

    # --- readers --------------------------------------------------------------------------
    def _forget_silent(self, now: float) -> None:
        """Nodes silent for longer than ``grace`` forgotten, with their pods'
        credentials. Under the lock."""
        for node in [n for n, held in self._nodes.items() if now - held.seen > self.grace]:
            del self._nodes[node]
            self._issued.forget_node(node, sharing=self.shared is not None)

    def pods(self) -> list[Pod]:
        """Pods on joined hosts (not ready once their host's syncs stopped), and the
        Pending pods of Deployments placed on a node no host declared."""
        now = self.clock()
        with self._lock:
            self._forget_silent(now)
            placed = dict(self._placements.placed)
            nodes = dict(self._nodes)
        out: list[Pod] = []
        for held in nodes.values():
            fresh = now - held.seen <= self.timeout
            out += [p if fresh or not p.ready else unready(p) for p in held.pods]
        for (namespace, name), where in sorted(placed.items()):
            if where.node not in nodes:
                out += unscheduled(namespace, name, where)
        return out

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A placed Deployment's counts as its host's runtime reported them (None if it is
        not placed on a joined host); none ready once the host went silent."""
        with self._lock:
            self._forget_silent(self.clock())
            where = self._placements.placed.get((namespace, name))
            held = self._nodes.get(where.node) if where is not None else None
        if where is None:
            return None
        return reported_status(namespace, name, where, held, self.clock(), self.timeout)

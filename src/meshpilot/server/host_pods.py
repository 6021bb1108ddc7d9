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
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kubernetes import Deployment
from meshpilot.api.placement import LOCAL_NODE, is_local, joinable, node_of_spec
from meshpilot.mesh.model import InboundPort
from meshpilot.mesh.protocols import port_protocol
from meshpilot.mesh.tcp_outbound import TcpTarget
from meshpilot.runtime.pod import Pod, template_hash
from meshpilot.runtime.pod_config import ConfigData, references
from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.csr import CertificateRequestRefused
from meshpilot.security.identity import workload_identity
from meshpilot.security.proxy_tokens import BoundIdentity, ProxyTokens
from meshpilot.server.host_registry import HostCredential
from meshpilot.server.shared_pod_credentials import SharedPodCredentials
from meshpilot.validation.codes import NODE_NAME_REFUSED

Key = tuple[str, str]  # (namespace, Deployment name)
UNREPORTED_SECONDS = 60.0
_PHASES = frozenset({"Pending", "Running", "Terminating", "Failed"})


class HostPodsRefused(Exception):
    """A sync or credential request refused: ``status`` for the HTTP answer, ``code`` its
    diagnostic code (empty when none applies)."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Placed:
    """A Deployment placed on a joined host's node."""

    node: str
    deployment: Deployment
    body: Mapping[str, Any]  # as sent to the host's agent
    configs: tuple[dict[str, Any], ...] = ()
    """The ConfigMaps and Secrets its pods read (values in base64), sent with it: a host
    gets only those of the Deployments it runs, as a kubelet does."""


@dataclass
class _Node:
    member: ObjectKey  # the host's WorkloadEntry
    seen: float
    pods: tuple[Pod, ...] = ()
    statuses: dict[Key, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # node id -> counters


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
    _placed: dict[Key, Placed] = field(default_factory=dict)
    _leaving: dict[Key, Placed] = field(default_factory=dict)
    """A Deployment moved from one joined host's node to another's: its old placement,
    run on by the old node until the new one reports it ready (as a rolling update
    keeps the old pods), so the move fails no request."""
    _configs: ConfigData = field(default_factory=dict)
    _tcp: tuple[TcpTarget, ...] = ()
    _nodes: dict[str, _Node] = field(default_factory=dict)
    _credentials: dict[str, tuple[str, HostCredential, float]] = field(default_factory=dict)
    """node id of a pod's sidecar -> (its host's node name, its credential, when issued)."""
    shared: SharedPodCredentials | None = None
    """With replicas on etcd: where the credentials issued here go for the others, and
    theirs come from (a pod sidecar's xDS stream may be at any replica)."""
    _dropped: list[str] = field(default_factory=list)
    """Node ids whose credentials were forgotten here, to withdraw from ``shared``."""
    _versions: dict[str, int] = field(default_factory=dict)
    """node -> how often what it is to run changed: a host's watch answers when its
    node's does, so the host syncs at once instead of at its next round."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- placement (the control plane's side) -------------------------------------------
    def place(self, deployments: Iterable[tuple[str, str, Deployment]],
              configs: ConfigData | None = None,
              tcp_targets: Iterable[TcpTarget] | None = None
              ) -> list[tuple[str, str, Deployment]]:
        """Record the Deployments placed on other nodes, with the ConfigMaps and Secrets
        their pods read (``configs``) and the Services' TCP ports their sidecars give them
        (``tcp_targets``; None: those last given); the ones this host runs."""
        if configs is not None:
            self._configs = configs
        if tcp_targets is not None:
            self._tcp = tuple(tcp_targets)
        local, placed = [], {}
        for namespace, name, dep in deployments:
            node = placement(dep)
            if is_local(node):
                local.append((namespace, name, dep))
                continue
            body = dep.model_dump(mode="json", by_alias=True, exclude_none=True)
            placed[(namespace, name)] = Placed(node, dep, MappingProxyType(body),
                                               _read_by(dep, namespace, self._configs))
        with self._lock:
            for key, old in self._placed.items():
                new = placed.get(key)
                if new is not None and new.node != old.node and key not in self._leaving:
                    self._leaving[key] = old  # left at once only when never ready there
            for key in self._placed.keys() | placed.keys():
                old, new = self._placed.get(key), placed.get(key)
                if old != new:
                    self._bump(*(p.node for p in (old, new) if p is not None))
            self._placed = placed
            self._settle_leaving()
        return local

    def _settle_leaving(self) -> None:
        """Forget the old placements of moved Deployments that are ready where they went
        (or deleted, or back where they were). Under the lock."""
        now = self.clock()
        for key, old in list(self._leaving.items()):
            new = self._placed.get(key)
            if new is None or new.node == old.node or _ready_on(
                    self._nodes.get(new.node), key, new, now - self.timeout):
                del self._leaving[key]
                self._bump(old.node)

    def _bump(self, *nodes: str) -> None:
        """What ``nodes`` run changed. Under the lock."""
        for node in nodes:
            self._versions[node] = self._versions.get(node, 0) + 1

    def version_of(self, node: str) -> int:
        """How often what ``node`` is to run has changed (0: never)."""
        with self._lock:
            return self._versions.get(node, 0)

    def _of_node(self, node: str) -> dict[Key, Placed]:
        """The Deployments ``node`` runs: those placed on it, and those moving away from
        it that are not ready where they go yet. Under the lock."""
        self._settle_leaving()
        mine = {k: p for k, p in self._leaving.items() if p.node == node}
        mine.update((k, p) for k, p in self._placed.items() if p.node == node)
        return mine

    def placed(self, namespace: str, name: str) -> bool:
        with self._lock:
            return (namespace, name) in self._placed

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
                          for p in (_pod(raw, node, mine) for raw in pods) if p is not None)
            self._forget_gone(node, {p.node_id for p in taken})
            self._nodes[node] = _Node(member, self.clock(), taken, {
                key: dict(statuses[f"{key[0]}/{key[1]}"]) for key in mine
                if isinstance(statuses.get(f"{key[0]}/{key[1]}"), Mapping)}, {
                p.node_id: (stats or {})[p.node_id] for p in taken
                if p.node_id in (stats or {})})
        if _endpoint_view(before) != _endpoint_view(taken):
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
            self._nodes.setdefault(node, _Node(member, self.clock()))

    def credential(self, member: ObjectKey, node: str, request: Mapping[str, str]
                   ) -> dict[str, Any]:
        """The certificate (from the CSR made on the host) and xDS token of one pod's
        sidecar, only for a pod of a Deployment placed on that host's node; the token is bound
        to that pod's identity (:func:`_pod_identity`)."""
        namespace, deployment = request["namespace"], request["deployment"]
        with self._lock:
            held = self._nodes.get(node)
            placed = self._of_node(node).get((namespace, deployment))
        if held is None or held.member != member or placed is None or placed.node != node:
            raise HostPodsRefused(403, f"{namespace}/{deployment} is not placed on node "
                                       f"{node!r}, or that node is another host's")
        nid = request["nodeId"]
        if not _pod_node_id(nid, namespace, deployment):
            raise HostPodsRefused(403, f"{nid!r} is not the sidecar of a pod of "
                                       f"{namespace}/{deployment}")
        spec = placed.deployment.spec.template.spec
        account = spec.service_account_name or spec.service_account or "default"
        ca = self.ca()
        try:
            identity = workload_identity(namespace, account, trust_domain=ca.trust_domain)
            issued = ca.issue(request["csr"].encode(), identity, ttl=self.cert_ttl)
        except (CertificateRequestRefused, ValueError) as exc:
            raise HostPodsRefused(400, f"the CSR was refused: {exc}") from None
        credential = HostCredential(issued.chain_pem, request["keyFile"], ca.trust_bundle.pem)
        with self._lock:
            self._credentials[nid] = (node, credential, self.clock())
        if self.shared is not None:
            self.shared.publish(nid, node, credential)
        self.changed()
        return {"certificateChain": issued.chain_pem.decode(),
                "roots": ca.trust_bundle.pem.decode(), "identity": issued.identity.uri,
                "xdsToken": self.proxy_tokens.issue(nid, _pod_identity(
                    nid, namespace, deployment, placed.deployment))}

    def tcp_targets(self, node: str) -> list[dict[str, Any]]:
        """The TCP and TLS ports of the Services and ServiceEntry hosts the namespaces of
        ``node``'s Deployments reach:
        their pods reach them through local ports of their sidecars, as pods here do."""
        with self._lock:
            namespaces = {ns for ns, _ in self._of_node(node)}
            return [asdict(t) for t in self._tcp
                    if any(t.reaches(ns) for ns in sorted(namespaces))]

    def uncredentialed(self, node: str) -> list[str]:
        """The node ids of ``node``'s reported pods whose sidecars this control plane
        holds no credential for (it restarted, or another replica issued them): the
        host is asked to issue them again, each with a new key made there."""
        with self._lock:
            held = self._nodes.get(node)
            return sorted(p.node_id for p in held.pods if p.node_id
                          and p.node_id not in self._credentials) if held else []

    def credentials(self) -> Mapping[str, HostCredential]:
        """node id -> credential of every pod sidecar on a joined host that still runs."""
        roots = self.ca().trust_bundle.pem
        others = self.shared.held() if self.shared is not None else {}
        with self._lock:
            self._forget_silent(self.clock())
            live = {p.node_id for n in self._nodes.values() for p in n.pods}
            mine = {nid: HostCredential(c.chain_pem, c.key_file, roots)
                    for nid, (_node, c, _at) in self._credentials.items() if nid in live}
        # those another replica issued (its host reports there), unless issued here too
        return MappingProxyType({**{nid: replace(c, roots_pem=roots)
                                    for nid, c in others.items()}, **mine})

    def sync_shared(self) -> None:
        """One round with the other replicas: withdraw the credentials forgotten here,
        take theirs (the mesh rebuilds when they changed)."""
        if self.shared is None:
            return
        with self._lock:
            self._forget_silent(self.clock())
            dropped, self._dropped = self._dropped, []
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
    def _forget_gone(self, node: str, reported: set[str]) -> None:
        """Credentials of ``node``'s pods that are gone (a pod's is issued before it is
        first reported, so one is kept for :data:`UNREPORTED_SECONDS`). Under the lock."""
        now = self.clock()
        self._keep_credentials(lambda nid, held: held[0] != node or nid in reported
                               or now - held[2] <= UNREPORTED_SECONDS)

    def _keep_credentials(self, keep: Callable[[str, tuple[str, HostCredential, float]],
                                               bool]) -> None:
        """Keep the credentials ``keep`` says; the others are withdrawn from the shared
        state at the next round. Under the lock."""
        kept = {nid: held for nid, held in self._credentials.items() if keep(nid, held)}
        if self.shared is not None:
            self._dropped += [nid for nid in self._credentials if nid not in kept]
        self._credentials = kept

    def _forget_silent(self, now: float) -> None:
        """Called under the lock."""
        for node in [n for n, held in self._nodes.items() if now - held.seen > self.grace]:
            del self._nodes[node]
            self._keep_credentials(lambda _nid, c, gone=node: c[0] != gone)

    def pods(self) -> list[Pod]:
        """Pods on joined hosts (not ready once their host's syncs stopped), and the
        Pending pods of Deployments placed on a node no host declared."""
        now = self.clock()
        with self._lock:
            self._forget_silent(now)
            placed = dict(self._placed)
            nodes = dict(self._nodes)
        out: list[Pod] = []
        for held in nodes.values():
            fresh = now - held.seen <= self.timeout
            out += [p if fresh or not p.ready else _unready(p) for p in held.pods]
        for (namespace, name), where in sorted(placed.items()):
            if where.node not in nodes:
                out += _unscheduled(namespace, name, where)
        return out

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A placed Deployment's counts as its host's runtime reported them (None if it is
        not placed on a joined host); none ready once the host went silent."""
        with self._lock:
            self._forget_silent(self.clock())
            where = self._placed.get((namespace, name))
            held = self._nodes.get(where.node) if where is not None else None
        if where is None:
            return None
        dep = where.deployment
        base = {"desiredReplicas": dep.spec.replicas, "replicas": 0, "readyReplicas": 0,
                "availableReplicas": 0, "updatedReplicas": 0, "terminatingReplicas": 0,
                "templateHash": None, "specHash": None,
                "observedGeneration": dep.metadata.generation,
                "error": f"0/1 nodes are available: no joined host has the node name "
                         f"{where.node!r} (host join --node-name)"}
        if held is None:
            return base
        reported = held.statuses.get((namespace, name)) or {}
        status = {**base, **{k: reported[k] for k in base if k in reported},
                  "desiredReplicas": dep.spec.replicas,
                  "observedGeneration": dep.metadata.generation,
                  "error": reported.get("error")}
        if self.clock() - held.seen > self.timeout:
            status.update(readyReplicas=0, availableReplicas=0,
                          error=f"node {where.node!r} has not reported for "
                                f"{self.timeout:g}s")
        return status


def placement(dep: Deployment) -> str:
    """The node a Deployment's template names (see :mod:`meshpilot.api.placement`)."""
    return node_of_spec(dep.spec.template.spec)


def _read_by(dep: Deployment, namespace: str, configs: ConfigData
             ) -> tuple[dict[str, Any], ...]:
    """The ConfigMaps and Secrets (that exist) a Deployment's pods read, values in base64."""
    out = []
    for kind, name in references(dep.spec.template.spec):
        data = configs.get((kind, namespace, name))
        if data is not None:
            out.append({"kind": kind, "namespace": namespace, "name": name,
                        "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})
    return tuple(out)


def _pod_node_id(nid: str, namespace: str, deployment: str) -> bool:
    """Whether ``nid`` is a node id (:func:`meshpilot.proxy.bootstrap.node_id`) of a
    sidecar of a pod of that Deployment: ``sidecar~IP~DEPLOYMENT-HASH-XXXXX.NS~...``."""
    parts = nid.split("~")
    if len(parts) != 4 or parts[0] != "sidecar":
        return False
    pod, _, ns = parts[2].rpartition(".")
    return ns == namespace and pod.startswith(f"{deployment}-") and \
        parts[3] == f"{namespace}.svc.cluster.local"


def _pod_identity(nid: str, namespace: str, deployment: str, dep: Deployment
                  ) -> BoundIdentity:
    """The identity a joined pod's sidecar token binds: the placed Deployment's template
    (labels, service account) and the pod name its node id carries, as the host's runtime
    describes the sidecar from the same Deployment (``runtime.LocalRuntime``), whatever
    the host says."""
    spec = dep.spec.template.spec
    pod = nid.split("~")[2].rpartition(".")[0]
    return BoundIdentity.issued(
        kind="sidecar", namespace=namespace, workload=deployment, name=pod,
        service_account=spec.service_account_name or spec.service_account or "default",
        labels=dep.spec.template.metadata.labels)


def _ready_on(held: _Node | None, key: Key, placed: Placed, since: float) -> bool:
    """Whether ``held`` (a node that reported after ``since``) runs every replica of
    ``placed``'s template ready."""
    if held is None or held.seen < since:
        return False
    status = held.statuses.get(key) or {}
    wanted = placed.deployment.spec.replicas
    return int(status.get("readyReplicas") or 0) >= wanted and \
        int(status.get("updatedReplicas") or 0) >= wanted


def _endpoint_view(pods: Iterable[Pod]) -> set[tuple[Any, ...]]:
    return {(p.name, p.ip, p.ready, p.phase, p.inbound) for p in pods}


def _unready(pod: Pod) -> Pod:
    return replace(pod, ready=False, message=f"node {pod.node} stopped reporting")


def _pod(raw: Any, node: str, mine: Mapping[Key, Placed]) -> Pod | None:
    """A reported pod, if it is one of a Deployment placed on ``node`` (with that
    Deployment's template labels and service account, whatever the host says)."""
    if not isinstance(raw, Mapping):
        return None
    key = (str(raw.get("namespace", "")), str(raw.get("deployment", "")))
    placed = mine.get(key)
    name = str(raw.get("name", ""))
    if placed is None or not name.startswith(f"{key[1]}-"):
        return None
    spec = placed.deployment.spec.template.spec
    try:
        inbound = tuple(InboundPort(int(p["containerPort"]), int(p["appPort"]),
                                    str(p.get("name", "")),
                                    port_protocol(str(p.get("name", ""))))
                        for p in raw.get("inbound") or ())
        restarts = int(raw.get("restarts") or 0)
        started = float(raw["startedAt"]) if raw.get("startedAt") is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    phase = raw.get("phase")
    return Pod(
        name=name, namespace=key[0], deployment=key[1],
        labels=dict(placed.deployment.spec.template.metadata.labels),
        ip=str(raw.get("ip", "")), inbound=inbound,
        phase=phase if phase in _PHASES else "Pending",  # type: ignore[arg-type]
        ready=raw.get("ready") is True, restarts=restarts,
        message=str(raw.get("message", "")), template_hash=str(raw.get("templateHash", "")),
        started_at=started, admin_socket="", node_id=str(raw.get("nodeId", "")),
        service_account=spec.service_account_name or spec.service_account or "default",
        reason=str(raw.get("reason", "")), node=node)


def _unscheduled(namespace: str, name: str, where: Placed) -> list[Pod]:
    """Kubernetes' unschedulable pods: Pending, no address, the reason in describe."""
    revision = template_hash(where.deployment)
    message = (f"0/1 nodes are available: no joined host has the node name {where.node!r}; "
               f"it runs here once a host joins with --node-name {where.node}")
    return [Pod(name=f"{name}-{revision}-pending{i}", namespace=namespace, deployment=name,
                labels=dict(where.deployment.spec.template.metadata.labels), ip="",
                inbound=(), phase="Pending", ready=False, restarts=0, message=message,
                template_hash=revision, started_at=None, admin_socket="", node_id="",
                reason="Unschedulable", node=where.node)
            for i in range(where.deployment.spec.replicas)]


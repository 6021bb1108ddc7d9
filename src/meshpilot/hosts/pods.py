"""The pods the control plane placed on this host's node, run by the agent.

A Deployment whose template names this host's node (``host join --node-name``) is run
here by the same runtime as on the control plane's host (:class:`~meshpilot.runtime.
LocalRuntime`): the same pods, images, environment, probes and rolling updates, each pod
with its own Envoy sidecar. What differs is the network and the identity:

- **Addresses.** Pods take addresses from ``--pod-addresses`` (a CIDR of this host's own
  addresses, which must be assigned to it), by default the host's address alone, so one
  pod fits at a time, as with ``hostNetwork`` pods; a pod whose ports are taken there
  waits with the runtime's "no free pod IP" error, visible in describe. Other hosts reach
  the pods at those addresses, through their sidecar's inbound listener only: the app
  binds the loopback twin of its pod's address (:meth:`HostSide.app_address`), so no
  plaintext reaches it across hosts.
- **Identity.** Each sidecar's key is made here (0600, never sent); its CSR goes to the
  control plane with the host's credential, which signs it for the Deployment's service
  account and answers the sidecar's xDS token (a different one, answered when the
  certificate is issued again, restarts the sidecar with it). At about half the certificate's life a
  new key and certificate replace them (the control plane serves the sidecar the new
  chain and key file over SDS, without a restart). The sidecar speaks xDS over the host's
  mutual-TLS channel (every replica, as the host's own sidecar does).

Every sync (each report round, and at once when a pod changes) sends the pods and the
Deployments' counts and takes the Deployments this node is to run.
"""

from __future__ import annotations

import base64
import logging
import threading
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshpilot.api.kubernetes import Deployment
from meshpilot.hosts.identity import HostFiles
from meshpilot.mesh.model import ProxyNode
from meshpilot.mesh.tcp_outbound import TcpTarget
from meshpilot.proxy.admin import AdminClient
from meshpilot.runtime import ImageMap, LocalRuntime, Pod
from meshpilot.runtime.runtime import HostSide

log = logging.getLogger(__name__)

Post = Callable[[str, dict[str, Any]], dict[str, Any]]
Secure = Callable[[ProxyNode, str], dict[str, Any]]


def reported(pod: Pod) -> dict[str, Any]:
    """A pod as the control plane reads it (:mod:`meshpilot.server.host_pods`)."""
    return {"name": pod.name, "namespace": pod.namespace, "deployment": pod.deployment,
            "ip": pod.ip, "phase": pod.phase, "ready": pod.ready, "restarts": pod.restarts,
            "message": pod.message, "reason": pod.reason, "templateHash": pod.template_hash,
            "startedAt": pod.started_at, "nodeId": pod.node_id,
            "inbound": [{"containerPort": p.container_port, "appPort": p.app_port,
                         "name": p.name} for p in pod.inbound]}


def _configs(items: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, bytes]]:
    """The ConfigMaps and Secrets sent with a Deployment (values in base64), as the
    runtime reads them; kept in memory only (Secret volumes are written 0600)."""
    return {(str(c["kind"]), str(c["namespace"]), str(c["name"])): {
        str(k): base64.b64decode(v, validate=True) for k, v in dict(c["data"]).items()}
        for c in items}


class HostPods:
    """This host's pods: :meth:`sync` each round, :meth:`stop` at the end."""

    def __init__(self, *, node: str, address: str, pod_addresses: str, state_dir: Path,
                 credential: dict[str, str], post: Post, secure: Secure,
                 stats_query: Mapping[str, str] | None = None) -> None:
        self.node = node
        self.stats_query = stats_query
        """What the control plane reads of each sidecar's admin ``/stats`` (none: no
        counters are sent)."""
        self.credential = credential  # namespace, entry, hostToken of the join
        self._post = post
        self._secure = secure
        self._keys = state_dir / "pod-identity"
        self.changed = threading.Event()
        """Set when a pod appears, goes or changes readiness: sync without waiting."""
        self._deployments: dict[tuple[str, str], Deployment] = {}
        self._lock = threading.Lock()
        self._issued: dict[str, tuple[ProxyNode, HostFiles]] = {}
        """node id -> a running pod sidecar and its key and certificate files."""
        self._tokens: dict[str, str] = {}
        """node id -> the xDS token its sidecar's bootstrap presents."""
        self.runtime = LocalRuntime(
            state_dir / "pods", xds_host=address, xds_port=0, on_change=self.changed.set,
            images=ImageMap.default(state_dir), ip_range=pod_addresses, adopt=False,
            access_log=False, ip_lock_dir=state_dir / "ipam",
            host=HostSide(node, address, self._bootstrap))

    def _bootstrap(self, node: ProxyNode, _doc: dict[str, Any]) -> dict[str, Any]:
        """The pod sidecar's bootstrap: a key made here, its certificate and xDS token
        from the control plane, xDS over the host's mutual-TLS channel."""
        files = HostFiles(self._keys / node.name)
        answer = self._issue(node, files, 0)
        with self._lock:
            self._issued[node.id] = (node, files)
            self._tokens[node.id] = str(answer["xdsToken"])
        return self._secure(node, str(answer["xdsToken"]))

    def _take_token(self, node: ProxyNode, answer: Mapping[str, Any]) -> None:
        """A certificate issued again comes with the sidecar's xDS token as the control
        plane issues it now; one that differs from the bootstrap's (the control plane was
        upgraded to another token binding, or its key changed) would have the sidecar
        refused at its next stream, so the sidecar restarts with a bootstrap that
        presents it, as a pod whose bootstrap changed is restarted and not adopted."""
        token = str(answer.get("xdsToken") or "")
        with self._lock:
            if not token or self._tokens.get(node.id, token) == token:
                return
            self._tokens[node.id] = token
        if self.runtime.refresh_sidecar(node.id, self._secure(node, token)):
            log.warning("sidecar of pod %s restarts with its new xDS token", node.name)

    def _issue(self, node: ProxyNode, files: HostFiles, generation: int) -> dict[str, Any]:
        """A new key (generation ``generation``) and its certificate for a pod's sidecar;
        the control plane serves the sidecar the chain with the key's file here."""
        csr = files.new_key(generation)
        answer = self._post("pod-credential", {
            **self.credential, "node": self.node, "podNamespace": node.namespace,
            "deployment": node.workload, "nodeId": node.id, "csr": csr.decode(),
            "keyFile": str(files.key_of(generation))})
        files.save(generation, str(answer["certificateChain"]).encode(),
                   str(answer["roots"]).encode())
        return answer

    def reissue(self, node_ids: list[str]) -> None:
        """New keys and certificates for the sidecars the control plane holds none for
        (it restarted, or a new leader took over): the sidecar keeps its xDS stream and
        gets the new chain over SDS."""
        with self._lock:
            asked = [self._issued[nid] for nid in node_ids if nid in self._issued]
        for node, files in asked:
            try:
                answer = self._issue(node, files, files.generation + 1)
            except Exception as exc:  # asked again at the next sync
                log.warning("certificate of pod %s not issued again: %s", node.name, exc)
                continue
            self._take_token(node, answer)
            log.warning("certificate of pod %s issued again (generation %d)", node.name,
                        files.generation)

    def renew_due(self, now: datetime | None = None) -> int:
        """Renew every running pod sidecar's certificate at about half its life, with a
        new key made here (as the host renews its own); how many were renewed."""
        now = now or datetime.now(UTC)
        running = {p.node_id for p in self.runtime.pods()}
        with self._lock:
            self._issued = {nid: held for nid, held in self._issued.items() if nid in running}
            self._tokens = {nid: t for nid, t in self._tokens.items() if nid in running}
            due = [held for held in self._issued.values() if now >= held[1].renew_at()]
        for node, files in due:
            try:
                answer = self._issue(node, files, files.generation + 1)
            except Exception as exc:  # the current one is still valid: next round
                log.warning("certificate of pod %s not renewed: %s", node.name, exc)
                continue
            self._take_token(node, answer)
            log.warning("certificate of pod %s renewed (generation %d)", node.name,
                        files.generation)
        return len(due)

    def sync(self) -> None:
        """Report the pods and counts; run what the answer places here."""
        self.changed.clear()
        statuses = {f"{ns}/{name}": self.runtime.deployment_status(ns, name)
                    for ns, name in self._deployments}
        answer = self._post("pods", {**self.credential, "node": self.node,
                                     "pods": [reported(p) for p in self.runtime.pods()],
                                     "deployments": statuses, "stats": self._stats()})
        wanted: dict[tuple[str, str], Deployment] = {}
        configs: dict[tuple[str, str, str], dict[str, bytes]] = {}
        for item in answer.get("deployments") or []:
            key = (str(item["namespace"]), str(item["name"]))
            try:
                wanted[key] = Deployment.model_validate(item["deployment"])
                configs.update(_configs(item.get("configs") or []))
            except (ValueError, TypeError, KeyError) as exc:  # binascii.Error is one
                log.warning("Deployment %s/%s not run here: %s", *key, exc)
        if wanted.keys() != self._deployments.keys():
            log.warning("node %s runs %s", self.node,
                        ", ".join(f"{ns}/{name}" for ns, name in sorted(wanted)) or "nothing")
        self._deployments = wanted
        try:
            tcp = tuple(TcpTarget(**{**t, "export_to": tuple(t.get("export_to") or ())})
                        for t in answer.get("tcpTargets") or [])
        except TypeError as exc:
            log.warning("TCP service ports not taken: %s", exc)
            tcp = ()
        self.runtime.sync([(ns, name, dep) for (ns, name), dep in sorted(wanted.items())],
                          configs, tcp)
        self.renew_due()
        self.reissue([str(n) for n in answer.get("reissue") or []])

    def _stats(self) -> dict[str, dict[str, Any]]:
        """Each running sidecar's counters by node id, as the host's own sidecar's are
        sent (compressed, its process as the epoch): the control plane cannot reach
        their admin sockets here."""
        out: dict[str, dict[str, Any]] = {}
        if not self.stats_query:
            return out
        for pod in self.runtime.pods():
            if not pod.admin_socket or not pod.sidecar_pid:
                continue
            try:
                with AdminClient(pod.admin_socket) as admin:
                    body = admin.stats_bytes(self.stats_query)
            except Exception as exc:  # this round goes without them
                log.warning("sidecar stats of %s not read: %s", pod.name, exc)
                continue
            out[pod.node_id] = {"stats": base64.b64encode(zlib.compress(body)).decode(),
                                "epoch": pod.sidecar_pid}
        return out

    def stop(self) -> None:
        self.runtime.stop(timeout=30)

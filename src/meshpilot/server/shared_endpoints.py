"""The leader's pods as endpoints of every replica's proxies.

Only the leader runs the local runtime's pods, yet every replica serves xDS: without
this, a proxy connected to a follower would know the Services but none of their pods.
Each replica tells the others the workloads it runs (in its record in the replica
directory, :mod:`meshpilot.store.replicas`, which goes with the replica's lease when it
dies), and folds the others' into its own mesh snapshot, so every replica's proxies get
the same endpoints within a directory poll.

The pods and the config must reach a follower's proxies in the order the leader acted
on them (its rollout moves weight to a canary only once the canary's pods are ready):
each replica's record also names the store revision its mesh was built from, and a
follower holds a rebuild at revision R back until the leader's record says it built R
or later (``MAX_LAG`` seconds at most, for a slow or dead leader), so a route never
reaches a follower's proxies before the pods it sends to.

When a replica leaves (its lease lapsed: it died), its pods are kept as endpoints until
this replica runs ready pods of the same Deployment, or for ``KEEP_DEPARTED`` seconds at
most, as Kubernetes keeps a lost node's pods in the endpoints until the node is declared
dead: a leader whose process died on a host that lives on leaves its pods serving, and
the new leader's proxies go on sending to them until its own pods are ready, so the
hand-over costs no request. Ready means what it does for any endpoint: the app answers its
probe and its sidecar is LIVE (:mod:`meshpilot.runtime.pod`); a pod counted ready while its
sidecar had no inbound listener yet ended the hand-over onto a pod refusing connections.

The departed leader's pods are not stopped here: this replica cannot prove them to be
that dead control plane's processes (its run directory and processes are not named in
the directory, and a replica on another host cannot reach them at all), so they run on,
out of the endpoints once the bound passes, until that replica starts again on its state
directory and adopts or stops them. A warning says so when a replica departs.

The pods' addresses are the leader host's (loopback addresses with the local runtime):
reachable from replicas on the same host; a replica on another host takes them with the
leader's east-west gateway, through which its proxies reach them
(:mod:`meshpilot.server.replica_hosts`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from meshpilot.mesh.model import InboundPort, WorkloadInstance
from meshpilot.server.replica_hosts import host_gateway
from meshpilot.store.replicas import ReplicaDirectory, SingleReplica

log = logging.getLogger(__name__)

FIELD = "workloads"
KEEP_DEPARTED = 30.0
MAX_LAG = 2.0


def record(w: WorkloadInstance) -> dict[str, Any]:
    return {"name": w.name, "namespace": w.namespace, "ip": w.ip, "labels": dict(w.labels),
            "ports": [[p.container_port, p.app_port, p.name, p.protocol] for p in w.ports],
            "ready": w.ready, "workload": w.workload, "serviceAccount": w.service_account,
            **({"hostEntry": list(w.host_entry)} if w.host_entry is not None else {})}


def instance(row: dict[str, Any], host_gateway: str = "") -> WorkloadInstance:
    entry = row.get("hostEntry")
    host_entry = (str(entry[0]), str(entry[1])) \
        if isinstance(entry, list) and len(entry) == 2 else None
    return WorkloadInstance(host_gateway=host_gateway, host_entry=host_entry,
        name=str(row["name"]), namespace=str(row["namespace"]), ip=str(row["ip"]),
        labels={str(k): str(v) for k, v in dict(row.get("labels") or {}).items()},
        ports=tuple(InboundPort(int(p[0]), int(p[1]), str(p[2]), p[3])
                    for p in row.get("ports") or []),
        ready=row.get("ready") is True, has_sidecar=True, workload=str(row.get("workload", "")),
        service_account=str(row.get("serviceAccount") or "default"))


class SharedEndpoints:
    """``share`` this replica's workloads; ``others`` the other replicas' (the same
    objects while a replica's list does not change: the snapshot builder's identity
    contract, see :mod:`meshpilot.xds`)."""

    def __init__(self, directory: ReplicaDirectory | SingleReplica, *,
                 keep_departed: float = KEEP_DEPARTED,
                 clock: Callable[[], float] = time.monotonic, loopback: str = "") -> None:
        self._directory = directory
        self._loopback = loopback  # which host this replica is on (replica_hosts)
        self._keep, self._clock = keep_departed, clock
        self._held: dict[str, tuple[str, list[WorkloadInstance]]] = {}
        self._departed: dict[str, tuple[float, list[WorkloadInstance]]] = {}
        self._ready_here: set[tuple[str, str]] = set()  # (namespace, deployment)
        self._behind_since: float | None = None

    def share(self, workloads: list[WorkloadInstance], revision: int = 0) -> None:
        """Tell the others the pods this replica runs, as of store ``revision``."""
        self._ready_here = {(w.namespace, w.workload_name) for w in workloads if w.ready}
        self._directory.update(**{FIELD: [record(w) for w in workloads],
                                  "revision": revision})

    def behind(self, revision: int) -> bool:
        """Whether a rebuild at store ``revision`` should wait for the leader's pods as
        of that revision (see the module); False once it waited ``MAX_LAG``, until the
        leader has caught up again."""
        lagging = any(r.get("leading") is True and int(r.get("revision") or 0) < revision
                      for r in self._directory.replicas()
                      if r.get("identity") != self._directory.identity)
        if not lagging:
            self._behind_since = None
            return False
        now = self._clock()
        if self._behind_since is None:
            self._behind_since = now
        return now - self._behind_since <= MAX_LAG

    def others(self) -> list[WorkloadInstance]:
        held: dict[str, tuple[str, list[WorkloadInstance]]] = {}
        out: list[WorkloadInstance] = []
        for replica in self._directory.replicas():
            identity = str(replica.get("identity"))
            if identity == self._directory.identity:
                continue
            rows = replica.get(FIELD) or []
            gateway = host_gateway(replica, self._loopback)
            text = json.dumps([gateway, rows], sort_keys=True)
            known = self._held.get(identity)
            if known is None or known[0] != text:
                known = (text, [instance(r, gateway) for r in rows])
            held[identity] = known
            out += known[1]
        now = self._clock()
        for identity in self._held.keys() - held.keys():  # gone since the last call
            pods = self._held[identity][1]
            self._departed[identity] = (now + self._keep, pods)
            if pods:
                log.warning(
                    "replica %s left; its %d pod(s) (%s) stay endpoints until this "
                    "replica's own of each Deployment are ready (%gs at most) and are not "
                    "stopped from here: starting that replica again on its state "
                    "directory stops or adopts them", identity, len(pods),
                    ", ".join(sorted(f"{w.namespace}/{w.name}" for w in pods)), self._keep)
        self._held = held
        return out + self._still_departed(now)

    def departing(self) -> bool:
        """Whether a departed replica's pods are still kept (the mesh rebuilds each poll
        meanwhile, so they go when the bound passes even if nothing else changes)."""
        return bool(self._departed)

    def _still_departed(self, now: float) -> list[WorkloadInstance]:
        """The departed replicas' pods of Deployments not ready here yet, within the
        bound (the same objects while kept: the list is filtered, never rebuilt)."""
        kept: dict[str, tuple[float, list[WorkloadInstance]]] = {}
        for identity, (until, pods) in self._departed.items():
            waiting = [w for w in pods
                       if (w.namespace, w.workload_name) not in self._ready_here]
            if waiting and now < until:
                kept[identity] = (until, waiting)
        self._departed = kept
        return [w for _until, pods in kept.values() for w in pods]

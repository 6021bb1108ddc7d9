"""Joined pods' sidecar certificates, shared by the control-plane replicas on one etcd.

A joined host's agent asks one replica (the one it reports to) for each pod sidecar's
certificate, but the sidecar's xDS stream may be at any replica, which serves the
certificate over SDS only if it holds it. So the replica that issues one writes it to the
replicas' shared state (:class:`~meshpilot.store.shared.SharedRecords`, area
:data:`AREA`, one record per sidecar node id) and every replica takes the others' in its
rounds, as the joined hosts' own sidecars' are shared by the host registry. A record
holds nothing secret: the chain, and the key's file name on that host (the key never
leaves it). The issuing replica withdraws the record when the pod is gone; one whose
issuer died goes with the next certificate of that sidecar (the agent is asked to issue
again by the replica it then reports to) or stays harmless: only that sidecar's xDS
token can ask for it, and the chain expires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from meshpilot.server.host_registry import HostCredential
from meshpilot.store.etcd_client import EtcdError, EtcdUnavailable
from meshpilot.store.shared import SharedRecords

log = logging.getLogger(__name__)

AREA = "pod-credentials"
MAX_RECORDS = 10_000
"""Records taken in one round at most (a bound on what the store may hold us to)."""


class SharedPodCredentials:
    """``publish`` and ``withdraw`` this replica's; ``take`` the others' each round and
    read them with ``held``. Thread-safe; etcd errors are logged and retried next
    round (the issuing replica serves its own meanwhile)."""

    def __init__(self, shared: SharedRecords) -> None:
        self._shared = shared
        self._lock = threading.Lock()
        self._held: Mapping[str, HostCredential] = MappingProxyType({})
        self._seen: dict[str, int] = {}  # node id -> revision of the record taken

    def publish(self, node_id: str, node: str, credential: HostCredential) -> None:
        try:
            self._shared.put(AREA, node_id, {"node": node, "keyFile": credential.key_file,
                                             "chain": credential.chain_pem.decode()})
        except (EtcdError, EtcdUnavailable) as exc:
            log.warning("certificate of %s not shared with the other replicas: %s",
                        node_id, exc)

    def withdraw(self, node_ids: Iterable[str]) -> None:
        for nid in node_ids:
            try:
                self._shared.delete(AREA, nid)
            except (EtcdError, EtcdUnavailable) as exc:
                log.warning("certificate of %s not withdrawn: %s", nid, exc)

    def take(self) -> bool:
        """Read every shared record; whether what is held changed."""
        records = self._shared.items(AREA)
        revisions = {nid: r.revision for nid, r in list(records.items())[:MAX_RECORDS]}
        with self._lock:
            if revisions == self._seen:
                return False
        held = {}
        for nid in revisions:
            value = records[nid].value
            chain, key_file = value.get("chain"), value.get("keyFile")
            if isinstance(chain, str) and isinstance(key_file, str) and chain and key_file:
                held[nid] = HostCredential(chain.encode(), key_file, b"")
        with self._lock:
            self._held, self._seen = MappingProxyType(held), revisions
        return True

    def held(self) -> Mapping[str, HostCredential]:
        """node id -> credential (without roots: the reader adds the current ones)."""
        with self._lock:
            return self._held

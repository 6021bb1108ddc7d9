"""Which control-plane replicas are alive, and where proxies and hosts reach them.

Every replica on one etcd writes one record (its API URL and mutual-TLS xDS address)
under a lease of its own that it keeps alive; a replica that dies takes its record with
it once the lease lapses (``ttl``), and one that stops revokes it at once. Every replica
reads the records every ``poll`` seconds, so each can tell a joining host, and write in
its endpoints.json, every replica there is: a host whose replica dies goes on with
another by itself (its sidecar's xDS names them all; its agent tries each in turn).

With SQLite there is one control plane: :class:`SingleReplica` names only itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from meshpilot.store.etcd_client import EtcdError, EtcdUnavailable
from meshpilot.store.shared import SharedRecords

log = logging.getLogger(__name__)

AREA = "replicas"
TTL = 3
POLL_SECONDS = 1.0

Replica = dict[str, Any]
"""``{"identity", "api", "xds_tls"}`` (``xds_tls`` empty without ``up --listen``)."""
OnChange = Callable[[list[Replica]], None]


class SingleReplica:
    """The only control plane of a SQLite store."""

    def __init__(self) -> None:
        self._me: list[Replica] = []

    def start(self, me: Replica, on_change: OnChange) -> None:
        self._me = [dict(me)]
        on_change(self.replicas())

    def replicas(self) -> list[Replica]:
        return list(self._me)

    def stop(self) -> None:
        pass


class ReplicaDirectory:
    """This replica's record, kept alive, and everyone's, read every ``poll`` seconds."""

    def __init__(self, records: SharedRecords, identity: str, *, ttl: int = TTL,
                 poll: float = POLL_SECONDS) -> None:
        self._records, self._identity = records, identity
        self._ttl, self._poll = ttl, poll
        self._me: Replica = {}
        self._lease = 0
        self._known: list[Replica] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._on_change: OnChange = lambda replicas: None
        self._thread = threading.Thread(target=self._run, name="replicas", daemon=True)

    def start(self, me: Replica, on_change: OnChange) -> None:
        """Announce ``me`` and follow the others; ``on_change(replicas)`` whenever the set
        changes (called first with at least this replica)."""
        self._me = {**me, "identity": self._identity}
        self._on_change = on_change
        self._announce()
        self._refresh()
        self._thread.start()

    def replicas(self) -> list[Replica]:
        """The live replicas, this one included, in a stable order (by identity)."""
        with self._lock:
            return [dict(r) for r in self._known]

    def stop(self) -> None:
        """Leave the directory at once (the record goes with the revoked lease)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._lease:
            with contextlib.suppress(EtcdUnavailable):
                self._records.client.lease_revoke(self._lease)
            self._lease = 0

    def _announce(self) -> None:
        """A new lease with this replica's record on it."""
        self._lease = self._records.client.lease_grant(self._ttl)
        self._records.put(AREA, self._identity, self._me, lease=self._lease)

    def _refresh(self) -> None:
        found = [record.value for record in self._records.items(AREA).values()]
        if not any(r.get("identity") == self._identity for r in found):
            found.append(self._me)  # written but not yet readable, or being re-announced
        found.sort(key=lambda r: str(r.get("identity")))
        with self._lock:
            changed, self._known = found != self._known, found
        if changed:
            self._on_change([dict(r) for r in found])

    def _run(self) -> None:
        while not self._stopping.wait(self._poll):
            try:
                if self._lease and self._records.client.lease_keepalive(self._lease) <= 0:
                    self._lease = 0
                if not self._lease:  # lapsed (etcd unreachable for a while): announce again
                    self._announce()
                self._refresh()
            except (EtcdError, EtcdUnavailable) as exc:
                log.warning("replica directory not refreshed: %s", exc)

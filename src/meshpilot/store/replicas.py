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
POLL_SECONDS = 0.25

Replica = dict[str, Any]
"""``{"identity", "api", "xds_tls"}`` (``xds_tls`` empty without ``up --listen``), and
whatever else the replica tells the others (see :meth:`ReplicaDirectory.update`)."""
OnChange = Callable[[list[Replica]], None]


class SingleReplica:
    """The only control plane of a SQLite store."""

    identity = "local"

    def __init__(self) -> None:
        self._me: list[Replica] = []

    def start(self, me: Replica, on_change: OnChange,
              on_poll: Callable[[], None] = lambda: None) -> None:
        self._me = [{**me, "identity": self.identity}]
        on_change(self.replicas())

    def update(self, **fields: Any) -> None:
        self._me = [{**(self._me[0] if self._me else {}), **fields}]

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
        self._wake = threading.Event()
        self._rewrite = False  # this replica's record changed: write it on the next round
        self._on_change: OnChange = lambda replicas: None
        self._on_poll: Callable[[], None] = lambda: None
        self._thread = threading.Thread(target=self._run, name="replicas", daemon=True)

    def start(self, me: Replica, on_change: OnChange,
              on_poll: Callable[[], None] = lambda: None) -> None:
        """Announce ``me`` and follow the others; ``on_change(replicas)`` whenever the set
        changes (called first with at least this replica), ``on_poll()`` every round."""
        self._me = {**me, "identity": self._identity}
        self._on_change, self._on_poll = on_change, on_poll
        self._announce()
        self._refresh()
        self._thread.start()

    @property
    def identity(self) -> str:
        return self._identity

    def replicas(self) -> list[Replica]:
        """The live replicas, this one included, in a stable order (by identity)."""
        with self._lock:
            return [dict(r) for r in self._known]

    def update(self, **fields: Any) -> None:
        """Change what this replica tells the others; written by the directory's thread
        at once (the caller does no etcd I/O)."""
        with self._lock:
            me = {**self._me, **fields, "identity": self._identity}
            if me == self._me:
                return
            self._me, self._rewrite = me, True
        self._wake.set()

    def stop(self) -> None:
        """Leave the directory at once (the record goes with the revoked lease)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._lease:
            with contextlib.suppress(EtcdUnavailable):
                self._records.client.lease_revoke(self._lease)
            self._lease = 0

    def _announce(self) -> None:
        """A new lease with this replica's record on it."""
        self._lease = self._records.client.lease_grant(self._ttl)
        self._write()

    def _write(self) -> None:
        with self._lock:
            me, self._rewrite = dict(self._me), False
        try:
            self._records.put(AREA, self._identity, me, lease=self._lease)
        except (EtcdError, EtcdUnavailable):
            with self._lock:
                self._rewrite = True  # the next round tries again
            raise

    def _refresh(self) -> None:
        found = [record.value for record in self._records.items(AREA).values()]
        with self._lock:
            me = dict(self._me)
        found = [r for r in found if r.get("identity") != self._identity]
        found.append(me)  # as it is now, also if not yet written (or being re-announced)
        found.sort(key=lambda r: str(r.get("identity")))
        with self._lock:
            changed, self._known = found != self._known, found
        if changed:
            self._on_change([dict(r) for r in found])

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._poll)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                if self._lease and self._records.client.lease_keepalive(self._lease) <= 0:
                    self._lease = 0
                if not self._lease:  # lapsed (etcd unreachable for a while): announce again
                    self._announce()
                elif self._rewrite:
                    self._write()
                self._refresh()
                self._on_poll()
            except (EtcdError, EtcdUnavailable) as exc:
                log.warning("replica directory not refreshed: %s", exc)

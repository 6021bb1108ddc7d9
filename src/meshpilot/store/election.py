"""Which control-plane replica leads: an etcd lease and one election key.

Every replica serves the API and xDS; what must run once (the rollout controllers, the
local runtime's pods) runs only on the leader. A replica campaigns by creating the
election key with its lease attached, in a transaction that succeeds only if the key
does not exist; the leader keeps its lease alive, and the key disappears with the lease
when the leader dies (no keep-alive for ``ttl`` seconds) or steps down (lease revoked).
The others poll the key and campaign as soon as it is gone, so a dead leader is
replaced within about ``ttl`` plus one poll.

A leader that cannot renew its lease stops leading before the lease can have expired
at etcd (after two thirds of ``ttl`` without a renewal), so two replicas never both
believe they lead for longer than the clocks' drift.

With SQLite there is one control plane per store (the state directory's lock), which
always leads: :class:`AlwaysLeader`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from meshpilot.store.etcd_client import EtcdClient, EtcdError, EtcdUnavailable, b64, unb64

log = logging.getLogger(__name__)

DEFAULT_TTL = 3
"""Seconds a dead leader's lease outlives it: the bulk of a failover's time."""
POLL_SECONDS = 0.25

OnChange = Callable[[bool], None]


class AlwaysLeader:
    """The one control plane of a SQLite store."""

    identity = "local"

    def leading(self) -> bool:
        return True

    def leader(self) -> str | None:
        return self.identity

    def start(self, on_change: OnChange) -> None:
        on_change(True)

    def stop(self) -> None:
        pass


class Election:
    """One replica's candidacy; ``leading()`` says whether it leads right now."""

    def __init__(self, endpoints: list[str], key: str, identity: str, *,
                 ttl: int = DEFAULT_TTL) -> None:
        self._client = EtcdClient(endpoints, retry_seconds=ttl / 3)
        self._key = key
        self.identity = identity
        self._ttl = ttl
        self._leading = False
        self._lease = 0
        self._renewed = 0.0
        self._stopping = threading.Event()
        self._on_change: OnChange = lambda leading: None
        self._thread = threading.Thread(target=self._run, name="election", daemon=True)

    def leading(self) -> bool:
        return self._leading

    def leader(self) -> str | None:
        """The identity of the current leader, as etcd has it (None: none right now)."""
        try:
            kvs = self._client.range(self._key).get("kvs") or []
        except (EtcdError, EtcdUnavailable):
            return None
        return unb64(kvs[0].get("value")).decode() if kvs else None

    def start(self, on_change: OnChange) -> None:
        """Campaign in the background; ``on_change(leading)`` on every change."""
        self._on_change = on_change
        self._thread.start()

    def stop(self) -> None:
        """Step down at once (the lease revoked: another replica takes over without
        waiting for it to expire)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._lease:
            with contextlib.suppress(EtcdUnavailable):
                self._client.lease_revoke(self._lease)
            self._lease = 0
        self._set(False)
        self._client.close()

    def _set(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            log.warning("%s %s the control plane's leader", self.identity,
                        "is now" if leading else "is no longer")
            self._on_change(leading)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._leading:
                    self._renew()
                    self._stopping.wait(self._ttl / 6)
                else:
                    if not self._campaign():
                        self._stopping.wait(POLL_SECONDS)
            except (EtcdError, EtcdUnavailable) as exc:
                if self._leading and time.monotonic() - self._renewed > self._ttl * 2 / 3:
                    log.warning("leader lease not renewed: %s", exc)
                    self._set(False)
                    self._lease = 0
                self._stopping.wait(POLL_SECONDS)

    def _campaign(self) -> bool:
        lease = self._client.lease_grant(self._ttl)
        granted = time.monotonic()
        answer = self._client.txn(
            [{"key": b64(self._key), "target": "CREATE", "result": "EQUAL",
              "create_revision": "0"}],
            [{"request_put": {"key": b64(self._key), "value": b64(self.identity),
                              "lease": str(lease)}}])
        if not answer.get("succeeded"):
            with contextlib.suppress(EtcdUnavailable):
                self._client.lease_revoke(lease)
            return False
        self._lease, self._renewed = lease, granted
        self._set(True)
        return True

    def _renew(self) -> None:
        started = time.monotonic()
        if self._client.lease_keepalive(self._lease) <= 0:
            log.warning("leader lease %x expired", self._lease)
            self._lease = 0
            self._set(False)
            return
        self._renewed = started

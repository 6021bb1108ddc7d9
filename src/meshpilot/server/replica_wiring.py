"""What control-plane replicas on one etcd share beyond the config objects, made in one
place for the composition root.

- The proxy-token key: a proxy (a joined host's sidecar) started with a token from one
  replica is accepted by every other, so it can reconnect to any of them. Made once by
  whichever replica starts first (see :meth:`SharedRecords.secret`); with SQLite it is
  the file in the state directory, as before.
- The replica directory (:mod:`meshpilot.store.replicas`): which replicas are alive and
  where hosts reach them, published in endpoints.json as ``replicas``.
- The records the host registry shares (members and reports).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.statedir import StateDir
from meshpilot.store import ConfigStore
from meshpilot.store.etcd import EtcdStore
from meshpilot.store.replicas import ReplicaDirectory, SingleReplica
from meshpilot.store.shared import SharedRecords

PROXY_TOKEN_SECRET = "proxy-token-key"


@dataclass
class ReplicaState:
    """The shared records (None with SQLite) and the replica directory."""

    shared: SharedRecords | None = None
    directory: ReplicaDirectory | SingleReplica = field(default_factory=SingleReplica)

    @classmethod
    def of(cls, store: ConfigStore, identity: str) -> ReplicaState:
        if isinstance(store, EtcdStore):
            shared = SharedRecords(store.endpoints, store.prefix)
            return cls(shared, ReplicaDirectory(shared, identity))
        return cls()

    def proxy_tokens(self, state: StateDir) -> ProxyTokens:
        """The key proxies' tokens are made with: the replicas' shared one, or the state
        directory's."""
        if self.shared is None:
            return ProxyTokens.in_directory(state.root / "secrets")
        return ProxyTokens(self.shared.secret(PROXY_TOKEN_SECRET, secrets.token_bytes(32)))

    def announce(self, api: str, xds_tls: str,
                 publish: Callable[[dict[str, Any]], None]) -> None:
        """Join the directory as ``api`` / ``xds_tls``; every change of the set of live
        replicas goes to endpoints.json."""
        self.directory.start({"api": api, "xds_tls": xds_tls},
                             lambda replicas: publish({"replicas": replicas}))

    def stop(self) -> None:
        self.directory.stop()
        if self.shared is not None:
            self.shared.close()


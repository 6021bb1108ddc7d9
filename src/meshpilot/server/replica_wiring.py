"""What control-plane replicas on one etcd share beyond the config objects, made in one
place for the composition root.

- The proxy-token key: a proxy (a joined host's sidecar) started with a token from one
  replica is accepted by every other, so it can reconnect to any of them. Made once by
  whichever replica starts first (see :meth:`SharedRecords.secret`); with SQLite it is
  the file in the state directory, as before.
- The replica directory (:mod:`meshpilot.store.replicas`): which replicas are alive and
  where hosts reach them, published in endpoints.json as ``replicas``; and which host
  each is on and where its east-west gateway is, so that its pods are reached through
  that gateway from other hosts (:mod:`meshpilot.server.replica_hosts`).
- The records the host registry shares (members and reports), and the join tokens.
- The mesh's CA, when no ``--ca-dir`` is given: the root the first replica made, written
  into every other replica's state directory before its mesh starts, so every replica
  issues from one root and a workload (or a host's sidecar) trusted by one is trusted by
  all, as istiod's replicas share ``istio-ca-secret``. Root rotation steps
  (``meshpilot ca ...``) act on the replica asked only.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshpilot.security.ca_files import (
    CA_CERT,
    CA_KEY,
    CERT_CHAIN,
    ROOT_CERT,
    load_or_create_self_signed_ca,
)
from meshpilot.security.files import write_private, write_public
from meshpilot.security.join_tokens import JoinTokenBook, JoinTokens
from meshpilot.security.options import CA_DIR, SecurityOptions
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.server.controlplane import MeshControlPlane
from meshpilot.server.replica_hosts import GATEWAY_FIELD, LOOPBACK_FIELD, loopback_identity
from meshpilot.server.shared_endpoints import SharedEndpoints
from meshpilot.server.shared_join_tokens import SharedJoinTokens
from meshpilot.statedir import StateDir
from meshpilot.store import ConfigStore
from meshpilot.store.etcd import EtcdStore
from meshpilot.store.replicas import ReplicaDirectory, SingleReplica
from meshpilot.store.shared import SharedRecords

log = logging.getLogger(__name__)

PROXY_TOKEN_SECRET = "proxy-token-key"
CA_SECRET = "mesh-ca"
PUBLISHED = ("identity", "api", "xds_tls")
"""What endpoints.json says of each replica."""
CA_FILES = (CA_KEY, ROOT_CERT, CERT_CHAIN, CA_CERT)
"""Written in this order: ``ca-cert.pem`` last marks a complete set (see ca_files)."""


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

    def join_tokens(self, state: StateDir) -> JoinTokenBook:
        """Where join tokens are kept: shared by the replicas (a token made at one admits
        a join at any, once), or the state directory's file."""
        if self.shared is None:
            return JoinTokens(state.root / "secrets")
        return SharedJoinTokens(self.shared)

    def share_ca(self, state: StateDir, options: SecurityOptions) -> None:
        """Make this replica's self-signed CA the one all replicas share (see the
        module); nothing to do with SQLite or a plugged-in ``--ca-dir``."""
        if self.shared is None or options.ca_dir is not None:
            return
        directory = state.root / CA_DIR
        load_or_create_self_signed_ca(directory, trust_domain=options.trust_domain)
        mine = {name: (directory / name).read_text() for name in CA_FILES}
        stored = json.loads(self.shared.secret(CA_SECRET, json.dumps(mine).encode()))
        if stored == mine:
            return
        log.warning("this replica's CA in %s is replaced by the one the replicas share",
                    directory)
        for name in CA_FILES:
            write = write_private if name == CA_KEY else write_public
            write(directory / name, str(stored[name]).encode())

    def announce(self, mesh: MeshControlPlane, api: str,
                 publish: Callable[[dict[str, Any]], None]) -> None:
        """Join the directory as ``api`` and the mesh's mutual-TLS xDS, with the pods it
        runs; every change of the set of live replicas goes to endpoints.json, and every
        change of another's pods to the mesh (:mod:`meshpilot.server.shared_endpoints`)."""
        loopback = loopback_identity()
        endpoints = SharedEndpoints(self.directory, loopback=loopback)
        mesh.remote_workloads = endpoints.others
        mesh.share_workloads = endpoints.share
        mesh.remote_behind = endpoints.behind

        def changed(replicas: list[dict[str, Any]]) -> None:
            publish({"replicas": [{k: r.get(k) for k in PUBLISHED} for r in replicas]})
            mesh.wake()

        def poll() -> None:
            if endpoints.departing():
                mesh.wake()

        gateway = mesh.east_west.endpoint if mesh.east_west is not None else ""
        self.directory.start({"api": api, "xds_tls": mesh.xds_tls_address,
                              GATEWAY_FIELD: gateway, LOOPBACK_FIELD: loopback},
                             changed, poll)

    def stop(self) -> None:
        self.directory.stop()
        if self.shared is not None:
            self.shared.close()


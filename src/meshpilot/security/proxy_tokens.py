"""Credentials proxies present to the xDS server: bound to their node id and to the
workload identity the control plane gave that node, checked in constant time.

A proxy's token is an HMAC, under a key only the control plane holds, of its node id
*and* of the identity the control plane knows for it (:class:`BoundIdentity`: kind,
namespace, workload, pod name, service account, labels). The xDS server and the failure
report service recompute it from the node a stream declares, so:

- a token for one node is worthless for another (a process cannot claim another pod's
  node id, and so another workload's key);
- a token for one node is worthless with another workload's metadata: a process holding
  node A's credential that declares node B's namespace, labels or service account (to be
  built B's config, handed a gateway's served certificates, or have its failure reports
  counted for B) presents a token that was never issued, and is refused;
- the binding needs no table: the server keeps nothing per proxy, replicas on one etcd
  check it with the key they share (``server.replica_wiring``), and a control plane
  restarted on the same state directory still recognises the proxies its predecessor
  started. The key lives in the state directory, owner-readable only.

Host agents' report credentials (``token_for`` of a subject that is not a node id) are
plain HMACs of that subject; a proxy token's message is prefixed so the two never meet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from meshpilot.mesh.model import ProxyNode
from meshpilot.security.files import write_private

KEY_FILE = "proxy-token.key"
_KEY_BYTES = 32
_PROXY_DOMAIN = b"meshpilot proxy\x00"


@dataclass(frozen=True)
class BoundIdentity:
    """What a proxy token binds besides the node id: everything of a node's metadata the
    control plane decides who it is by (its config, its authorization policies, the
    workload its failure reports count for). Operational fields (ports, addresses, the
    access log file) stay the proxy's own business: they shape only its own config."""

    kind: str
    namespace: str
    workload: str
    name: str
    service_account: str
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, node: ProxyNode) -> BoundIdentity:
        """The identity ``node`` declares, normalised as the server reads it back from
        Envoy's node metadata (``mesh.model.node_from_metadata``): strings, the default
        service account for none, labels in order."""
        return cls.issued(kind=node.kind, namespace=node.namespace, workload=node.workload,
                          name=node.name, service_account=node.service_account,
                          labels=node.labels)

    @classmethod
    def issued(cls, *, kind: str, namespace: str, workload: str, name: str,
               service_account: str, labels: Mapping[str, str]) -> BoundIdentity:
        """The identity an issuer gives a node it does not build a ProxyNode for (a
        joined host's sidecar, or its pods': their agent builds the node from the same
        facts)."""
        return cls(str(kind), str(namespace), str(workload), str(name),
                   str(service_account or "default"),
                   tuple(sorted((str(k), str(v)) for k, v in labels.items())))

    def message(self, node_id: str) -> bytes:
        """The bytes the token authenticates: unambiguous (JSON), one per (id, identity)."""
        body = [node_id, self.kind, self.namespace, self.workload, self.name,
                self.service_account, [list(pair) for pair in self.labels]]
        return _PROXY_DOMAIN + json.dumps(body, separators=(",", ":")).encode()


class ProxyTokens:
    """``for_proxy(node)`` issues a proxy's token; ``verify_proxy(node, token)`` checks
    it against the node as a stream declares it. ``token_for``/``verify``: the same for a
    plain subject (a joined host's report credential)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a proxy token key needs at least 16 bytes")
        self._key = key

    @classmethod
    def in_directory(cls, directory: Path) -> ProxyTokens:
        """The key kept in ``directory`` (made, 0600, on first use)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / KEY_FILE
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(_KEY_BYTES)
            write_private(path, key)
        return cls(key)

    def issue(self, node_id: str, identity: BoundIdentity) -> str:
        """The token of node ``node_id`` for ``identity``, the one the control plane
        knows for it (never what the node says of itself)."""
        return hmac.new(self._key, identity.message(node_id), hashlib.sha256).hexdigest()

    def for_proxy(self, node: ProxyNode) -> str:
        """The token of a proxy the control plane itself describes (its own proxies, the
        pods its runtime starts)."""
        return self.issue(node.id, BoundIdentity.of(node))

    def verify_proxy(self, node: ProxyNode, token: str | None) -> bool:
        """Whether ``token`` was issued for ``node``'s id with the very identity it
        declares (constant time)."""
        if not token:
            return False
        return hmac.compare_digest(self.for_proxy(node).encode(), token.encode())

    def token_for(self, subject: str) -> str:
        return hmac.new(self._key, subject.encode(), hashlib.sha256).hexdigest()

    def verify(self, subject: str, token: str | None) -> bool:
        """Whether ``token`` is the one issued for ``subject`` (constant time)."""
        if not token:
            return False
        return hmac.compare_digest(self.token_for(subject).encode(), token.encode())

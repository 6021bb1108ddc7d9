"""Credentials proxies present to the xDS server: bound to their node id, checked in
constant time.

A proxy's token is an HMAC of its node id under a key only the control plane holds, so
the server needs no table of tokens, a token for one node is worthless for another (a
process cannot claim another pod's node id, and so another workload's key), and a
control plane restarted on the same state directory still recognises the proxies its
predecessor started. The key lives in the state directory, owner-readable only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from meshpilot.security.files import write_private

KEY_FILE = "proxy-token.key"
_KEY_BYTES = 32


class ProxyTokens:
    """``token_for(node_id)`` issues; ``verify(node_id, token)`` checks."""

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

    def token_for(self, node_id: str) -> str:
        return hmac.new(self._key, node_id.encode(), hashlib.sha256).hexdigest()

    def verify(self, node_id: str, token: str | None) -> bool:
        """Whether ``token`` is the one issued for ``node_id`` (constant time)."""
        if not token:
            return False
        return hmac.compare_digest(self.token_for(node_id).encode(), token.encode())

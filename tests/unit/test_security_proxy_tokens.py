"""Proxy tokens: bound to one node id, kept under an owner-only key, compared in constant
time (hmac.compare_digest)."""

from __future__ import annotations

import stat
from pathlib import Path

from meshpilot.security.proxy_tokens import KEY_FILE, ProxyTokens


def test_a_token_is_good_for_its_node_only() -> None:
    tokens = ProxyTokens(b"k" * 32)
    token = tokens.token_for("node-a")
    assert tokens.verify("node-a", token)
    assert not tokens.verify("node-b", token)
    assert not tokens.verify("node-a", None) and not tokens.verify("node-a", "")
    assert not tokens.verify("node-a", token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not ProxyTokens(b"x" * 32).verify("node-a", token)  # another key


def test_the_key_is_made_once_owner_only_and_reused(tmp_path: Path) -> None:
    first = ProxyTokens.in_directory(tmp_path / "secrets")
    key = tmp_path / "secrets" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = ProxyTokens.in_directory(tmp_path / "secrets")  # a restarted control plane
    assert again.verify("node-a", first.token_for("node-a"))

"""Join tokens: single use, short-lived, bound to one WorkloadGroup, kept only as hashes
in a 0600 file (Istio's VM bootstrap tokens are likewise short-lived credentials for one
identity; kubeadm's join tokens are the same idea for nodes)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshpilot.security.join_tokens import TOKENS_FILE, JoinRefused, JoinTokens

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_token_admits_one_join_to_its_group(tmp_path: Path) -> None:
    tokens = JoinTokens(tmp_path)
    issued = tokens.issue("shop/reviews", timedelta(minutes=5), now=NOW)
    tokens.spend(issued.token, "shop/reviews", now=NOW + timedelta(minutes=1))
    with pytest.raises(JoinRefused, match="already used"):
        tokens.spend(issued.token, "shop/reviews", now=NOW + timedelta(minutes=2))


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    tokens = JoinTokens(tmp_path)
    issued = tokens.issue("shop/reviews", timedelta(seconds=30), now=NOW)
    with pytest.raises(JoinRefused, match="expired"):
        tokens.spend(issued.token, "shop/reviews", now=NOW + timedelta(seconds=30))


def test_a_token_for_one_group_does_not_join_another_and_stays_usable(
        tmp_path: Path) -> None:
    tokens = JoinTokens(tmp_path)
    issued = tokens.issue("shop/reviews", now=NOW)
    with pytest.raises(JoinRefused, match="not issued for WorkloadGroup shop/ratings"):
        tokens.spend(issued.token, "shop/ratings", now=NOW)
    tokens.spend(issued.token, "shop/reviews", now=NOW)  # the refusal spent nothing


def test_unknown_tokens_are_refused(tmp_path: Path) -> None:
    tokens = JoinTokens(tmp_path)
    issued = tokens.issue("shop/reviews", now=NOW)
    with pytest.raises(JoinRefused, match="not one this control plane issued"):
        tokens.spend(issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B"),
                     "shop/reviews", now=NOW)


def test_tokens_are_kept_hashed_owner_only_and_survive_a_restart(tmp_path: Path) -> None:
    issued = JoinTokens(tmp_path).issue("shop/reviews", now=NOW)
    path = tmp_path / TOKENS_FILE
    assert issued.token not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = JoinTokens(tmp_path)
    again.spend(issued.token, "shop/reviews", now=NOW)
    with pytest.raises(JoinRefused, match="already used"):
        JoinTokens(tmp_path).spend(issued.token, "shop/reviews", now=NOW)


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(hours=25)])
def test_lifetimes_are_bounded(tmp_path: Path, ttl: timedelta) -> None:
    with pytest.raises(ValueError, match="at most"):
        JoinTokens(tmp_path).issue("shop/reviews", ttl)


def test_a_token_is_one_word_on_a_command_line(tmp_path: Path) -> None:
    """URL-safe base64 may begin with '-': `host join --token -x...` would take it for an
    option (it did, 1 join in 64). Every token begins with its prefix instead."""
    tokens = JoinTokens(tmp_path)
    for _ in range(200):
        issued = tokens.issue("web/g")
        assert issued.token.startswith("mpjoin_") and " " not in issued.token

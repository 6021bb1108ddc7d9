"""What a host's report may carry as its sidecar's counters: the agent's form (zlib,
base64, the sidecar's process as epoch) is taken; anything else is refused rather than
half read, and a small body that would inflate past the bound is refused too."""

from __future__ import annotations

import base64
import zlib

from meshpilot.server.host_stats import MAX_STATS
from meshpilot.server.host_stats import reported_stats as _stats


def packed(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data)).decode()


def test_the_agents_form_is_taken() -> None:
    assert _stats({"stats": packed(b'{"stats": []}'), "epoch": 7}) == (7, b'{"stats": []}')
    assert _stats({}) == (0, b"")  # a report without counters


def test_other_forms_are_refused() -> None:
    assert _stats({"stats": packed(b"{}")}) is None  # no epoch
    assert _stats({"stats": packed(b"{}"), "epoch": "7"}) is None
    assert _stats({"stats": "not base64!", "epoch": 7}) is None
    assert _stats({"stats": base64.b64encode(b"not zlib").decode(), "epoch": 7}) is None
    assert _stats({"stats": 5, "epoch": 7}) is None


def test_a_body_that_inflates_past_the_bound_is_refused() -> None:
    bomb = packed(b"\0" * (MAX_STATS + 1))
    assert len(bomb) < 100_000
    assert _stats({"stats": bomb, "epoch": 7}) is None

"""A joined host's sidecar counters as its agent sends them: the admin ``/stats`` JSON,
zlib-compressed and in base64, with the Envoy process's id as ``epoch`` (its counters
start from zero again when it is another). Inflated to at most :data:`MAX_STATS`, so a
small body cannot cost much memory."""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from typing import Any

MAX_STATS = 32 * 1024 * 1024


def reported_stats(body: Mapping[str, Any]) -> tuple[int, bytes] | None:
    """A report's sidecar counters as (epoch, JSON bytes): (0, b"") when it has none,
    None when they are not what the agent sends."""
    if "stats" not in body:
        return 0, b""
    epoch = body.get("epoch")
    if not isinstance(body["stats"], str) or not isinstance(epoch, int):
        return None
    try:
        inflate = zlib.decompressobj()
        data = inflate.decompress(base64.b64decode(body["stats"], validate=True), MAX_STATS)
    except (binascii.Error, zlib.error):
        return None
    return (epoch, data) if not inflate.unconsumed_tail else None

"""What the control plane publishes to the xDS server: one mesh version's configs.

Config moves one way, as go-control-plane's ``SetSnapshot``: the control plane builds an
:class:`XdsSnapshot` and publishes it; the server serves it and never reads anything back.
A snapshot is immutable: its ``config_for`` is a pure function of the node (the control
plane's :class:`~meshpilot.xds.config_builder.ProxyConfigBuilder` over one immutable
mesh snapshot is), so every proxy's config at a version is fixed once published, however
late the proxy connects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshpilot.mesh.model import ProxyNode


@dataclass(frozen=True)
class XdsSnapshot:
    """Mesh ``version``, and each proxy's config at it (type URL -> name -> resource:
    protobuf messages, or the builder's prepared resource sets)."""

    version: int
    config_for: Callable[[ProxyNode], Mapping[str, Mapping[str, Any]]]

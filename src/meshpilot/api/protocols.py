"""Istio's protocol selection for a port, by ``appProtocol`` then name prefix: the one
table, here at the bottom so that both the mesh view (:mod:`meshpilot.mesh.protocols`)
and validation, which may not import the mesh, read it."""

from __future__ import annotations

PREFIXES: tuple[tuple[str, str], ...] = (
    ("http2", "HTTP2"), ("grpc-web", "HTTP2"), ("grpc", "GRPC"), ("https", "HTTPS"),
    ("http", "HTTP"), ("tcp", "TCP"), ("tls", "TLS"), ("mongo", "TCP"), ("redis", "TCP"),
    ("mysql", "TCP"), ("kubernetes.io/h2c", "HTTP2"),
)
OPAQUE: frozenset[str] = frozenset({"TCP", "TLS", "HTTPS"})
"""The protocols whose connections a sidecar forwards as bytes (tcp_proxy)."""


def selected_protocol(name: str | None, app_protocol: str | None = None) -> str:
    """The protocol of a port named ``name`` with ``appProtocol``: the first of the two
    that starts with a known prefix (``http-web`` is HTTP), else HTTP."""
    for candidate in (app_protocol, name):
        if not candidate:
            continue
        lowered = candidate.lower()
        for prefix, protocol in PREFIXES:
            if lowered == prefix or lowered.startswith(prefix + "-"):
                return protocol
    return "HTTP"

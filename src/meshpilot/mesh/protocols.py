"""Istio's protocol selection, in one place for the builder (Service and ServiceEntry
ports) and the runtime (a pod's container ports): a port's ``appProtocol``, else its name
by prefix (``http-web`` is HTTP), else HTTP (every meshpilot client reaches services
through an HTTP proxy, so HTTP is what arrives where Istio would sniff).

MONGO, REDIS and MYSQL are proxied as TCP, as Istio's sidecars do unless their protocol
filters are switched on; ``grpc-web`` is served over HTTP/2 upstream, as Istio's
GRPCWeb. At a sidecar's inbound port, TCP, TLS and HTTPS are opaque byte streams
(:func:`is_tcp`): the app terminates its own TLS, the sidecar only forwards (and adds
mutual TLS between sidecars)."""

from __future__ import annotations

from meshpilot.mesh.model import Protocol

_PREFIXES: tuple[tuple[str, Protocol], ...] = (
    ("http2", "HTTP2"), ("grpc-web", "HTTP2"), ("grpc", "GRPC"), ("https", "HTTPS"),
    ("http", "HTTP"), ("tcp", "TCP"), ("tls", "TLS"), ("mongo", "TCP"), ("redis", "TCP"),
    ("mysql", "TCP"), ("kubernetes.io/h2c", "HTTP2"),
)
_OPAQUE: frozenset[str] = frozenset({"TCP", "TLS", "HTTPS"})


def port_protocol(name: str | None, app_protocol: str | None = None) -> Protocol:
    """The protocol of a port named ``name`` with ``appProtocol`` (see the module)."""
    for candidate in (app_protocol, name):
        if not candidate:
            continue
        lowered = candidate.lower()
        for prefix, protocol in _PREFIXES:
            if lowered == prefix or lowered.startswith(prefix + "-"):
                return protocol
    return "HTTP"


def is_tcp(protocol: str) -> bool:
    """Whether a sidecar's inbound port of ``protocol`` forwards bytes (tcp_proxy), not
    HTTP requests."""
    return protocol in _OPAQUE

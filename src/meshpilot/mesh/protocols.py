"""Istio's protocol selection (its table is :mod:`meshpilot.api.protocols`), for the
builder (Service and ServiceEntry ports) and the runtime (a pod's container ports): a
port's ``appProtocol``, else its name by prefix (``http-web`` is HTTP), else HTTP (every
meshpilot client reaches services through an HTTP proxy, so HTTP is what arrives where
Istio would sniff).

MONGO, REDIS and MYSQL are proxied as TCP, as Istio's sidecars do unless their protocol
filters are switched on; ``grpc-web`` is served over HTTP/2 upstream, as Istio's
GRPCWeb. At a sidecar's inbound port, TCP, TLS and HTTPS are opaque byte streams
(:func:`is_tcp`): the app terminates its own TLS, the sidecar only forwards (and adds
mutual TLS between sidecars)."""

from __future__ import annotations

from typing import cast

from meshpilot.api.protocols import OPAQUE, selected_protocol
from meshpilot.mesh.model import Protocol


def port_protocol(name: str | None, app_protocol: str | None = None) -> Protocol:
    """The protocol of a port named ``name`` with ``appProtocol`` (see the module)."""
    return cast(Protocol, selected_protocol(name, app_protocol))


def is_tcp(protocol: str) -> bool:
    """Whether a sidecar's inbound port of ``protocol`` forwards bytes (tcp_proxy), not
    HTTP requests."""
    return protocol in OPAQUE

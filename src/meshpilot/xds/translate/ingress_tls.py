"""The user's TLS on a Sidecar ingress listener (Istio's "sidecar ingress TLS").

As in Istio, the listener terminates TLS with the user's certificate only where the
port's mutual TLS mode is DISABLE: under STRICT or PERMISSIVE the mesh's mutual TLS
between sidecars is what the port speaks (validation says so where it is so, MP2028). The
context is a gateway's for the same settings (:func:`gateway_tls.downstream_socket`):
SIMPLE presents the certificate, MUTUAL and OPTIONAL_MUTUAL verify client certificates.

The certificate comes from files on the host, or from ``credentialName``: a
``kubernetes.io/tls`` Secret in the workload's namespace, served to the sidecar over SDS
as ``kubernetes://<name>`` (and ``-cacert``). What cannot be served (the Secret is
missing or lacks a key) fails closed: the port's chain closes every connection, never
falls back to plaintext.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from meshpilot.mesh.model import InboundSetting, ProxyNode
from meshpilot.xds.translate import gateway_tls, rbac
from meshpilot.xds.translate.workload_security import InboundSecurity

MakeFilters = Callable[[bool], list[lc.Filter]]


def terminates(said: InboundSetting | None, security: InboundSecurity) -> bool:
    """Whether the port's listener terminates the user's TLS (the port has ``tls`` and
    its mutual TLS mode is DISABLE)."""
    return said is not None and said.tls is not None and \
        security.mode(said.container_port) == "DISABLE"


def _served(said: InboundSetting, namespace: str) -> list[secret_pb2.Secret]:
    """The SDS secrets of the setting's credential; raises
    :class:`gateway_tls.CredentialUnavailable` when they cannot be made."""
    assert said.tls is not None
    if not said.tls.credential_name:
        return []
    found = {} if said.credential is None else {
        (namespace, said.tls.credential_name): said.credential}
    return gateway_tls.credential_secrets(found, namespace, said.tls)


def chain(said: InboundSetting, namespace: str, make: MakeFilters) -> lc.FilterChain:
    """The one chain of a port terminating the user's TLS: ``make(False)``'s filters (the
    caller is not a sidecar of the mesh) behind the user's certificate; a chain that
    closes every connection when the certificate cannot be served."""
    assert said.tls is not None
    try:
        _served(said, namespace)
        socket = gateway_tls.downstream_socket(said.tls)
    except (gateway_tls.CredentialUnavailable, gateway_tls.UnsupportedGatewayTls):
        return lc.FilterChain(name="user_tls_unavailable", filters=[rbac.deny_all_network()])
    return lc.FilterChain(name="user_tls", filters=make(False), transport_socket=socket)


def secrets(node: ProxyNode, security: InboundSecurity) -> Iterator[secret_pb2.Secret]:
    """The SDS secrets the node's terminating ingress listeners name."""
    for said in node.inbound_settings:
        if not terminates(said, security):
            continue
        try:
            yield from _served(said, node.namespace)
        except gateway_tls.CredentialUnavailable:
            continue  # its chain closes every connection (see :func:`chain`)

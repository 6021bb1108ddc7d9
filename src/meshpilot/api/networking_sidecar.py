"""Istio's Sidecar: the listeners a workload's sidecar has (ingress to its application,
egress to the hosts it may reach) and its outbound traffic policy."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Model, Port, Resource
from meshpilot.api.networking_common import NAMESPACE_NAME, check_protocol
from meshpilot.api.networking_destination_rule import ConnectionPoolSettings
from meshpilot.api.networking_entries import ServicePort, WorkloadSelector
from meshpilot.api.networking_gateway import ServerTLSSettings


def _check_egress_host(value: str) -> str:
    """Istio's ``namespace/dnsName``: a namespace (``*`` any, ``.`` the Sidecar's own,
    ``~`` none) and a host (``*``, ``*.suffix`` or a name)."""
    namespace, slash, host = value.partition("/")
    ns_ok = namespace in ("*", ".", "~") or bool(NAMESPACE_NAME.fullmatch(namespace))
    host_ok = host == "*" or bool(_EGRESS_HOST.fullmatch(host))
    if not slash or not ns_ok or not host_ok:
        raise PydanticCustomError(
            "mp_value",
            "egress host {value} is not namespace/dnsName: give e.g. './*' (this namespace), "
            "'istio-system/*', '*/api.example.com' or 'prod/*.prod.svc.cluster.local'",
            {"value": repr(value)},
        )
    return value


_EGRESS_HOST = re.compile(r"(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*")
EgressHost = Annotated[str, AfterValidator(_check_egress_host)]


class IstioEgressListener(Model):
    """What a workload's sidecar may reach: ``hosts`` (applied); a ``port``, ``bind`` or
    ``captureMode`` of its own is accepted and warned about (one HTTP proxy listener
    serves every port here)."""

    hosts: list[EgressHost] = Field(min_length=1)
    port: ServicePort | None = None
    bind: str | None = None
    capture_mode: Literal["DEFAULT", "IPTABLES", "NONE"] | None = None


SIDECAR_OUTBOUND_PORT = 15001
"""Where every sidecar's outbound HTTP proxy listens on its pod's address (the mesh
model's ``OUTBOUND_PROXY_PORT``): no Sidecar listener may take it."""


class SidecarPort(Model):
    """The port of a Sidecar listener (Istio's SidecarPort): a number and a protocol; the
    name is a label. ``targetPort`` is accepted (Istio's schema has it) and warned about:
    Istio reads it on ServiceEntry ports only."""

    number: Port
    protocol: str | None = None
    name: str = ""
    target_port: Port | None = None

    @field_validator("number")
    @classmethod
    def _number(cls, value: int) -> int:
        if value == SIDECAR_OUTBOUND_PORT:
            raise PydanticCustomError(
                "mp_value", "port {port} is the sidecar's own outbound HTTP proxy listener "
                "on the pod's address; choose another port", {"port": value})
        return value

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str | None) -> str | None:
        if value is not None and value.upper() in ("UDP", "HTTP_PROXY"):
            raise PydanticCustomError(
                "mp_value",
                "protocol {protocol} is not served by a sidecar's listener; use one of "
                "HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TCP, TLS, MONGO, REDIS, MYSQL",
                {"protocol": repr(value)})
        return check_protocol(value)


_LOOPBACK_HOSTS = ("127.0.0.1", "0.0.0.0", "[::1]", "[::]", "")
UNIX_PREFIX = "unix://"


def _check_default_endpoint(value: str | None) -> str | None:
    """Istio's forms: ``127.0.0.1:PORT``, ``0.0.0.0:PORT``, ``[::1]:PORT``, ``[::]:PORT``,
    ``:PORT`` or ``unix:///path`` (``unix://@name`` for an abstract socket)."""
    if value is None:
        return value
    if value.startswith(UNIX_PREFIX):
        path = value.removeprefix(UNIX_PREFIX)
        if path.startswith("/") or (path.startswith("@") and len(path) > 1):
            return value
    else:
        host, colon, port = value.rpartition(":")
        if colon and host in _LOOPBACK_HOSTS and port.isdigit() and 1 <= int(port) <= 65535:
            return value
    raise PydanticCustomError(
        "mp_value",
        "defaultEndpoint {value} is not one of 127.0.0.1:PORT (the app on its pod's own "
        "address), 0.0.0.0:PORT (the same here), [::1]:PORT, [::]:PORT, :PORT or "
        "unix:///absolute/path",
        {"value": repr(value)},
    )


DefaultEndpoint = Annotated[str | None, AfterValidator(_check_default_endpoint)]


class IstioIngressListener(Model):
    """An inbound port of the sidecar (Istio's IstioIngressListener): the sidecar listens
    on the pod's address at ``port.number`` and hands what arrives to ``defaultEndpoint``
    (see :mod:`meshpilot.mesh.sidecar_ingress`)."""

    port: SidecarPort
    bind: str | None = None
    capture_mode: Literal["DEFAULT", "IPTABLES", "NONE"] | None = None
    default_endpoint: DefaultEndpoint = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None

    @field_validator("tls")
    @classmethod
    def _tls(cls, value: ServerTLSSettings | None) -> ServerTLSSettings | None:
        """Istio's sidecar ingress TLS: the sidecar terminates it with the user's
        certificate (SIMPLE), verifying client certificates too (MUTUAL,
        OPTIONAL_MUTUAL); one certificate, from credentialName or from files."""
        if value is None:
            return value
        if value.mode not in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
            raise PydanticCustomError(
                "mp_value", "tls.mode {mode} is not served by a sidecar's ingress listener; "
                "give SIMPLE, MUTUAL or OPTIONAL_MUTUAL (mutual TLS between sidecars follows "
                "PeerAuthentication)", {"mode": repr(value.mode or "PASSTHROUGH (unset)")})
        if value.credential_names or value.tls_certificates:
            raise PydanticCustomError(
                "mp_value", "several certificates (credentialNames, tlsCertificates) on one "
                "sidecar ingress listener are not served; give credentialName, or "
                "serverCertificate and privateKey")
        files = value.server_certificate, value.private_key
        if value.credential_name and (any(files) or value.ca_certificates):
            raise PydanticCustomError(
                "mp_value", "tls takes credentialName or certificate files "
                "(serverCertificate, privateKey, caCertificates), not both")
        if not value.credential_name and not all(files):
            raise PydanticCustomError(
                "mp_value", "tls needs credentialName (a kubernetes.io/tls Secret in the "
                "workload's namespace), or serverCertificate and privateKey")
        if value.mode != "SIMPLE" and not (value.credential_name or value.ca_certificates):
            raise PydanticCustomError(
                "mp_value", "tls mode {mode} verifies client certificates: give "
                "caCertificates, or a credentialName whose Secret has ca.crt",
                {"mode": value.mode})
        return value


class OutboundTrafficPolicy(Model):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None
    egress_proxy: dict[str, Any] | None = None


class SidecarSpec(Model):
    workload_selector: WorkloadSelector | None = None
    ingress: list[IstioIngressListener] = Field(default_factory=list)
    egress: list[IstioEgressListener] = Field(default_factory=list)
    outbound_traffic_policy: OutboundTrafficPolicy | None = None
    inbound_connection_pool: ConnectionPoolSettings | None = None

    @field_validator("ingress")
    @classmethod
    def _unique_ports(cls, value: list[IstioIngressListener]) -> list[IstioIngressListener]:
        """One listener per port: Istio refuses two ingress listeners on one port."""
        seen: set[int] = set()
        for listener in value:
            if listener.port.number in seen:
                raise PydanticCustomError(
                    "mp_value", "ingress port {port} is listed twice; give each port once",
                    {"port": listener.port.number})
            seen.add(listener.port.number)
        return value


class Sidecar(Resource):
    """Istio's Sidecar: which services a workload's sidecar knows (its egress hosts),
    so a large mesh keeps each proxy's config to what it calls."""

    spec: SidecarSpec

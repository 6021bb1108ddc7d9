"""Istio's Gateway: the servers (ports, hosts, server TLS) a gateway proxy listens with."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from meshpilot.api.base import Labels, Model, Port, Resource
from meshpilot.api.networking_common import check_protocol


class GatewayPort(Model):
    """A port a gateway listens on; the protocol decides how traffic is handled."""

    number: Port
    protocol: str
    name: str | None = None
    target_port: Port | None = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str | None) -> str | None:
        return check_protocol(value)


class ServerTLSCertificate(Model):
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


TLSProtocol = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


class ServerTLSSettings(Model):
    """TLS a gateway terminates (or passes through) on a server."""

    https_redirect: bool | None = None
    mode: (
        Literal[
            "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
        ]
        | None
    ) = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] = Field(default_factory=list)
    tls_certificates: list[ServerTLSCertificate] = Field(default_factory=list)
    subject_alt_names: list[str] = Field(default_factory=list)
    verify_certificate_spki: list[str] = Field(default_factory=list)
    verify_certificate_hash: list[str] = Field(default_factory=list)
    min_protocol_version: TLSProtocol | None = None
    max_protocol_version: TLSProtocol | None = None
    cipher_suites: list[str] = Field(default_factory=list)


class Server(Model):
    """One listener of a gateway: a port, the hosts it serves and its TLS."""

    port: GatewayPort
    bind: str | None = None
    hosts: list[str] = Field(min_length=1)
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None


class GatewaySpec(Model):
    selector: Labels = Field(default_factory=dict)
    servers: list[Server] = Field(min_length=1)


class Gateway(Resource):
    spec: GatewaySpec

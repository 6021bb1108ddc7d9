"""The TLS of an ingress gateway's servers: what a Gateway server's ``tls`` makes of its
filter chain, and the SDS secrets its ``credentialName`` stands for (Istio's "Secure
Gateways").

How a server is served, by its port protocol and ``tls.mode`` (:func:`server_mode`):

- HTTP, HTTP2, GRPC, GRPC-WEB, HTTP_PROXY: plaintext HTTP (``tls.httpsRedirect`` answers
  301 to https);
- TCP, MONGO, REDIS, MYSQL: plain TCP, each connection forwarded to the destination of a
  VirtualService ``tcp`` route (Istio's gateway proxies these protocols as TCP too);
- HTTPS with SIMPLE, MUTUAL or OPTIONAL_MUTUAL: TLS is terminated with the server's
  certificate, then the HTTP connection manager routes the requests; on a TLS port the
  decrypted connection is forwarded by a ``tcp`` route instead, as Istio does;
- HTTPS or TLS with PASSTHROUGH (Istio's default mode): TLS is not terminated; the
  connection is forwarded by its SNI to the destination of a VirtualService ``tls`` route;
- ISTIO_MUTUAL and AUTO_PASSTHROUGH serve multi-cluster (east-west) gateways, which
  meshpilot has none of, and UDP, which Envoy's gateway does not proxy: those raise
  :class:`UnsupportedGatewayTls`, naming the field, so the caller leaves the server out
  and says why rather than serve something else.

The certificate comes from ``credentialName``, a ``kubernetes.io/tls`` Secret in the
gateway's own namespace (Istio reads it from the namespace of the gateway workload), or
from ``serverCertificate`` / ``privateKey`` files on the gateway's host. A credential is
delivered over SDS under Istio's names: ``kubernetes://<credentialName>`` (``tls.crt`` and
``tls.key``) and, for MUTUAL, ``kubernetes://<credentialName>-cacert`` (``ca.crt``, the
roots client certificates are verified against). A Secret that is missing or cannot serve
raises :class:`CredentialUnavailable`: Istio's gateway does not serve such a host either.
No message here ever repeats a Secret's value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2

from meshpilot.api.credentials import TLS_SECRET, Secret
from meshpilot.api.networking import Server, ServerTLSSettings
from meshpilot.mesh.model import Named
from meshpilot.xds.translate import pb
from meshpilot.xds.translate.tls import (
    CREDENTIAL_CA_SUFFIX,
    CREDENTIAL_PREFIX,
    DOWNSTREAM_ALPNS,
    TLS_SOCKET,
    san_matchers,
    sds_secret,
)

CERT_KEY, KEY_KEY, CA_KEY, CRL_KEY = "tls.crt", "tls.key", "ca.crt", "ca.crl"

ServerMode = Literal["http", "tcp", "terminate", "passthrough"]
HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY")
TCP_PROTOCOLS = ("TCP", "MONGO", "REDIS", "MYSQL")
TLS_PROTOCOLS = ("HTTPS", "TLS")
MULTI_CLUSTER_MODES = ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH")
VERIFYING_MODES = ("MUTUAL", "OPTIONAL_MUTUAL")

_VERSIONS = MappingProxyType({
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
})


class UnsupportedGatewayTls(ValueError):
    """A server's ``tls`` that cannot be served as written. ``field`` is its path in the
    server (``tls.mode``), for the caller's refusal."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class CredentialUnavailable(ValueError):
    """``credentialName`` names no Secret the gateway can serve (missing, or not a TLS
    Secret, or without the CA a MUTUAL server needs). The message names the Secret and
    the key at fault, never a value."""

    FIELD = "tls.credentialName"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.FIELD}: {message}")
        self.field = self.FIELD
        self.reason = message


def server_mode(server: Server) -> ServerMode:
    """How the gateway serves ``server`` (see the module docstring). Raises
    :class:`UnsupportedGatewayTls`."""
    protocol = server.port.protocol.upper()
    if protocol in HTTP_PROTOCOLS:
        return "http"
    if protocol in TCP_PROTOCOLS:
        return "tcp"
    if protocol not in TLS_PROTOCOLS:
        raise UnsupportedGatewayTls("port.protocol", f"{protocol} is not proxied by the "
                                    "gateway (nor by Istio's); serve it as TCP, or over TLS")
    settings = server.tls
    if settings is None:
        raise UnsupportedGatewayTls("tls", f"a {protocol} server needs tls settings (a mode, "
                                    "and a certificate to terminate with)")
    mode = settings.mode or "PASSTHROUGH"  # Istio's enum default
    if mode in MULTI_CLUSTER_MODES:
        raise UnsupportedGatewayTls("tls.mode", f"{mode} serves multi-cluster (east-west) "
                                    "gateways, which meshpilot does not run")
    if mode == "PASSTHROUGH":
        return "passthrough"
    return "terminate"


def credential_sds_name(credential_name: str) -> str:
    """The SDS secret of a credential's certificate chain and key."""
    return CREDENTIAL_PREFIX + credential_name


def credential_ca_sds_name(credential_name: str) -> str:
    """The SDS secret of a credential's CA certificates (Istio's ``-cacert`` suffix)."""
    return CREDENTIAL_PREFIX + credential_name + CREDENTIAL_CA_SUFFIX


def server_names(hosts: Iterable[str]) -> list[str]:
    """SNI names a server's chain matches: its hosts without their namespace part; none
    (any SNI, or none at all) when one host is ``*``."""
    out: list[str] = []
    for entry in hosts:
        host = entry.rpartition("/")[2]
        if host == "*":
            return []
        if host not in out:
            out.append(host)
    return out


# --- the context a terminating chain presents -------------------------------------------


def downstream_context(settings: ServerTLSSettings) -> tls_pb2.DownstreamTlsContext:
    """Istio's gateway TLS for a SIMPLE, MUTUAL or OPTIONAL_MUTUAL server: the server
    certificate (SDS or files), ALPN ``h2``, ``http/1.1``, TLS 1.2 to 1.3 unless the
    server says otherwise, and for (OPTIONAL_)MUTUAL the client certificate verified
    against the CA and, when given, ``subjectAltNames`` / ``verifyCertificateSpki`` /
    ``verifyCertificateHash``; MUTUAL requires one, OPTIONAL_MUTUAL lets a client without
    one in. Raises :class:`UnsupportedGatewayTls` for what it cannot honour."""
    for name in ("credential_names", "tls_certificates"):
        if getattr(settings, name):
            field = "credentialNames" if name == "credential_names" else "tlsCertificates"
            raise UnsupportedGatewayTls(f"tls.{field}", "several certificates on one "
                                        "server are not translated; use credentialName")
    common = tls_pb2.CommonTlsContext(tls_params=_tls_params(settings),
                                      alpn_protocols=list(DOWNSTREAM_ALPNS))
    _server_certificate(common, settings)
    mode = settings.mode or "PASSTHROUGH"
    if mode not in VERIFYING_MODES:
        return tls_pb2.DownstreamTlsContext(common_tls_context=common)
    _client_validation(common, settings, mode)
    return tls_pb2.DownstreamTlsContext(common_tls_context=common,
                                        require_client_certificate={"value": mode == "MUTUAL"})


def downstream_socket(settings: ServerTLSSettings) -> base_pb2.TransportSocket:
    """:func:`downstream_context` as a filter chain's transport socket."""
    return base_pb2.TransportSocket(name=TLS_SOCKET,
                                    typed_config=pb.pack(downstream_context(settings)))


def _tls_params(settings: ServerTLSSettings) -> common_pb2.TlsParameters:
    """``minProtocolVersion`` / ``maxProtocolVersion`` (TLS_AUTO or unset: Istio's TLS 1.2
    minimum and 1.3 maximum), ``cipherSuites`` as given."""
    low = _VERSIONS.get(settings.min_protocol_version or "", common_pb2.TlsParameters.TLSv1_2)
    high = _VERSIONS.get(settings.max_protocol_version or "", common_pb2.TlsParameters.TLSv1_3)
    if high < low:
        raise UnsupportedGatewayTls("tls.maxProtocolVersion", "is lower than "
                                    "minProtocolVersion, so no TLS version is left")
    return common_pb2.TlsParameters(tls_minimum_protocol_version=low,
                                    tls_maximum_protocol_version=high,
                                    cipher_suites=list(settings.cipher_suites))


def _server_certificate(common: tls_pb2.CommonTlsContext, settings: ServerTLSSettings) -> None:
    if settings.credential_name:
        for name in ("server_certificate", "private_key", "ca_certificates", "ca_crl"):
            if getattr(settings, name):
                raise UnsupportedGatewayTls(f"tls.{_camel(name)}", "cannot be set with "
                                            "credentialName, whose Secret holds the "
                                            "certificates")
        common.tls_certificate_sds_secret_configs.append(
            sds_secret(credential_sds_name(settings.credential_name)))
        return
    if not (settings.server_certificate and settings.private_key):
        missing = "privateKey" if settings.server_certificate else "serverCertificate"
        raise UnsupportedGatewayTls(f"tls.{missing}", "a terminating server needs "
                                    "credentialName, or serverCertificate and privateKey")
    common.tls_certificates.append(common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(filename=settings.server_certificate),
        private_key=base_pb2.DataSource(filename=settings.private_key)))


def _client_validation(common: tls_pb2.CommonTlsContext, settings: ServerTLSSettings,
                       mode: str) -> None:
    default = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=san_matchers(settings.subject_alt_names),
        verify_certificate_spki=list(settings.verify_certificate_spki),
        verify_certificate_hash=list(settings.verify_certificate_hash),
    )
    if settings.credential_name:
        combined = common.combined_validation_context
        combined.default_validation_context.CopyFrom(default)
        combined.validation_context_sds_secret_config.CopyFrom(
            sds_secret(credential_ca_sds_name(settings.credential_name)))
        return
    if not settings.ca_certificates:
        raise UnsupportedGatewayTls("tls.caCertificates", f"{mode} verifies client "
                                    "certificates: it needs caCertificates (or a "
                                    "credentialName whose Secret has ca.crt)")
    default.trusted_ca.filename = settings.ca_certificates
    if settings.ca_crl:
        default.crl.filename = settings.ca_crl
    common.validation_context.CopyFrom(default)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# --- the credential's secrets ------------------------------------------------------------


SecretIndex = Mapping[tuple[str, str], Secret]
"""Stored Secrets by (namespace, name)."""


def secret_index(secrets: Iterable[Named[Secret]]) -> SecretIndex:
    return MappingProxyType({(s.namespace, s.name): s.obj for s in secrets})


def credential_secrets(secrets: SecretIndex, namespace: str, settings: ServerTLSSettings,
                       ) -> list[secret_pb2.Secret]:
    """The SDS secrets a server's ``credentialName`` stands for, from the Secret of that
    name in ``namespace`` (the gateway's): the certificate chain and key, and for
    (OPTIONAL_)MUTUAL the CA (``ca.crt``, with ``ca.crl`` when present). Raises
    :class:`CredentialUnavailable` when that Secret is missing or cannot serve."""
    name = settings.credential_name or ""
    secret = secrets.get((namespace, name))
    where = f"Secret {namespace}/{name}"
    if secret is None:
        raise CredentialUnavailable(f"no {where}; the gateway reads credentialName from "
                                    f"its own namespace ({namespace}), so the host is not "
                                    "served until that Secret exists")
    if secret.type != TLS_SECRET:
        raise CredentialUnavailable(f"{where} is of type {secret.type}; a gateway "
                                    f"certificate is a {TLS_SECRET} Secret (tls.crt, "
                                    "tls.key, and ca.crt for MUTUAL)")
    chain, key = secret.value(CERT_KEY), secret.value(KEY_KEY)
    if not chain or not key:
        raise CredentialUnavailable(f"{where} has no {CERT_KEY if not chain else KEY_KEY}")
    out = [secret_pb2.Secret(
        name=credential_sds_name(name),
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=chain),
            private_key=base_pb2.DataSource(inline_bytes=key)))]
    if (settings.mode or "") in VERIFYING_MODES:
        out.append(_ca_secret(secret, where, name, settings.mode or ""))
    return out


def _ca_secret(secret: Secret, where: str, name: str, mode: str) -> secret_pb2.Secret:
    roots = secret.value(CA_KEY)
    if not roots:
        raise CredentialUnavailable(f"{mode} verifies client certificates against "
                                    f"{CA_KEY}, which {where} does not have")
    context = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(inline_bytes=roots))
    crl = secret.value(CRL_KEY)
    if crl:
        context.crl.inline_bytes = crl
    return secret_pb2.Secret(name=credential_ca_sds_name(name), validation_context=context)

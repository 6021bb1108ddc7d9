"""A proxy's SDS secrets, under Istio's names: its certificate and key, and the roots.

``default`` holds the workload's certificate chain and private key (what it presents in
a TLS handshake); ``ROOTCA`` holds the trust bundle (what it verifies peers against).
Transport sockets name them; Envoy fetches them over the proxy's ADS stream. Istio's
names, so that Istio users' habits and tools (``proxy-config secret``) carry over.
"""

from __future__ import annotations

from typing import Protocol

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"


class SecretMaterial(Protocol):
    """What a proxy's secrets are made from (``security.Credential`` is one)."""

    @property
    def chain_pem(self) -> bytes: ...

    @property
    def key_pem(self) -> bytes: ...

    @property
    def roots_pem(self) -> bytes: ...


def workload_secret(material: SecretMaterial) -> secret_pb2.Secret:
    """The chain and the key inline; for a proxy on a joined host, whose key the control
    plane never has, the key as the file its Envoy reads on that host (``key_file``)."""
    key_file = str(getattr(material, "key_file", "") or "")
    key = (base_pb2.DataSource(filename=key_file) if key_file
           else base_pb2.DataSource(inline_bytes=material.key_pem))
    return secret_pb2.Secret(name=WORKLOAD_SECRET, tls_certificate=common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(inline_bytes=material.chain_pem),
        private_key=key))


def root_secret(roots_pem: bytes) -> secret_pb2.Secret:
    return secret_pb2.Secret(name=ROOT_SECRET, validation_context=(
        common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=roots_pem))))

"""The SDS secrets of the client credentials a proxy's clusters name: a DestinationRule's
``tls.credentialName`` (modes SIMPLE and MUTUAL), read as Istio reads it.

A cluster names ``kubernetes://<name>`` for its client certificate and key (MUTUAL) and
``kubernetes://<name>-cacert`` for the CA it verifies the server against. Both come from
the Secret ``<name>`` in the namespace of the proxy that originates the TLS (a client
reads only its own namespace's Secrets): a ``kubernetes.io/tls`` Secret (``tls.crt``,
``tls.key``, ``ca.crt``) or a generic one (``cert``, ``key``, ``cacert``). The CA may
instead be in a Secret of its own named ``<name>-cacert``. A revocation list (``ca.crl``
or ``crl``) goes with the CA.

A name whose Secret is missing, or lacks the keys, is left out and said why: the cluster
naming it then fails its connections closed (Envoy refuses to handshake without the
secret), which is what Istio does too, while the rest of the proxy's config goes on.
Nothing here repeats a Secret's values.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from meshpilot.api.credentials import Secret
from meshpilot.xds.translate.gateway_tls import SecretIndex
from meshpilot.xds.translate.tls import CREDENTIAL_CA_SUFFIX, CREDENTIAL_PREFIX

CERT_KEYS = ("tls.crt", "cert")
KEY_KEYS = ("tls.key", "key")
CA_KEYS = ("ca.crt", "cacert")
CRL_KEYS = ("ca.crl", "crl")


def is_credential(sds_name: str) -> bool:
    """Whether an SDS name stands for a user's credential (not a workload's own secret)."""
    return sds_name.startswith(CREDENTIAL_PREFIX)


def client_credential_secrets(secrets: SecretIndex, namespace: str, sds_names: Iterable[str]
                              ) -> tuple[list[secret_pb2.Secret], list[str]]:
    """The SDS secrets for the credential names among ``sds_names`` (other names are not
    this module's), from the Secrets of ``namespace``; and why any was left out."""
    out: list[secret_pb2.Secret] = []
    problems: list[str] = []
    for sds_name in sorted(n for n in sds_names if is_credential(n)):
        credential = sds_name.removeprefix(CREDENTIAL_PREFIX)
        if credential.endswith(CREDENTIAL_CA_SUFFIX):
            built = _ca(secrets, namespace, sds_name,
                        credential.removesuffix(CREDENTIAL_CA_SUFFIX))
        else:
            built = _certificate(secrets, namespace, sds_name, credential)
        if isinstance(built, str):
            problems.append(built)
        else:
            out.append(built)
    return out, problems


def _value(secret: Secret, keys: tuple[str, ...]) -> bytes | None:
    return next((v for k in keys if (v := secret.value(k))), None)


def _certificate(secrets: SecretIndex, namespace: str, sds_name: str, name: str
                 ) -> secret_pb2.Secret | str:
    secret = secrets.get((namespace, name))
    if secret is None:
        return f"no Secret {namespace}/{name} for credentialName {name}"
    chain, key = _value(secret, CERT_KEYS), _value(secret, KEY_KEYS)
    if not chain or not key:
        return (f"Secret {namespace}/{name} has no client certificate and key "
                f"({' / '.join(CERT_KEYS)} and {' / '.join(KEY_KEYS)})")
    return secret_pb2.Secret(name=sds_name, tls_certificate=common_pb2.TlsCertificate(
        certificate_chain={"inline_bytes": chain}, private_key={"inline_bytes": key}))


def _ca(secrets: SecretIndex, namespace: str, sds_name: str, name: str
        ) -> secret_pb2.Secret | str:
    for holder in (name, name + CREDENTIAL_CA_SUFFIX):
        secret = secrets.get((namespace, holder))
        roots = _value(secret, CA_KEYS) if secret is not None else None
        if roots and secret is not None:
            context = common_pb2.CertificateValidationContext(
                trusted_ca={"inline_bytes": roots})
            crl = _value(secret, CRL_KEYS)
            if crl:
                context.crl.inline_bytes = crl
            return secret_pb2.Secret(name=sds_name, validation_context=context)
    return (f"no CA for credentialName {name}: neither Secret {namespace}/{name} nor "
            f"{namespace}/{name}{CREDENTIAL_CA_SUFFIX} has {' / '.join(CA_KEYS)}")

"""Workload identities: SPIFFE IDs and the principal form Istio policies are written in.

A workload's identity is ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``,
carried as the only URI SAN of its certificate. AuthorizationPolicy ``principals`` name
the same identity without the scheme (``cluster.local/ns/default/sa/sleep``), so both
forms parse to one value here and print back exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_TRUST_DOMAIN = "cluster.local"
SPIFFE_SCHEME = "spiffe://"

# SPIFFE trust domains: lowercase letters, digits, '.', '-', '_' (the SPIFFE ID spec).
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")
# Namespaces are DNS-1123 labels; service account names are DNS-1123 subdomains.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class InvalidIdentity(ValueError):
    """A SPIFFE ID or principal that is not a workload identity this mesh issues."""


@dataclass(frozen=True, order=True)
class SpiffeId:
    """One workload identity. Construct through :func:`workload_identity` or
    :meth:`parse`, which validate; the fields are then known to be well-formed."""

    trust_domain: str
    namespace: str
    service_account: str

    @property
    def uri(self) -> str:
        """``spiffe://cluster.local/ns/default/sa/sleep``: the certificate's URI SAN."""
        return f"{SPIFFE_SCHEME}{self.principal}"

    @property
    def principal(self) -> str:
        """``cluster.local/ns/default/sa/sleep``: how AuthorizationPolicy names it."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Read a SPIFFE URI (``spiffe://td/ns/x/sa/y``) or an Istio principal
        (``td/ns/x/sa/y``). Raises :class:`InvalidIdentity` saying what is wrong."""
        body = text[len(SPIFFE_SCHEME):] if text.startswith(SPIFFE_SCHEME) else text
        parts = body.split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise InvalidIdentity(
                f"{text!r} is not a workload identity; write "
                "spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> "
                "or <trust-domain>/ns/<namespace>/sa/<service-account>"
            )
        return workload_identity(parts[2], parts[4], trust_domain=parts[0])


def workload_identity(
    namespace: str, service_account: str, *, trust_domain: str = DEFAULT_TRUST_DOMAIN
) -> SpiffeId:
    """The identity of a workload running as ``service_account`` in ``namespace``."""
    validate_trust_domain(trust_domain)
    if not (len(namespace) <= 63 and _NAMESPACE.match(namespace)):
        raise InvalidIdentity(
            f"namespace {namespace!r} is not a DNS label "
            "(lowercase letters, digits and '-', at most 63 characters)"
        )
    if not (len(service_account) <= 253 and _SERVICE_ACCOUNT.match(service_account)):
        raise InvalidIdentity(
            f"service account {service_account!r} is not a DNS subdomain "
            "(lowercase letters, digits, '-' and '.', at most 253 characters)"
        )
    return SpiffeId(trust_domain, namespace, service_account)


def validate_trust_domain(trust_domain: str) -> str:
    """Return ``trust_domain`` if SPIFFE allows it, else raise :class:`InvalidIdentity`."""
    if not (len(trust_domain) <= 255 and _TRUST_DOMAIN.match(trust_domain)):
        raise InvalidIdentity(
            f"trust domain {trust_domain!r} is not valid; use lowercase letters, digits, "
            "'.', '-' and '_' (e.g. cluster.local)"
        )
    return trust_domain


def is_valid_identity(text: str) -> bool:
    """Whether ``text`` parses as a workload identity in either form."""
    try:
        SpiffeId.parse(text)
    except InvalidIdentity:
        return False
    return True

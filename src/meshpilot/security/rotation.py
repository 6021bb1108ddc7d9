"""When a workload certificate is due for renewal.

Istio rotates a workload certificate when about half its lifetime is left, so a
control plane that is down for less than half a TTL costs no workload its identity.
Computed from the certificate alone, so it holds for certificates from any issuer.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

RENEW_AT_FRACTION = 0.5
"""Share of the validity period (not-before to not-after) after which to renew."""


def renew_at(cert: x509.Certificate) -> datetime:
    """The moment ``cert`` should be replaced (UTC)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * RENEW_AT_FRACTION


def needs_renewal(cert: x509.Certificate, now: datetime) -> bool:
    """True once ``now`` (timezone-aware) has reached :func:`renew_at`."""
    return now >= renew_at(cert)

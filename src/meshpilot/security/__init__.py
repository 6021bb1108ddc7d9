"""Zero-trust foundations: workload identities, the certificate authority, and which
PeerAuthentication and AuthorizationPolicy objects govern a workload.

Pure of the server and of Envoy: nothing here listens, and only the CA touches disk
(its own directory). Envoy configuration is built from these values elsewhere.
"""

from meshpilot.security.bundle import InvalidTrustBundle, TrustBundle
from meshpilot.security.ca import (
    DEFAULT_WORKLOAD_TTL,
    MAX_WORKLOAD_TTL,
    CertificateAuthority,
    IssuedCertificate,
)
from meshpilot.security.ca_files import (
    CaFileError,
    load_or_create_self_signed_ca,
    load_plugged_ca,
)
from meshpilot.security.csr import CertificateRequestRefused, WorkloadKey, new_workload_key
from meshpilot.security.identity import (
    DEFAULT_TRUST_DOMAIN,
    InvalidIdentity,
    SpiffeId,
    workload_identity,
)
from meshpilot.security.policy import (
    DEFAULT_ROOT_NAMESPACE,
    EVALUATION_ORDER,
    AppliedPolicy,
    IgnoredPolicy,
    MtlsDecision,
    PolicyConflict,
    PolicyRef,
    WorkloadAuthorization,
    authorization_for,
    effective_mtls,
    peer_authentication_conflicts,
)
from meshpilot.security.rotation import needs_renewal, renew_at

__all__ = [
    "DEFAULT_ROOT_NAMESPACE",
    "DEFAULT_TRUST_DOMAIN",
    "DEFAULT_WORKLOAD_TTL",
    "EVALUATION_ORDER",
    "MAX_WORKLOAD_TTL",
    "AppliedPolicy",
    "CaFileError",
    "CertificateAuthority",
    "CertificateRequestRefused",
    "IgnoredPolicy",
    "InvalidIdentity",
    "InvalidTrustBundle",
    "IssuedCertificate",
    "MtlsDecision",
    "PolicyConflict",
    "PolicyRef",
    "SpiffeId",
    "TrustBundle",
    "WorkloadAuthorization",
    "WorkloadKey",
    "authorization_for",
    "effective_mtls",
    "load_or_create_self_signed_ca",
    "load_plugged_ca",
    "needs_renewal",
    "new_workload_key",
    "peer_authentication_conflicts",
    "renew_at",
    "workload_identity",
]

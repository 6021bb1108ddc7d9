"""Policy selection: which PeerAuthentication and AuthorizationPolicy objects govern a
workload, and why. Pure functions over the API models, in one place for the xDS
translation, the validator and ``meshpilot describe`` to import from."""

from meshpilot.security.authorization import (
    EVALUATION_ORDER,
    AppliedPolicy,
    WorkloadAuthorization,
    authorization_for,
)
from meshpilot.security.peer_authentication import (
    DEFAULT_MODE,
    MtlsDecision,
    MtlsStep,
    PolicyConflict,
    effective_mtls,
    peer_authentication_conflicts,
)
from meshpilot.security.policy_scope import DEFAULT_ROOT_NAMESPACE, IgnoredPolicy, PolicyRef

__all__ = [
    "DEFAULT_MODE",
    "DEFAULT_ROOT_NAMESPACE",
    "EVALUATION_ORDER",
    "AppliedPolicy",
    "IgnoredPolicy",
    "MtlsDecision",
    "MtlsStep",
    "PolicyConflict",
    "PolicyRef",
    "WorkloadAuthorization",
    "authorization_for",
    "effective_mtls",
    "peer_authentication_conflicts",
]

"""Which AuthorizationPolicies govern a workload, grouped in Istio's evaluation order.

Istio evaluates CUSTOM policies first, then DENY (any match denies), then ALLOW (once
any ALLOW policy applies to a workload, a request must match one of them), while AUDIT
policies only mark requests for logging. A policy applies to a workload when:

- it is in the workload's namespace and has no selector (namespace-wide), or a selector
  that matches the workload's labels;
- it is in the root namespace with no selector (mesh-wide), or with a selector that
  matches the workload's labels (a root-namespace selector reaches every namespace).

Policies attached by ``targetRef``/``targetRefs`` bind to Gateway API gateways,
waypoints or services, never to a sidecar; they are listed as ignored here so a user
sees why such a policy does not protect the workload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from meshpilot.api.security import Action, AuthorizationPolicy
from meshpilot.security.policy_scope import (
    DEFAULT_ROOT_NAMESPACE,
    IgnoredPolicy,
    PolicyRef,
    has_selector,
    oldest_first,
    selects,
)

EVALUATION_ORDER: tuple[Action, ...] = ("CUSTOM", "DENY", "ALLOW", "AUDIT")
Scope = Literal["workload", "namespace", "mesh", "mesh-selector"]


@dataclass(frozen=True)
class AppliedPolicy:
    """An AuthorizationPolicy that applies, with how it reached the workload."""

    policy: AuthorizationPolicy
    scope: Scope
    reason: str

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef.of(self.policy)

    @property
    def action(self) -> Action:
        return self.policy.spec.action


@dataclass(frozen=True)
class WorkloadAuthorization:
    """The policies for one workload by action, each group oldest first."""

    custom: tuple[AppliedPolicy, ...] = ()
    deny: tuple[AppliedPolicy, ...] = ()
    allow: tuple[AppliedPolicy, ...] = ()
    audit: tuple[AppliedPolicy, ...] = ()
    ignored: tuple[IgnoredPolicy, ...] = ()

    def in_evaluation_order(self) -> tuple[tuple[Action, tuple[AppliedPolicy, ...]], ...]:
        """(action, policies) for CUSTOM, DENY, ALLOW, AUDIT, empty groups included."""
        return tuple((action, self.with_action(action)) for action in EVALUATION_ORDER)

    def with_action(self, action: Action) -> tuple[AppliedPolicy, ...]:
        return {"CUSTOM": self.custom, "DENY": self.deny, "ALLOW": self.allow,
                "AUDIT": self.audit}[action]

    @property
    def allow_required(self) -> bool:
        """Whether requests not matched by an ALLOW policy are denied: true as soon as
        one ALLOW policy applies (even one with no rules, which allows nothing)."""
        return bool(self.allow)


def authorization_for(
    policies: Iterable[AuthorizationPolicy],
    namespace: str,
    labels: Mapping[str, str],
    *,
    root_namespace: str = DEFAULT_ROOT_NAMESPACE,
) -> WorkloadAuthorization:
    """The AuthorizationPolicies that apply to the workload (``namespace``, ``labels``)."""
    groups: dict[Action, list[AppliedPolicy]] = {action: [] for action in EVALUATION_ORDER}
    ignored: list[IgnoredPolicy] = []
    for policy in oldest_first(policies):
        if policy.metadata.namespace not in (namespace, root_namespace):
            continue
        targets = _targets(policy)
        if targets:
            ignored.append(IgnoredPolicy(PolicyRef.of(policy), _target_reason(targets)))
            continue
        applied = _applies(policy, namespace, labels, root_namespace)
        if applied is not None:
            groups[policy.spec.action].append(applied)
    return WorkloadAuthorization(
        custom=tuple(groups["CUSTOM"]),
        deny=tuple(groups["DENY"]),
        allow=tuple(groups["ALLOW"]),
        audit=tuple(groups["AUDIT"]),
        ignored=tuple(ignored),
    )


def _applies(
    policy: AuthorizationPolicy, namespace: str, labels: Mapping[str, str], root_namespace: str
) -> AppliedPolicy | None:
    home = policy.metadata.namespace
    selector = policy.spec.selector
    if not has_selector(selector):
        if home == root_namespace:
            return AppliedPolicy(policy, "mesh", f"mesh-wide: no selector, in the root "
                                                 f"namespace {root_namespace}")
        return AppliedPolicy(policy, "namespace", f"namespace-wide: no selector, in the "
                                                   f"workload's namespace {namespace}")
    if not selects(selector, labels):
        return None
    shown = _labels(selector.match_labels if selector else {})
    if home == namespace:
        return AppliedPolicy(policy, "workload", f"its selector {shown} matches the workload")
    return AppliedPolicy(policy, "mesh-selector", f"its selector {shown} matches the workload, "
                         f"and a selector in the root namespace {root_namespace} reaches "
                         "every namespace")


def _targets(policy: AuthorizationPolicy) -> list[dict[str, Any]]:
    spec = policy.spec
    return [spec.target_ref] if spec.target_ref else list(spec.target_refs or [])


def _target_reason(targets: list[dict[str, Any]]) -> str:
    named = ", ".join(f"{t.get('kind', '?')} {t.get('name', '?')}" for t in targets)
    return (f"attached by targetRef to {named}: such policies bind to gateways, waypoints "
            "or services, never to a sidecar; use a selector to protect this workload")


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"

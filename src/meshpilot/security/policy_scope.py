"""What Istio's security policies share: how one names a policy, which of several is
the oldest, and whether a selector picks a workload.

Istio resolves ties between policies at the same level by age (the oldest wins), so a
newly applied policy can never silently replace one that is already enforced. Age is
``metadata.creationTimestamp``; equal ages fall back to namespace/name so the result
never depends on the order objects happen to be listed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from meshpilot.api.base import Resource
from meshpilot.api.security import WorkloadSelector

DEFAULT_ROOT_NAMESPACE = "istio-system"
"""Where mesh-wide policies live (Istio's default root namespace)."""

_UNKNOWN_AGE = datetime.max.replace(tzinfo=UTC)

R = TypeVar("R", bound=Resource)


@dataclass(frozen=True, order=True)
class PolicyRef:
    """A policy by kind, namespace and name, for messages and ``describe`` output."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, policy: Resource) -> PolicyRef:
        return cls(policy.kind, policy.metadata.namespace, policy.metadata.name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class IgnoredPolicy:
    """A policy that looks as if it applies to a workload but does not, and why: the
    cases Istio ignores are shown, never dropped silently."""

    policy: PolicyRef
    reason: str


def created_at(policy: Resource) -> datetime:
    """The policy's creation time; one without a readable timestamp (not yet stored)
    counts as newer than every stored one, so it never displaces an enforced policy."""
    text = policy.metadata.creation_timestamp
    if not text:
        return _UNKNOWN_AGE
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return _UNKNOWN_AGE
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_key(policy: Resource) -> tuple[datetime, str, str]:
    """Sort key: oldest first, then namespace, then name."""
    return created_at(policy), policy.metadata.namespace, policy.metadata.name


def oldest_first(policies: Iterable[R]) -> list[R]:
    return sorted(policies, key=age_key)


def has_selector(selector: WorkloadSelector | None) -> bool:
    """A selector with no labels selects like no selector at all (as in Istio)."""
    return bool(selector and selector.match_labels)


def selects(selector: WorkloadSelector | None, labels: Mapping[str, str]) -> bool:
    """Whether every label the selector names is on the workload with that value."""
    wanted = selector.match_labels if selector else {}
    return all(labels.get(key) == value for key, value in wanted.items())

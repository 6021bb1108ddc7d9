"""Security checks across objects, on the state after the whole change.

PeerAuthentication: Istio enforces one mesh-wide policy (root namespace, no selector) and
one namespace-wide policy per namespace, the oldest; a selector policy in the root
namespace is ignored. Those cases are found by ``security.peer_authentication_conflicts``,
the same selection the proxies are programmed from, so a warning and the enforced
behaviour cannot disagree. RequestAuthentication: two policies that give rules for one
issuer to the same workload leave undefined which rule checks its tokens.

Ages are the store's: a changed object keeps the creationTimestamp of the version it
replaces, a new one counts as newest (never displacing an enforced policy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from meshpilot.api.base import Resource
from meshpilot.api.request_authentication import RequestAuthentication
from meshpilot.api.security import PeerAuthentication
from meshpilot.validation import codes
from meshpilot.validation.state_object import Findings, StateObject

if TYPE_CHECKING:
    from meshpilot.security.policy import PolicyConflict

# meshpilot.security is imported where it is used: the CLI loads this module for every
# command, and that package brings in the certificate authority and cryptography.

Report = Callable[[StateObject], bool]
"""Whether findings about an object are wanted (changed, or every object for describe)."""

Workload = tuple[str, str, dict[str, str]]  # (namespace, "Deployment shop/orders", labels)
R = TypeVar("R", bound=Resource)


def check_security(objects: Iterable[StateObject], report: Report, found: Findings) -> None:
    objects = list(objects)
    kinds = {obj.key.kind for obj in objects}
    if "PeerAuthentication" in kinds:
        _peer_authentication(objects, report, found)
    if "RequestAuthentication" in kinds:
        _issuers_per_workload(objects, report, found)


def _parsed(
    objects: list[StateObject], name: str, kind: type[R]
) -> Iterator[tuple[StateObject, R]]:
    """Objects of kind ``name`` as models, aged as the store ages them (a body that does
    not parse was refused when it was applied, and is skipped)."""
    for obj in objects:
        if obj.key.kind != name:
            continue
        meta = {**(obj.body.get("metadata") or {})}
        meta.pop("creationTimestamp", None)
        if obj.creation_timestamp:
            meta["creationTimestamp"] = obj.creation_timestamp
        try:
            yield obj, kind.model_validate({**obj.body, "metadata": meta})
        except ValidationError:
            continue


def parsed_peer_authentications(objects: list[StateObject]
                                ) -> Iterator[tuple[StateObject, PeerAuthentication]]:
    """The PeerAuthentications of ``objects`` as models, aged as the store ages them."""
    return _parsed(objects, "PeerAuthentication", PeerAuthentication)


def _peer_authentication(objects: list[StateObject], report: Report, found: Findings) -> None:
    from meshpilot.security.policy import PolicyRef, peer_authentication_conflicts

    by_ref = {PolicyRef.of(model): (obj, model)
              for obj, model in _parsed(objects, "PeerAuthentication", PeerAuthentication)}
    conflicts = peer_authentication_conflicts(model for _, model in by_ref.values())
    for conflict in conflicts:
        for ref in conflict.policies:
            obj = by_ref[ref][0]
            if report(obj):
                found.add(*_peer_conflict(conflict, obj))


def _peer_conflict(
    conflict: PolicyConflict, obj: StateObject
) -> tuple[codes.Code, StateObject, tuple[str, ...], str]:
    if conflict.code == "selector-in-root-namespace":
        return codes.PEER_AUTHN_ROOT_SELECTOR, obj, ("spec", "selector"), conflict.message
    return codes.PEER_AUTHN_CONFLICT, obj, (), conflict.message


def _workloads(objects: list[StateObject]) -> Iterator[Workload]:
    """Deployments (their pod template's labels) and WorkloadEntries: what a policy's
    selector picks."""
    for obj in objects:
        if obj.key.kind == "Deployment":
            template = obj.spec.get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
        elif obj.key.kind == "WorkloadEntry":
            labels = obj.spec.get("labels") or {}
        else:
            continue
        yield obj.namespace, str(obj.key), dict(labels)


def _applies(policy: RequestAuthentication, namespace: str, labels: dict[str, str]) -> bool:
    """Istio's scope: the policy's own namespace, or every namespace from the root one;
    no selector selects every workload there."""
    from meshpilot.security.policy_scope import DEFAULT_ROOT_NAMESPACE, selects

    home = policy.metadata.namespace
    return home in (namespace, DEFAULT_ROOT_NAMESPACE) and selects(policy.spec.selector, labels)


def _issuers_per_workload(objects: list[StateObject], report: Report, found: Findings) -> None:
    policies = sorted(_parsed(objects, "RequestAuthentication", RequestAuthentication),
                      key=lambda p: p[0].key)
    said: set[tuple[Any, ...]] = set()  # one warning per rule, however many workloads
    for namespace, workload, labels in _workloads(objects):
        applying = [(obj, p) for obj, p in policies if _applies(p, namespace, labels)]
        for issuer, rule, other in _shared_issuers(applying):
            for this, that in ((rule, other), (other, rule)):
                if report(this[0]) and (this[0].key, this[1]) not in said:
                    said.add((this[0].key, this[1]))
                    found.add(codes.DUPLICATE_ISSUER, this[0],
                              ("spec", "jwtRules", this[1], "issuer"),
                              _duplicate(issuer, that, workload))


Rule = tuple[StateObject, int]  # a policy and the index of one of its jwtRules


def _shared_issuers(
    policies: list[tuple[StateObject, RequestAuthentication]],
) -> Iterator[tuple[str, Rule, Rule]]:
    """Rules of different policies for one issuer: (issuer, later rule, first rule)."""
    first: dict[str, Rule] = {}
    for obj, policy in policies:
        for i, rule in enumerate(policy.spec.jwt_rules or []):
            other = first.setdefault(rule.issuer, (obj, i))
            if other[0] is not obj:  # within one policy, the policy's own rule says so
                yield rule.issuer, (obj, i), other


def _duplicate(issuer: str, other: Rule, workload: str) -> str:
    obj, index = other
    return (f"issuer {issuer!r} also has a rule in RequestAuthentication "
            f"{obj.key.namespace}/{obj.key.name} (jwtRules[{index}]), and both apply to "
            f"{workload}; a token from it is checked against one of them, and which one is "
            "not defined: merge them into one rule (audiences, keys and token locations "
            "together)")

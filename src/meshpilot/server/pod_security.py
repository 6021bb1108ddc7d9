"""What a pod's sidecar enforces on its inbound side, and why: ``meshpilot describe pod``.

Computed from one mesh snapshot with the functions the xDS translation programs the
sidecar from (``inbound_security``, ``effective_mtls``, the RBAC and JWT translation), so
the explanation cannot disagree with what Envoy is told. Each part says why it applies:
the PeerAuthentication level that decided a port's mode (or Istio's default, PERMISSIVE),
how each AuthorizationPolicy reached the workload, which RequestAuthentications select
it, and the policies that look as if they apply but do not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from meshpilot.api.request_authentication import RequestAuthentication
from meshpilot.api.security import PeerAuthentication
from meshpilot.mesh.model import MeshSnapshot, Named, ProxyNode
from meshpilot.mesh.protocols import is_tcp
from meshpilot.mesh.sidecar_ingress import applied
from meshpilot.security import InvalidIdentity, workload_identity
from meshpilot.security.policy import (
    DEFAULT_ROOT_NAMESPACE,
    EVALUATION_ORDER,
    AppliedPolicy,
    IgnoredPolicy,
    MtlsDecision,
    PolicyRef,
    WorkloadAuthorization,
    effective_mtls,
)
from meshpilot.security.policy_scope import has_selector, oldest_first, selects
from meshpilot.xds.translate import egress, jwt, rbac
from meshpilot.xds.translate.workload_security import InboundSecurity, inbound_security

_ROOT_SELECTOR_RA = (
    "a RequestAuthentication with a selector in the root namespace is not applied to "
    "sidecars here (only one without a selector, mesh-wide); put it in the workload's "
    "namespace"
)


def pod_security(snapshot: MeshSnapshot, node: ProxyNode, *,
                 root_namespace: str = DEFAULT_ROOT_NAMESPACE) -> dict[str, Any]:
    """The inbound security of the sidecar ``node`` at ``snapshot``, explained (JSON), and
    its mode for hosts outside the registry with where that comes from. Its inbound
    ports are those its Sidecar's ingress listeners give it, as its proxy has them."""
    node = applied(snapshot, node)
    security = inbound_security(snapshot, node, root_namespace)
    return {
        "meshVersion": snapshot.version,
        "rootNamespace": root_namespace,
        "identity": _identity(snapshot, node),
        "peerAuthentication": _peer_authentication(snapshot, node, root_namespace),
        "authorization": _authorization(security, node),
        "requestAuthentication": _request_authentication(
            snapshot.request_authentications, node, root_namespace),
        "outboundTrafficPolicy": dict(zip(("mode", "from"),
                                          egress.outbound_policy(snapshot, node),
                                          strict=True)),
    }


def _identity(snapshot: MeshSnapshot, node: ProxyNode) -> dict[str, Any]:
    try:
        spiffe = workload_identity(node.namespace, node.service_account,
                                   trust_domain=snapshot.trust_domain)
    except InvalidIdentity as exc:
        return {"serviceAccount": node.service_account, "spiffeId": None, "error": str(exc)}
    return {"serviceAccount": node.service_account, "spiffeId": spiffe.uri,
            "principal": spiffe.principal, "trustDomain": snapshot.trust_domain}


# --- PeerAuthentication --------------------------------------------------------------

def _peer_authentication(snapshot: MeshSnapshot, node: ProxyNode,
                         root_namespace: str) -> dict[str, Any]:
    policies = [n.obj for n in snapshot.peer_authentications]
    whole = effective_mtls(policies, node.namespace, node.labels, root_namespace=root_namespace)
    ports = []
    for port in sorted(node.inbound, key=lambda p: p.container_port):
        decision = effective_mtls(policies, node.namespace, node.labels, port.container_port,
                                  root_namespace=root_namespace)
        ports.append({"port": port.container_port, "name": port.name,
                      "protocol": port.protocol, **_decision(decision)})
    return {
        "workload": _decision(whole),
        "ports": ports,
        "shadowed": [_shadowed(ref, policies, whole, root_namespace) for ref in whole.shadowed],
        "ignored": [_ignored(i) for i in whole.ignored],
    }


def _decision(decision: MtlsDecision) -> dict[str, Any]:
    return {
        "mode": decision.mode,
        "level": decision.level,
        "reason": decision.reason,
        "steps": [{"level": s.level, "policy": _ref(s.policy), "mode": s.mode, "port": s.port}
                  for s in decision.steps],
    }


def _shadowed(ref: PolicyRef, policies: list[PeerAuthentication], whole: MtlsDecision,
              root_namespace: str) -> dict[str, Any]:
    """A policy that lost to an older one at its level: which one is enforced instead."""
    policy = next(p for p in policies if PolicyRef.of(p) == ref)
    if has_selector(policy.spec.selector):
        level = "workload"
    else:
        level = "mesh" if ref.namespace == root_namespace else "namespace"
    winner = next((s.policy for s in whole.steps if s.level == level), None)
    reason = (f"only the oldest {level}-level policy counts: {winner.namespace}/{winner.name} "
              "is enforced instead" if winner else "an older policy at its level counts")
    return {"policy": _ref(ref), "reason": reason}


# --- AuthorizationPolicy -------------------------------------------------------------

def _authorization(security: InboundSecurity, node: ProxyNode) -> dict[str, Any]:
    auth = security.authorization
    groups = {action: [_applied(p, security.trust_domain) for p in auth.with_action(action)]
              for action in EVALUATION_ORDER}
    fail_closed = _fail_closed(security, node)
    enforced_allow = [p for p in groups["ALLOW"] if not p["dryRun"]]
    return {
        "policies": groups,
        "ignored": [_ignored(i) for i in auth.ignored],
        "allowRequired": bool(enforced_allow),
        "defaultAction": "DENY" if enforced_allow or fail_closed else "ALLOW",
        "failClosed": fail_closed,
        "evaluation": _evaluation(auth, groups, fail_closed),
    }


def _applied(applied: AppliedPolicy, trust_domain: str) -> dict[str, Any]:
    rules = len(applied.policy.spec.rules or [])
    dry_run, unsupported = _translation(applied, trust_domain)
    notes = []
    if rules == 0:
        notes.append("allow-nothing: it has no rules, so it matches no request"
                     if applied.action == "ALLOW" else "it has no rules: it matches no request")
    if dry_run:
        notes.append(f"dry run ({rbac.DRY_RUN_ANNOTATION}): evaluated and counted, "
                     "never enforced")
    if unsupported:
        notes.append(f"cannot be enforced as written ({unsupported}): the sidecar denies "
                     "every request instead")
    return {**_ref(applied.ref), "action": applied.action, "scope": applied.scope,
            "reason": applied.reason, "rules": rules, "dryRun": dry_run, "notes": notes}


def _translation(applied: AppliedPolicy, trust_domain: str) -> tuple[bool, str | None]:
    """(dry run, why it cannot be enforced), as the RBAC translation judges the policy."""
    if applied.action == "CUSTOM":
        return False, "CUSTOM (an external authorizer) is not supported"
    try:
        built = rbac.rbac_rules([applied], applied.action,  # type: ignore[arg-type]
                                trust_domain=trust_domain, for_tcp=False)
    except rbac.UnsupportedAuthorization as exc:
        return False, str(exc)
    return built is not None and built.enforced is None, None


def _fail_closed(security: InboundSecurity, node: ProxyNode) -> list[str]:
    """Why the sidecar denies every request (it fails closed on what it cannot enforce
    as written), for its HTTP ports and its TCP ports (the listener translation treats
    every protocol but TCP as HTTP); empty when it enforces the policies as written."""
    kinds = {"TCP" if is_tcp(p.protocol) else "HTTP" for p in node.inbound}
    reasons = []
    if "HTTP" in kinds:
        try:
            jwt.jwt_authn_filter(security.jwt_rules)
            rbac.http_rbac_filters(security.authorization, security.trust_domain)
        except (jwt.UnsupportedJwtRule, rbac.UnsupportedAuthorization) as exc:
            reasons.append(f"HTTP ports: {exc}")
    if "TCP" in kinds:
        try:
            rbac.network_rbac_filters(security.authorization, security.trust_domain)
        except rbac.UnsupportedAuthorization as exc:
            reasons.append(f"TCP ports: {exc}")
    return reasons


def _evaluation(auth: WorkloadAuthorization, groups: dict[str, list[dict[str, Any]]],
                fail_closed: list[str]) -> list[str]:
    """What happens to a request, step by step in Istio's order."""
    if fail_closed:
        return ["every request is denied: the sidecar fails closed on a policy it cannot "
                "enforce as written (" + "; ".join(fail_closed) + ")"]
    steps = []
    if any(not p["dryRun"] for p in groups["DENY"]):
        steps.append("DENY: a request that matches a rule of a DENY policy is denied (403)")
    allow = [p for p in groups["ALLOW"] if not p["dryRun"]]
    if not allow:
        steps.append("ALLOW: no ALLOW policy applies, so every request not denied is allowed")
    elif all(p["rules"] == 0 for p in allow):
        steps.append("ALLOW: allow-nothing: the ALLOW policies have no rules, so every "
                     "request is denied (403)")
    else:
        steps.append("ALLOW: deny by default: a request is allowed only if it matches a rule "
                     "of an ALLOW policy; any other is denied (403)")
    if auth.audit:
        steps.append("AUDIT: a request that matches an AUDIT policy is marked for audit "
                     "logging (it is not allowed or denied by it)")
    return steps


# --- RequestAuthentication -----------------------------------------------------------

def _request_authentication(policies: Iterable[Named[RequestAuthentication]], node: ProxyNode,
                            root_namespace: str) -> dict[str, Any]:
    """The RequestAuthentications whose JWT rules the sidecar checks (they add up), oldest
    first, as the translation selects them; a root-namespace one with a selector that
    matches is listed as ignored."""
    applied, ignored = [], []
    by_age = oldest_first([n.obj for n in policies])
    for policy in by_age:
        reason = _ra_reason(policy, node, root_namespace)
        if reason is None:
            continue
        ref = PolicyRef.of(policy)
        if reason == _ROOT_SELECTOR_RA:
            ignored.append({"policy": _ref(ref), "reason": reason})
            continue
        applied.append({**_ref(ref), "reason": reason,
                        "issuers": [r.issuer for r in policy.spec.jwt_rules or ()]})
    effect = ("a request carrying a token from one of these issuers must carry a valid one "
              "(else 401); a request without a token passes this check, and is refused only "
              "if an AuthorizationPolicy requires requestPrincipals") if applied else None
    return {"policies": applied, "ignored": ignored, "effect": effect}


def _ra_reason(policy: RequestAuthentication, node: ProxyNode,
               root_namespace: str) -> str | None:
    home = policy.metadata.namespace
    selector = policy.spec.selector
    if home == node.namespace:
        if not has_selector(selector):
            return f"namespace-wide: no selector, in the workload's namespace {home}"
        if selects(selector, node.labels):
            labels = ", ".join(f"{k}={v}" for k, v in sorted(selector.match_labels.items()))
            return f"its selector {{{labels}}} matches the workload"
        return None
    if home != root_namespace:
        return None
    if not has_selector(selector):
        return f"mesh-wide: no selector, in the root namespace {root_namespace}"
    return _ROOT_SELECTOR_RA if selects(selector, node.labels) else None


def _ignored(item: IgnoredPolicy) -> dict[str, Any]:
    return {"policy": _ref(item.policy), "reason": item.reason}


def _ref(ref: PolicyRef) -> dict[str, str]:
    return {"kind": ref.kind, "namespace": ref.namespace, "name": ref.name}

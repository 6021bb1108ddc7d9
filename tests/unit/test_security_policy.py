"""Which PeerAuthentication and AuthorizationPolicy govern a workload. Each test names
the Istio behaviour it follows (istio.io PeerAuthentication and AuthorizationPolicy
references, the authentication/authorization concept pages)."""

from __future__ import annotations

from typing import Any

from meshpilot.api.security import AuthorizationPolicy, PeerAuthentication
from meshpilot.security.policy import (
    EVALUATION_ORDER,
    PolicyRef,
    authorization_for,
    effective_mtls,
    peer_authentication_conflicts,
)

FINANCE = {"app": "finance", "version": "v1"}
T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"


def pa(namespace: str, name: str, mode: str | None = None, *, created: str | None = T0,
       selector: dict[str, str] | None = None, ports: dict[str, str] | None = None,
       ) -> PeerAuthentication:
    spec: dict[str, Any] = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if ports is not None:
        spec["portLevelMtls"] = {port: {"mode": m} for port, m in ports.items()}
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if created is not None:
        metadata["creationTimestamp"] = created
    return PeerAuthentication.model_validate({"metadata": metadata, "spec": spec})


def ref(namespace: str, name: str, kind: str = "PeerAuthentication") -> PolicyRef:
    return PolicyRef(kind, namespace, name)


# --- PeerAuthentication: levels and inheritance --------------------------------------


def test_with_no_policy_the_mode_is_permissive() -> None:
    # Istio: without any PeerAuthentication, sidecars accept mTLS and plaintext.
    decision = effective_mtls([], "foo", FINANCE, 8080)
    assert decision.mode == "PERMISSIVE" and decision.level == "default"
    assert decision.decided_by is None and "default" in decision.reason


def test_mesh_wide_policy_lives_in_the_root_namespace() -> None:
    # Istio: a policy without selector in the root namespace (istio-system) is mesh-wide.
    policies = [pa("istio-system", "default", "STRICT")]
    decision = effective_mtls(policies, "foo", FINANCE)
    assert decision.mode == "STRICT" and decision.level == "mesh"
    assert decision.reason == "STRICT from mesh-wide policy istio-system/default"
    # anywhere else, a selector-less policy covers its own namespace only
    assert effective_mtls([pa("bar", "default", "STRICT")], "foo", FINANCE).mode == "PERMISSIVE"


def test_root_namespace_is_configurable() -> None:
    policies = [pa("mesh-config", "default", "STRICT"), pa("istio-system", "x", "DISABLE")]
    decision = effective_mtls(policies, "foo", {}, root_namespace="mesh-config")
    assert decision.mode == "STRICT" and decision.level == "mesh"


def test_namespace_policy_overrides_mesh_and_workload_policy_overrides_namespace() -> None:
    # Istio's reference example: namespace foo PERMISSIVE, workload app=finance STRICT.
    policies = [
        pa("istio-system", "default", "STRICT"),
        pa("foo", "default", "PERMISSIVE"),
        pa("foo", "finance", "STRICT", selector={"app": "finance"}),
    ]
    finance = effective_mtls(policies, "foo", FINANCE)
    assert finance.mode == "STRICT" and finance.level == "workload"
    assert finance.decided_by is not None and finance.decided_by.policy == ref("foo", "finance")
    other = effective_mtls(policies, "foo", {"app": "cart"})
    assert other.mode == "PERMISSIVE" and other.level == "namespace"
    elsewhere = effective_mtls(policies, "bar", FINANCE)
    assert elsewhere.mode == "STRICT" and elsewhere.level == "mesh"


def test_selector_must_match_every_label_and_stay_in_its_namespace() -> None:
    # Istio: matchLabels must all match; a selector only looks in its own namespace.
    policies = [pa("foo", "v2", "DISABLE", selector={"app": "finance", "version": "v2"}),
                pa("bar", "finance", "DISABLE", selector={"app": "finance"})]
    assert effective_mtls(policies, "foo", FINANCE).mode == "PERMISSIVE"


def test_unset_inherits_from_the_level_above() -> None:
    # Istio: UNSET (or no mtls at all) inherits the parent's mode.
    policies = [
        pa("istio-system", "default", "STRICT"),
        pa("foo", "default", "UNSET"),
        pa("foo", "finance", None, selector={"app": "finance"}),
    ]
    decision = effective_mtls(policies, "foo", FINANCE)
    assert decision.mode == "STRICT" and decision.level == "mesh"
    assert [s.level for s in decision.steps] == ["mesh", "namespace", "workload"]
    assert decision.reason == (
        "STRICT from mesh-wide policy istio-system/default (inherited: namespace-wide policy "
        "foo/default is UNSET; workload policy foo/finance is UNSET)"
    )


def test_unset_all_the_way_up_is_permissive() -> None:
    decision = effective_mtls([pa("istio-system", "default", "UNSET")], "foo", {})
    assert decision.mode == "PERMISSIVE" and decision.level == "default"
    assert "istio-system/default is UNSET" in decision.reason


def test_port_level_mtls_overrides_for_that_port_only() -> None:
    # Istio's reference example: finance STRICT, but port 8080 plaintext (DISABLE).
    policies = [pa("foo", "finance", "STRICT", selector={"app": "finance"},
                   ports={"8080": "DISABLE"})]
    on_8080 = effective_mtls(policies, "foo", FINANCE, 8080)
    assert on_8080.mode == "DISABLE" and on_8080.level == "port"
    assert on_8080.reason == (
        "DISABLE from port-level setting of workload policy foo/finance for port 8080")
    assert effective_mtls(policies, "foo", FINANCE, 9090).mode == "STRICT"
    assert effective_mtls(policies, "foo", FINANCE).mode == "STRICT"  # no port asked


def test_workload_unset_with_port_override_inherits_namespace_for_other_ports() -> None:
    # Istio's reference example: mode UNSET inherits namespace/mesh, port 8080 overridden.
    policies = [
        pa("foo", "default", "STRICT"),
        pa("foo", "finance", "UNSET", selector={"app": "finance"}, ports={"8080": "DISABLE"}),
    ]
    assert effective_mtls(policies, "foo", FINANCE, 8080).mode == "DISABLE"
    other = effective_mtls(policies, "foo", FINANCE, 9090)
    assert other.mode == "STRICT" and other.level == "namespace"


def test_unset_port_mode_inherits_the_workload_mode() -> None:
    # Istio: an UNSET port-level mode takes the workload-level result.
    policies = [
        pa("foo", "default", "DISABLE"),
        pa("foo", "finance", "STRICT", selector={"app": "finance"}, ports={"8080": "UNSET"}),
    ]
    decision = effective_mtls(policies, "foo", FINANCE, 8080)
    assert decision.mode == "STRICT" and decision.level == "workload"
    assert decision.steps[-1].level == "port" and decision.steps[-1].mode == "UNSET"


def test_empty_selector_is_namespace_wide() -> None:
    # Istio: a selector with no labels selects like no selector.
    decision = effective_mtls([pa("foo", "all", "STRICT", selector={})], "foo", FINANCE)
    assert decision.mode == "STRICT" and decision.level == "namespace"


# --- PeerAuthentication: the oldest wins --------------------------------------------


def test_oldest_namespace_policy_wins_and_newer_ones_are_shadowed() -> None:
    # Istio: among policies at the same level, the oldest (creationTimestamp) applies.
    policies = [pa("foo", "newer", "DISABLE", created=T2), pa("foo", "older", "STRICT",
                                                              created=T1)]
    decision = effective_mtls(policies, "foo", {})
    assert decision.mode == "STRICT"
    assert decision.shadowed == (ref("foo", "newer"),)


def test_oldest_workload_policy_wins() -> None:
    policies = [
        pa("foo", "b-strict", "STRICT", created=T2, selector={"app": "finance"}),
        pa("foo", "a-disable", "DISABLE", created=T1, selector={"version": "v1"}),
    ]
    assert effective_mtls(policies, "foo", FINANCE).mode == "DISABLE"
    policies[1] = pa("foo", "a-disable", "DISABLE", created=T2, selector={"version": "v1"})
    # same age: namespace/name decides, so the listing order never matters
    assert effective_mtls(policies, "foo", FINANCE).mode == "DISABLE"
    assert effective_mtls(policies[::-1], "foo", FINANCE).mode == "DISABLE"


def test_timestamps_compare_as_times_not_text() -> None:
    policies = [pa("foo", "a", "DISABLE", created="2024-01-01T00:00:01Z"),
                pa("foo", "b", "STRICT", created="2024-01-01T00:00:00.500+00:00")]
    assert effective_mtls(policies, "foo", {}).mode == "STRICT"


def test_a_policy_without_timestamp_never_displaces_a_stored_one() -> None:
    policies = [pa("foo", "a-unsaved", "DISABLE", created=None), pa("foo", "z", "STRICT")]
    assert effective_mtls(policies, "foo", {}).mode == "STRICT"


def test_selector_policy_in_the_root_namespace_is_ignored_and_said_so() -> None:
    # Istio: PeerAuthentication with a workload selector in the root namespace is ignored.
    policies = [pa("istio-system", "finance", "STRICT", selector={"app": "finance"})]
    decision = effective_mtls(policies, "foo", FINANCE)
    assert decision.mode == "PERMISSIVE"
    assert [i.policy for i in decision.ignored] == [ref("istio-system", "finance")]
    in_root = effective_mtls(policies, "istio-system", FINANCE)
    assert in_root.mode == "PERMISSIVE" and in_root.ignored


# --- PeerAuthentication conflicts ---------------------------------------------------


def test_conflicts_report_several_mesh_or_namespace_wide_policies() -> None:
    # Istio warns when a scope has more than one mesh-/namespace-wide policy.
    policies = [
        pa("istio-system", "strict", "STRICT", created=T2),
        pa("istio-system", "default", "PERMISSIVE", created=T1),
        pa("foo", "one", "STRICT", created=T1),
        pa("foo", "two", "DISABLE", created=T0),
        pa("foo", "finance", "STRICT", selector={"app": "finance"}),
        pa("bar", "only", "STRICT"),
    ]
    conflicts = peer_authentication_conflicts(policies)
    assert [(c.code, c.namespace, c.policies) for c in conflicts] == [
        ("multiple-namespace-wide", "foo", (ref("foo", "two"), ref("foo", "one"))),
        ("multiple-mesh-wide", "istio-system",
         (ref("istio-system", "default"), ref("istio-system", "strict"))),
    ]
    assert "only the oldest, two, is enforced" in conflicts[0].message


def test_conflicts_include_ignored_root_selector_policies() -> None:
    policies = [pa("istio-system", "finance", "STRICT", selector={"app": "finance"})]
    (conflict,) = peer_authentication_conflicts(policies)
    assert conflict.code == "selector-in-root-namespace"
    assert "ignored" in conflict.message
    assert peer_authentication_conflicts(policies, root_namespace="mesh") == ()


# --- AuthorizationPolicy selection -------------------------------------------------


def authz(namespace: str, name: str, action: str = "ALLOW", *, created: str = T0,
          selector: dict[str, str] | None = None, **spec: Any) -> AuthorizationPolicy:
    body: dict[str, Any] = {"action": action, **spec}
    if action == "CUSTOM":
        body["provider"] = {"name": "ext-authz"}
    if selector is not None:
        body["selector"] = {"matchLabels": selector}
    return AuthorizationPolicy.model_validate({
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": body,
    })


def names(group: tuple[Any, ...]) -> list[str]:
    return [f"{p.ref.namespace}/{p.ref.name}" for p in group]


def test_policies_are_grouped_in_istio_evaluation_order() -> None:
    # Istio: CUSTOM is evaluated first, then DENY, then ALLOW; AUDIT only marks for logging.
    policies = [authz("foo", a.lower(), a) for a in ("AUDIT", "ALLOW", "DENY", "CUSTOM")]
    result = authorization_for(policies, "foo", FINANCE)
    assert EVALUATION_ORDER == ("CUSTOM", "DENY", "ALLOW", "AUDIT")
    assert [(action, names(group)) for action, group in result.in_evaluation_order()] == [
        ("CUSTOM", ["foo/custom"]), ("DENY", ["foo/deny"]), ("ALLOW", ["foo/allow"]),
        ("AUDIT", ["foo/audit"]),
    ]


def test_scopes_selector_namespace_and_mesh() -> None:
    # Istio: no selector = its namespace; root namespace = the whole mesh; a selector in the
    # root namespace matches workloads in every namespace.
    policies = [
        authz("foo", "ns-wide", "DENY"),
        authz("foo", "finance", selector={"app": "finance"}),
        authz("foo", "cart", selector={"app": "cart"}),
        authz("istio-system", "mesh-wide", "DENY"),
        authz("istio-system", "finance-everywhere", "AUDIT", selector={"app": "finance"}),
        authz("bar", "elsewhere", "DENY"),
    ]
    result = authorization_for(policies, "foo", FINANCE)
    scopes = {p.ref.name: p.scope for _, group in result.in_evaluation_order() for p in group}
    assert scopes == {"ns-wide": "namespace", "finance": "workload", "mesh-wide": "mesh",
                      "finance-everywhere": "mesh-selector"}
    reasons = {p.ref.name: p.reason for p in result.deny + result.allow + result.audit}
    assert reasons["finance"] == "its selector {app=finance} matches the workload"
    assert "root namespace istio-system" in reasons["mesh-wide"]


def test_one_allow_policy_makes_allow_required() -> None:
    # Istio: with any ALLOW policy on a workload, requests matching none are denied;
    # `spec: {}` in a namespace is such a policy (allow nothing).
    assert not authorization_for([authz("foo", "deny", "DENY")], "foo", {}).allow_required
    nothing = AuthorizationPolicy.model_validate(
        {"metadata": {"name": "allow-nothing", "namespace": "foo"}, "spec": {}})
    result = authorization_for([nothing], "foo", {"app": "x"})
    assert result.allow_required and names(result.allow) == ["foo/allow-nothing"]


def test_groups_are_oldest_first() -> None:
    policies = [authz("foo", "a", "DENY", created=T2), authz("foo", "b", "DENY", created=T1),
                authz("istio-system", "c", "DENY", created=T0)]
    assert names(authorization_for(policies, "foo", {}).deny) == [
        "istio-system/c", "foo/b", "foo/a"]


def test_target_ref_policies_do_not_select_sidecars_and_are_listed_as_ignored() -> None:
    # Istio: targetRef(s) attach a policy to a Gateway/waypoint/Service, not to sidecars.
    policies = [
        authz("foo", "waypoint", "DENY",
              targetRefs=[{"kind": "Gateway", "group": "gateway.networking.k8s.io",
                           "name": "waypoint"}]),
        authz("foo", "svc", "DENY", targetRef={"kind": "Service", "group": "", "name": "cart"}),
        authz("bar", "other", "DENY", targetRef={"kind": "Gateway", "name": "gw"}),
    ]
    result = authorization_for(policies, "foo", FINANCE)
    assert result.deny == ()
    assert [i.policy for i in result.ignored] == [
        ref("foo", "svc", "AuthorizationPolicy"), ref("foo", "waypoint", "AuthorizationPolicy")]
    assert "Gateway waypoint" in result.ignored[1].reason

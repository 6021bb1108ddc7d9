"""``describe pod``'s account of a sidecar's inbound security: the mode of each port and
the level that decided it, the AuthorizationPolicies by action with how each reached the
workload, the RequestAuthentications that select it, and what does not apply and why.
Checked against what the xDS translation enforces (``inbound_security``)."""

from __future__ import annotations

from typing import Any

from tests.builders import named, sidecar_node

from meshpilot.api.request_authentication import RequestAuthentication
from meshpilot.api.security import AuthorizationPolicy, PeerAuthentication
from meshpilot.mesh.model import InboundPort, MeshSnapshot, Named
from meshpilot.server.pod_security import pod_security
from meshpilot.xds.translate.workload_security import inbound_security

NODE = sidecar_node("reviews-1", "127.10.0.7", labels={"app": "reviews", "version": "v1"},
                    inbound=(InboundPort(9080, 40001, "http"),
                             InboundPort(9090, 40002, "tcp-db", "TCP")))


def policy(model: type[Any], kind: str, name: str, namespace: str, spec: dict[str, Any],
           created: str = "2024-01-01T00:00:00Z", **meta: Any) -> Named[Any]:
    return named(model, {"apiVersion": "security.istio.io/v1", "kind": kind,
                         "metadata": {"name": name, "namespace": namespace,
                                      "creationTimestamp": created, **meta},
                         "spec": spec})


def pa(name: str, namespace: str, spec: dict[str, Any], **kw: Any) -> Named[Any]:
    return policy(PeerAuthentication, "PeerAuthentication", name, namespace, spec, **kw)


def authz(name: str, namespace: str, spec: dict[str, Any], **kw: Any) -> Named[Any]:
    return policy(AuthorizationPolicy, "AuthorizationPolicy", name, namespace, spec, **kw)


def ra(name: str, namespace: str, spec: dict[str, Any], **kw: Any) -> Named[Any]:
    return policy(RequestAuthentication, "RequestAuthentication", name, namespace, spec, **kw)


def snapshot(*policies: Named[Any]) -> MeshSnapshot:
    def of(model: type[Any]) -> tuple[Named[Any], ...]:
        return tuple(p for p in policies if isinstance(p.obj, model))

    return MeshSnapshot(version=7, services={}, endpoints={},
                        peer_authentications=of(PeerAuthentication),
                        authorization_policies=of(AuthorizationPolicy),
                        request_authentications=of(RequestAuthentication))


def names(items: list[dict[str, Any]]) -> list[str]:
    return [f"{i['namespace']}/{i['name']}" for i in items]


def test_with_no_policy_every_port_is_permissive_by_default_and_everything_allowed() -> None:
    body = pod_security(snapshot(), NODE)
    assert body["meshVersion"] == 7
    assert body["identity"] == {
        "serviceAccount": "default", "spiffeId": "spiffe://cluster.local/ns/default/sa/default",
        "principal": "cluster.local/ns/default/sa/default", "trustDomain": "cluster.local"}
    ports = body["peerAuthentication"]["ports"]
    assert [(p["port"], p["protocol"], p["mode"], p["level"]) for p in ports] == [
        (9080, "HTTP", "PERMISSIVE", "default"), (9090, "TCP", "PERMISSIVE", "default")]
    assert ports[0]["reason"] == "no PeerAuthentication applies; PERMISSIVE is the default"
    auth = body["authorization"]
    assert auth["defaultAction"] == "ALLOW" and not auth["allowRequired"]
    assert auth["evaluation"] == [
        "ALLOW: no ALLOW policy applies, so every request not denied is allowed"]
    assert body["requestAuthentication"] == {"policies": [], "ignored": [], "effect": None}


def test_mtls_levels_port_settings_shadowed_and_ignored_policies() -> None:
    snap = snapshot(
        pa("mesh", "istio-system", {"mtls": {"mode": "STRICT"}}),
        pa("ns-old", "default", {"mtls": {"mode": "UNSET"}}, created="2024-01-01T00:00:00Z"),
        pa("ns-new", "default", {"mtls": {"mode": "DISABLE"}}, created="2024-02-01T00:00:00Z"),
        pa("reviews", "default", {"selector": {"matchLabels": {"app": "reviews"}},
                                  "portLevelMtls": {"9090": {"mode": "DISABLE"}}}),
        pa("root-selector", "istio-system", {"selector": {"matchLabels": {"app": "reviews"}},
                                             "mtls": {"mode": "DISABLE"}}),
    )
    body = pod_security(snap, NODE)["peerAuthentication"]
    http, tcp = body["ports"]
    assert (http["mode"], http["level"]) == ("STRICT", "mesh")
    assert http["reason"] == (
        "STRICT from mesh-wide policy istio-system/mesh (inherited: namespace-wide policy "
        "default/ns-old is UNSET; workload policy default/reviews is UNSET)")
    assert [(s["level"], s["mode"]) for s in http["steps"]] == [
        ("mesh", "STRICT"), ("namespace", "UNSET"), ("workload", "UNSET")]
    assert (tcp["mode"], tcp["level"]) == ("DISABLE", "port")
    assert "port-level setting of workload policy default/reviews for port 9090" in tcp["reason"]
    assert body["workload"]["mode"] == "STRICT"
    # what describe says is what the sidecar is programmed with
    enforced = dict(inbound_security(snap, NODE).modes)
    assert {p["port"]: p["mode"] for p in body["ports"]} == enforced
    [shadowed] = body["shadowed"]
    assert shadowed["policy"]["name"] == "ns-new"
    assert "default/ns-old is enforced instead" in shadowed["reason"]
    [ignored] = body["ignored"]
    assert ignored["policy"]["name"] == "root-selector"
    assert "root namespace is ignored" in ignored["reason"]


def test_authorization_groups_reasons_and_allow_nothing() -> None:
    snap = snapshot(
        authz("no-admin", "default", {"selector": {"matchLabels": {"app": "reviews"}},
                                      "action": "DENY",
                                      "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}),
        authz("allow-nothing", "default", {}),
        authz("audit-all", "istio-system", {"action": "AUDIT", "rules": [{}]}),
        authz("other-app", "default", {"selector": {"matchLabels": {"app": "ratings"}}}),
        authz("elsewhere", "prod", {}),
        authz("by-ref", "default", {"targetRef": {"kind": "Gateway", "name": "gw"}}),
    )
    auth = pod_security(snap, NODE)["authorization"]
    groups = auth["policies"]
    assert names(groups["DENY"]) == ["default/no-admin"]
    assert names(groups["ALLOW"]) == ["default/allow-nothing"]
    assert names(groups["AUDIT"]) == ["istio-system/audit-all"] and groups["CUSTOM"] == []
    deny, allow, audit = groups["DENY"][0], groups["ALLOW"][0], groups["AUDIT"][0]
    assert (deny["scope"], deny["rules"]) == ("workload", 1)
    assert deny["reason"] == "its selector {app=reviews} matches the workload"
    assert allow["reason"] == "namespace-wide: no selector, in the workload's namespace default"
    assert allow["notes"] == ["allow-nothing: it has no rules, so it matches no request"]
    assert audit["scope"] == "mesh" and "root namespace istio-system" in audit["reason"]
    assert names([i["policy"] for i in auth["ignored"]]) == ["default/by-ref"]
    assert "targetRef" in auth["ignored"][0]["reason"]
    assert auth["defaultAction"] == "DENY" and auth["allowRequired"]
    assert auth["failClosed"] == []
    assert auth["evaluation"] == [
        "DENY: a request that matches a rule of a DENY policy is denied (403)",
        "ALLOW: allow-nothing: the ALLOW policies have no rules, so every request is "
        "denied (403)",
        "AUDIT: a request that matches an AUDIT policy is marked for audit logging (it is "
        "not allowed or denied by it)",
    ]


def test_a_dry_run_allow_policy_does_not_deny_by_default() -> None:
    snap = snapshot(authz("trial", "default", {"rules": [{"from": [{"source": {
        "namespaces": ["default"]}}]}]}, annotations={"istio.io/dry-run": "true"}))
    auth = pod_security(snap, NODE)["authorization"]
    [trial] = auth["policies"]["ALLOW"]
    assert trial["dryRun"] and "never enforced" in trial["notes"][0]
    assert auth["defaultAction"] == "ALLOW" and not auth["allowRequired"]


def test_a_policy_the_sidecar_cannot_enforce_is_shown_as_failing_closed() -> None:
    snap = snapshot(authz("odd", "default", {"rules": [{"when": [
        {"key": "experimental.envoy.filters.foo", "values": ["x"]}]}]}))
    auth = pod_security(snap, NODE)["authorization"]
    [odd] = auth["policies"]["ALLOW"]
    assert "cannot be enforced as written" in odd["notes"][0]
    assert auth["defaultAction"] == "DENY"
    assert [r.split(":")[0] for r in auth["failClosed"]] == ["HTTP ports", "TCP ports"]
    assert auth["evaluation"][0].startswith("every request is denied: the sidecar fails closed")


def test_request_authentications_that_select_the_workload() -> None:
    jwt = {"jwtRules": [{"issuer": "https://a.example", "jwksUri": "https://a.example/k"}]}
    snap = snapshot(
        ra("ns-wide", "default", jwt, created="2024-01-02T00:00:00Z"),
        ra("mine", "default", {"selector": {"matchLabels": {"app": "reviews"}}, "jwtRules": [
            {"issuer": "https://b.example", "jwksUri": "https://b.example/k"}]},
           created="2024-01-01T00:00:00Z"),
        ra("theirs", "default", {"selector": {"matchLabels": {"app": "ratings"}}, **jwt}),
        ra("mesh", "istio-system", {"jwtRules": [
            {"issuer": "https://c.example", "jwksUri": "https://c.example/k"}]}),
        ra("root-selector", "istio-system", {"selector": {"matchLabels": {"app": "reviews"}},
                                             **jwt}),
        ra("prod", "prod", jwt),
    )
    body = pod_security(snap, NODE)["requestAuthentication"]
    applied = body["policies"]
    # oldest first (equal ages by namespace, then name), as the JWT filter gets the rules
    assert names(applied) == ["default/mine", "istio-system/mesh", "default/ns-wide"]
    assert applied[0]["reason"] == "its selector {app=reviews} matches the workload"
    assert [i for p in applied for i in p["issuers"]] == [
        r.issuer for r in inbound_security(snap, NODE).jwt_rules]  # what the sidecar checks
    assert names([i["policy"] for i in body["ignored"]]) == ["istio-system/root-selector"]
    assert body["effect"] and "401" in body["effect"]

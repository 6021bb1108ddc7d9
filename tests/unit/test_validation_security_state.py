"""Security checks across objects, on the state after the whole apply: PeerAuthentication
conflicts (MP2007, MP2008) and one issuer given to a workload twice (MP2009)."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml

from meshpilot.api.identity import ObjectKey
from meshpilot.validation import Diagnostic, Plan, StateObject, check_state, plan_apply

SEC = "security.istio.io"
OLD, OLDER = "2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"


def doc(kind: str, namespace: str, name: str, spec: dict[str, Any],
        created: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": f"{SEC}/v1", "kind": kind, "metadata": meta, "spec": spec}


def pa(namespace: str, name: str, mode: str = "STRICT", selector: dict[str, str] | None = None,
       created: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"mtls": {"mode": mode}}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    return doc("PeerAuthentication", namespace, name, spec, created)


def ra(namespace: str, name: str, *issuers: str,
       selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"jwtRules": [{"issuer": i} for i in issuers]}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    return doc("RequestAuthentication", namespace, name, spec)


def deployment(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "x"}]}}}}


def stored(body: dict[str, Any]) -> StateObject:
    meta = body["metadata"]
    group = body["apiVersion"].rpartition("/")[0]
    return StateObject(ObjectKey(group, body["kind"], meta["namespace"], meta["name"]), body)


def plan(*docs: dict[str, Any], existing: list[dict[str, Any]] | None = None) -> Plan:
    text = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
    return plan_apply([("policies.yaml", text)], [stored(b) for b in existing or []])


def found(p: Plan | list[Diagnostic], code: str) -> list[tuple[str, str]]:
    items = p.diagnostics if isinstance(p, Plan) else p
    return sorted((d.object, d.path) for d in items if d.code == code)


def message(p: Plan, code: str, obj: str) -> str:
    (d,) = [d for d in p.diagnostics if d.code == code and d.object == obj]
    return d.message


# --- PeerAuthentication ---------------------------------------------------------------


def test_two_mesh_wide_policies_in_one_apply_are_both_warned_about() -> None:
    p = plan(pa("istio-system", "strict-b"), pa("istio-system", "permissive-a", "PERMISSIVE"))
    assert p.ok and len(p.objects) == 2  # warnings: both are stored
    assert found(p, "MP2007") == [("PeerAuthentication istio-system/permissive-a", ""),
                                  ("PeerAuthentication istio-system/strict-b", "")]
    text = message(p, "MP2007", "PeerAuthentication istio-system/strict-b")
    assert "mesh-wide" in text and "only the oldest, permissive-a, is enforced" in text
    d = next(d for d in p.diagnostics if d.code == "MP2007")
    assert d.severity == "warning" and d.file == "policies.yaml" and d.line is not None


def test_a_new_mesh_wide_policy_loses_to_the_stored_one_whatever_its_date() -> None:
    new = pa("istio-system", "a-new", created="2000-01-01T00:00:00Z")  # the store ignores it
    p = plan(new, existing=[pa("istio-system", "z-old", created=OLD)])
    assert found(p, "MP2007") == [("PeerAuthentication istio-system/a-new", "")]
    assert "only the oldest, z-old, is enforced" in message(
        p, "MP2007", "PeerAuthentication istio-system/a-new")


def test_reapplying_the_enforced_policy_keeps_its_age() -> None:
    existing = [pa("istio-system", "z-first", created=OLDER),
                pa("istio-system", "a-second", created=OLD)]
    p = plan(pa("istio-system", "z-first", "PERMISSIVE"), existing=existing)
    assert "only the oldest, z-first, is enforced" in message(
        p, "MP2007", "PeerAuthentication istio-system/z-first")


def test_describe_shows_the_conflict_on_every_policy_of_it() -> None:
    state = [stored(pa("istio-system", "a", created=OLDER)),
             stored(pa("istio-system", "b", created=OLD))]
    assert check_state(state) == []  # nothing changed: an apply reports nothing
    every = check_state(state, all_objects=True)
    assert found(every, "MP2007") == [("PeerAuthentication istio-system/a", ""),
                                      ("PeerAuthentication istio-system/b", "")]
    assert all(d.file is None for d in every)


def test_namespace_wide_policies_conflict_within_one_namespace_only() -> None:
    p = plan(pa("shop", "one"), pa("shop", "two"), pa("ops", "three"))
    assert found(p, "MP2007") == [("PeerAuthentication shop/one", ""),
                                  ("PeerAuthentication shop/two", "")]
    assert "namespace-wide" in message(p, "MP2007", "PeerAuthentication shop/two")
    assert found(plan(pa("shop", "one"), pa("shop", "web", selector={"app": "web"})),
                 "MP2007") == []


def test_a_selector_policy_in_the_root_namespace_is_warned_about() -> None:
    p = plan(pa("istio-system", "web", selector={"app": "web"}))
    assert p.ok and found(p, "MP2008") == [("PeerAuthentication istio-system/web",
                                            "spec.selector")]
    assert "ignored" in p.diagnostics[0].message
    d = p.diagnostics[0]
    assert (d.file, d.line) == ("policies.yaml", 9)  # where its selector is
    assert found(plan(pa("shop", "web", selector={"app": "web"})), "MP2008") == []


@pytest.mark.parametrize("reverse", [False, True])
def test_order_in_the_file_does_not_matter(reverse: bool) -> None:
    docs = [pa("istio-system", "b"), pa("istio-system", "a"),
            pa("istio-system", "sel", selector={"app": "x"})]
    def said(p: Plan) -> list[tuple[str, str, str]]:
        return sorted((d.code, d.object, d.message) for d in p.diagnostics)

    p = plan(*(reversed(docs) if reverse else docs))
    assert said(p) == said(plan(*docs)) and len(p.diagnostics) == 3


# --- RequestAuthentication: one issuer, two policies, one workload ---------------------


ORDERS = deployment("shop", "orders", {"app": "orders"})


def test_two_policies_giving_one_workload_the_same_issuer() -> None:
    p = plan(ORDERS, ra("shop", "all", "https://login.shop.test"),
             ra("shop", "orders-jwt", "other", "https://login.shop.test",
                selector={"app": "orders"}))
    assert p.ok
    assert found(p, "MP2009") == [("RequestAuthentication shop/all", "spec.jwtRules[0].issuer"),
                                  ("RequestAuthentication shop/orders-jwt",
                                   "spec.jwtRules[1].issuer")]
    text = message(p, "MP2009", "RequestAuthentication shop/orders-jwt")
    assert "RequestAuthentication shop/all (jwtRules[0])" in text
    assert "Deployment shop/orders" in text and "'https://login.shop.test'" in text


def test_no_warning_when_the_policies_share_no_workload() -> None:
    p = plan(ORDERS, ra("shop", "a", "iss", selector={"app": "orders"}),
             ra("shop", "b", "iss", selector={"app": "payments"}), ra("ops", "c", "iss"))
    assert found(p, "MP2009") == []
    assert found(plan(ra("shop", "a", "iss"), ra("shop", "b", "iss")), "MP2009") == []


def test_a_root_namespace_policy_reaches_every_namespace() -> None:
    p = plan(ra("istio-system", "mesh", "iss"), ra("shop", "local", "iss"), existing=[ORDERS])
    assert found(p, "MP2009") == [("RequestAuthentication istio-system/mesh",
                                   "spec.jwtRules[0].issuer"),
                                  ("RequestAuthentication shop/local",
                                   "spec.jwtRules[0].issuer")]
    # a selector in the root namespace matches in every namespace too
    p = plan(ra("istio-system", "mesh", "iss", selector={"app": "orders"}),
             ra("shop", "local", "iss"), existing=[ORDERS])
    assert len(found(p, "MP2009")) == 2


def test_only_the_changed_policy_is_warned_about_on_apply() -> None:
    p = plan(ra("shop", "new", "iss"), existing=[ORDERS, ra("shop", "old", "iss")])
    assert found(p, "MP2009") == [("RequestAuthentication shop/new", "spec.jwtRules[0].issuer")]
    assert "RequestAuthentication shop/old" in p.diagnostics[0].message


def test_the_warning_is_given_once_per_rule_however_many_workloads() -> None:
    workloads = [deployment("shop", f"w{i}", {"app": f"w{i}"}) for i in range(3)]
    p = plan(*workloads, ra("shop", "a", "iss"), ra("shop", "b", "iss"))
    assert len(found(p, "MP2009")) == 2


def test_snake_case_issuers_are_compared_too() -> None:
    body = textwrap.dedent("""\
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata: {name: snake, namespace: shop}
        spec:
          jwt_rules: [{issuer: iss}]
        """)
    p = plan_apply([("snake.yaml", body)], [stored(ORDERS), stored(ra("shop", "b", "iss"))])
    assert found(p, "MP2009") == [("RequestAuthentication shop/snake", "spec.jwtRules[0].issuer")]

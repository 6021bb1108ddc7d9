"""Generated objects: names, selectors, routes, and that the store would accept them."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.unit.rollout_harness import canary, deployment

from meshpilot.api.flagger import Canary
from meshpilot.api.kubernetes import Deployment, Service
from meshpilot.api.networking import DestinationRule, VirtualService
from meshpilot.delivery import objects as gen
from meshpilot.delivery.state import RolloutState
from meshpilot.validation import plan_apply
from meshpilot.validation.codes import Severity


def make(analysis: dict[str, Any] | None = None, **service: Any) -> Canary:
    body = canary(analysis)
    body["spec"]["service"].update(service)
    return Canary.model_validate(body)


def state(**fields: Any) -> RolloutState:
    st = RolloutState(phase="Progressing", canary_scaled=True, target_replicas=2)
    for k, v in fields.items():
        setattr(st, k, v)
    return st


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_names_and_selectors_follow_flagger() -> None:
    target = deployment("v1")
    objs = gen.desired_objects(make(), target, state(primary_template=target["spec"]["template"]))
    services = by_kind(objs, "Service")
    assert set(services) == {"podinfo", "podinfo-primary", "podinfo-canary"}
    assert services["podinfo"]["spec"]["selector"] == {"app": "podinfo-primary"}
    assert services["podinfo-primary"]["spec"]["selector"] == {"app": "podinfo-primary"}
    assert services["podinfo-canary"]["spec"]["selector"] == {"app": "podinfo"}
    primary = by_kind(objs, "Deployment")["podinfo-primary"]
    assert primary["spec"]["selector"]["matchLabels"] == {"app": "podinfo-primary"}
    assert primary["spec"]["template"]["metadata"]["labels"] == {"app": "podinfo-primary"}
    assert primary["spec"]["replicas"] == 2
    assert set(by_kind(objs, "DestinationRule")) == {"podinfo-primary", "podinfo-canary"}
    vs = by_kind(objs, "VirtualService")["podinfo"]
    assert vs["spec"]["hosts"] == ["podinfo"]
    for model, kind in ((Service, "Service"), (Deployment, "Deployment"),
                        (DestinationRule, "DestinationRule"), (VirtualService, "VirtualService")):
        for obj in by_kind(objs, kind).values():
            model.model_validate(obj)


def test_the_generated_set_passes_the_store_validation() -> None:
    target = deployment("v1")
    canary_body = canary()
    c = Canary.model_validate(canary_body)
    objs = gen.desired_objects(c, target, state(canary_weight=30,
                                                primary_template=target["spec"]["template"]))
    objs = [o for o in objs if not (o["kind"] == "Deployment" and o["metadata"]["name"] ==
                                    "podinfo")]
    sources = [(f"{o['kind']}.json", json.dumps(o)) for o in [canary_body, target, *objs]]
    plan = plan_apply(sources)
    errors = [d for d in plan.diagnostics if d.severity == Severity.ERROR]
    assert plan.ok and not errors, [d.message for d in plan.diagnostics]


def test_weights_sum_to_100_and_canary_traffic_needs_ready_pods() -> None:
    c = make()
    vs = gen.virtual_service(c, gen.routing(c, state(canary_weight=30)))
    route = vs["spec"]["http"][0]["route"]
    assert [(r["destination"]["host"], r["weight"]) for r in route] == [
        ("podinfo-primary", 70), ("podinfo-canary", 30)]
    held = gen.routing(c, state(canary_weight=30), canary_ready=False)
    assert (held.primary_weight, held.canary_weight) == (100, 0)


def test_service_fields_are_carried_to_every_rule() -> None:
    c = make(
        hosts=["app.example.com"], gateways=["public-gateway"], timeout="5s",
        retries={"attempts": 3, "perTryTimeout": "1s"},
        headers={"request": {"add": {"x-via": "mesh"}}},
        match=[{"uri": {"prefix": "/api"}}],
        trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL"}},
    )
    vs = gen.virtual_service(c, gen.routing(c, state(canary_weight=10)))
    assert vs["spec"]["hosts"] == ["podinfo", "app.example.com"]
    assert vs["spec"]["gateways"] == ["public-gateway"]  # as Flagger: no mesh beside it
    rule = vs["spec"]["http"][0]
    assert rule["timeout"] == "5s" and rule["retries"]["attempts"] == 3
    assert rule["headers"] == {"request": {"add": {"x-via": "mesh"}}}
    assert rule["match"] == [{"uri": {"prefix": "/api"}}]
    for dr in gen.destination_rules(c):
        assert dr["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}}
    VirtualService.model_validate(vs)


def test_ab_match_rule_comes_first_and_merges_service_match() -> None:
    c = make({"iterations": 5, "match": [{"headers": {"user": {"exact": "beta"}}}]},
             match=[{"uri": {"prefix": "/api"}}])
    vs = gen.virtual_service(c, gen.routing(c, state(ab_active=True)))
    first, default = vs["spec"]["http"]
    assert first["match"] == [{"uri": {"prefix": "/api"}, "headers": {"user": {"exact": "beta"}}}]
    assert [r["weight"] for r in first["route"]] == [0, 100]
    assert default["match"] == [{"uri": {"prefix": "/api"}}]
    assert [r["weight"] for r in default["route"]] == [100, 0]
    VirtualService.model_validate(vs)


AFFINITY = {"sessionAffinity": {"cookieName": "flagger-cookie", "maxAge": 3600,
                                "primaryCookieName": "primary-cookie"}}


def test_session_affinity_routes_cookie_holders_to_canary() -> None:
    """Flagger's getSessionAffinityRouteRules while the canary has weight: the sticky
    canary rule matches name and value of this run's cookie, the primary's cookie lives
    one analysis interval (10 s here), and new clients get the cookie of their side."""
    c = make(AFFINITY)
    st = state(canary_weight=20, session_affinity_cookie="flagger-cookie=abcdeFGHIJ",
               primary_session_affinity_cookie="primary-cookie=KLMNOpqrst",
               previous_session_affinity_cookie="flagger-cookie=oldOLDoldO")
    vs = gen.virtual_service(c, gen.routing(c, st))
    sticky, primary_rule, weighted = vs["spec"]["http"]
    regex = sticky["match"][0]["headers"]["Cookie"]["regex"]
    assert re.fullmatch(regex, "session=1; flagger-cookie=abcdeFGHIJ")
    assert not re.fullmatch(regex, "flagger-cookie=oldOLDoldO")  # an earlier run's cookie
    assert [r["weight"] for r in sticky["route"]] == [0, 100]
    primary_regex = primary_rule["match"][0]["headers"]["Cookie"]["regex"]
    assert re.fullmatch(primary_regex, "primary-cookie=KLMNOpqrst")
    assert [r["weight"] for r in primary_rule["route"]] == [100, 0]
    primary_dest, canary_dest = weighted["route"]
    assert "match" not in weighted and canary_dest["weight"] == 20
    assert canary_dest["headers"]["response"]["add"]["Set-Cookie"] == (
        "flagger-cookie=abcdeFGHIJ; Max-Age=3600")
    assert primary_dest["headers"]["response"]["add"]["Set-Cookie"] == (
        "primary-cookie=KLMNOpqrst; Max-Age=10")
    VirtualService.model_validate(vs)
    # with no canary traffic and no earlier run, only the weighted rule
    idle = gen.virtual_service(c, gen.routing(c, state(canary_weight=0)))
    assert len(idle["spec"]["http"]) == 1


def test_previous_cookie_is_expired_once_the_canary_has_no_weight() -> None:
    """Flagger's router at canary weight 0: requests carrying the previous run's cookie
    go to the primary and the response expires that cookie (Max-Age=-1); the service's
    own response headers are kept beside it."""
    c = make(AFFINITY, headers={"response": {"add": {"x-served-by": "mesh"}}})
    st = state(canary_weight=0, previous_session_affinity_cookie="flagger-cookie=oldOLDoldO")
    vs = gen.virtual_service(c, gen.routing(c, st))
    expiring, weighted = vs["spec"]["http"]
    assert re.fullmatch(expiring["match"][0]["headers"]["Cookie"]["regex"],
                        "flagger-cookie=oldOLDoldO")
    assert [(r["destination"]["host"], r["weight"]) for r in expiring["route"]] == [
        ("podinfo-primary", 100), ("podinfo-canary", 0)]
    assert expiring["headers"]["response"]["add"] == {
        "x-served-by": "mesh", "Set-Cookie": "flagger-cookie=oldOLDoldO; Max-Age=-1"}
    assert "match" not in weighted and weighted["headers"] == {
        "response": {"add": {"x-served-by": "mesh"}}}
    assert c.spec.service.headers == {"response": {"add": {"x-served-by": "mesh"}}}
    VirtualService.model_validate(vs)
    # a canary without ready pods gets nothing, and the expiry rule stays
    held = gen.virtual_service(c, gen.routing(c, state(
        canary_weight=30, session_affinity_cookie="flagger-cookie=abcdeFGHIJ",
        previous_session_affinity_cookie="flagger-cookie=oldOLDoldO"), canary_ready=False))
    assert [len(rule["route"]) for rule in held["spec"]["http"]] == [2, 2]
    assert all(rule["route"][1]["weight"] == 0 for rule in held["spec"]["http"])


def test_set_cookie_attributes_in_flaggers_order() -> None:
    """Flagger's SessionAffinity.BuildCookie: Max-Age, Domain, HttpOnly, Partitioned,
    Path, SameSite, Secure."""
    c = make({"sessionAffinity": {"cookieName": "c", "domain": "example.com",
                                  "httpOnly": True, "partitioned": True, "path": "/",
                                  "sameSite": "Strict", "secure": True}})
    vs = gen.virtual_service(c, gen.routing(c, state(canary_weight=10,
                                                     session_affinity_cookie="c=v")))
    assert vs["spec"]["http"][-1]["route"][1]["headers"]["response"]["add"]["Set-Cookie"] == (
        "c=v; Max-Age=86400; Domain=example.com; HttpOnly; Partitioned; Path=/; "
        "SameSite=Strict; Secure")


def test_initializing_writes_only_the_primary() -> None:
    target = deployment("v1")
    objs = gen.desired_objects(make(), target, RolloutState(phase="Initializing"),
                               primary_ready=False)
    assert [o["kind"] for o in objs] == ["Deployment"]
    assert objs[0]["metadata"]["name"] == "podinfo-primary"


def test_target_scaled_keeps_resource_version() -> None:
    target = deployment("v1")
    target["metadata"]["resourceVersion"] = "7"
    scaled = gen.scaled_target(target, 0)
    assert scaled is not None and scaled["spec"]["replicas"] == 0
    assert scaled["metadata"]["resourceVersion"] == "7"
    assert gen.scaled_target(scaled, 0) is None


def test_selector_label_prefers_app_then_name() -> None:
    target = deployment("v1")
    target["spec"]["selector"]["matchLabels"] = {"tier": "web", "app.kubernetes.io/name": "x"}
    assert gen.selector_label(target) == ("app.kubernetes.io/name", "x")


def test_hosts_and_gateways_follow_flaggers_router() -> None:
    """Flagger's Istio router: the apex host is added unless it or ``*`` is listed, and
    ``mesh`` only when no gateway is (its session-affinity e2e spec: hosts ["*"] on a
    gateway must not capture in-mesh traffic of other services)."""
    def spec(**service: Any) -> dict[str, Any]:
        c = make(**service)
        return gen.virtual_service(c, gen.routing(c, state(canary_weight=10)))["spec"]

    wild = spec(hosts=["*"], gateways=["istio-system/public-gateway"])
    assert wild["hosts"] == ["*"] and wild["gateways"] == ["istio-system/public-gateway"]
    both = spec(hosts=["app.example.com"], gateways=["public-gateway", "mesh"])
    assert both["gateways"] == ["public-gateway", "mesh"]
    assert both["hosts"] == ["podinfo", "app.example.com"]
    mesh_only = spec()
    assert "gateways" not in mesh_only and mesh_only["hosts"] == ["podinfo"]
    listed = spec(hosts=["podinfo", "app.example.com"], gateways=["public-gateway"])
    assert listed["hosts"] == ["podinfo", "app.example.com"]


def test_service_metadata_goes_on_the_services_and_the_virtual_service() -> None:
    """Flagger's service.apex / primary / canary metadata: on the Service of that name
    (apex also on the VirtualService); each Service labelled with its own name under the
    selector key, as Flagger's Kubernetes router does; meshpilot's marks always kept."""
    c = make(apex={"labels": {"team": "web"}, "annotations": {"docs": "apex"}},
             primary={"labels": {"tier": "stable"}},
             canary={"annotations": {"docs": "canary"},
                     "labels": {"app.kubernetes.io/managed-by": "someone-else"}})
    services = {s["metadata"]["name"]: s["metadata"] for s in gen.services(c, deployment())}
    assert services["podinfo"]["labels"] == {
        "team": "web", "app": "podinfo", **gen.MANAGED_BY}
    assert services["podinfo"]["annotations"] == {"docs": "apex",
                                                  gen.CANARY_ANNOTATION: "podinfo"}
    assert services["podinfo-primary"]["labels"] == {
        "tier": "stable", "app": "podinfo-primary", **gen.MANAGED_BY}
    assert services["podinfo-canary"]["annotations"]["docs"] == "canary"
    assert services["podinfo-canary"]["labels"] == {"app": "podinfo-canary",
                                                     **gen.MANAGED_BY}
    vs_meta = gen.virtual_service(c, gen.routing(c, state()))["metadata"]
    assert vs_meta["labels"]["team"] == "web" and vs_meta["annotations"]["docs"] == "apex"


def test_port_discovery_adds_the_other_container_ports() -> None:
    """Flagger's portDiscovery: every container port but the service's own, named by the
    container or tcp-CONTAINER-INDEX, the mesh proxy's ports left out."""
    target = deployment()
    target["spec"]["template"]["spec"]["containers"] = [
        {"name": "app", "image": "podinfo", "ports": [
            {"name": "http", "containerPort": 9898}, {"name": "grpc", "containerPort": 9999},
            {"containerPort": 9797}]},
        {"name": "istio-proxy", "image": "proxy", "ports": [{"containerPort": 15090}]},
    ]
    c = make(portDiscovery=True)
    for svc in gen.services(c, target):
        assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [
            ("http", 9898), ("grpc", 9999), ("tcp-app-2", 9797)]
        Service.model_validate(svc)
    plain = gen.services(make(), target)[0]["spec"]["ports"]
    assert [p["port"] for p in plain] == [9898]


def test_delegation_makes_a_delegate_virtual_service() -> None:
    """Flagger's service.delegation: the VirtualService has no hosts and no gateways, so a
    root VirtualService can delegate to it; hosts or gateways beside it are refused."""
    c = make(delegation=True)
    vs = gen.virtual_service(c, gen.routing(c, state(canary_weight=20)))
    assert "hosts" not in vs["spec"] and "gateways" not in vs["spec"]
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [80, 20]
    body = canary()
    body["spec"]["service"].update(delegation=True, hosts=["app.example.com"])
    plan = plan_apply([("canary.json", json.dumps(body))])
    assert not plan.ok
    (d,) = [d for d in plan.diagnostics if d.severity == Severity.ERROR]
    assert d.path == "spec.service" and "delegation" in d.message

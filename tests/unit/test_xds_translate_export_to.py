"""exportTo, after Istio's reference for VirtualService, DestinationRule and ServiceEntry
(and the ``networking.istio.io/exportTo`` annotation of a Service): an object is seen
only by proxies of the namespaces it is exported to (empty or ``*``: all, ``.``: its
own, ``~``: none), and the shared per-class builds give each namespace what the
reference build gives it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.unit.test_validation_gateway_tls import plan
from tests.unit.test_xds_shared import node, objects, same_as_reference
from tests.unit.test_xds_translate import (
    ENDPOINTS,
    OTHER,
    REVIEWS,
    SERVICES,
    SIDECAR,
    dr,
    snapshot,
    vhost,
    vs,
)

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.index import exported_to
from meshpilot.xds import ProxyConfigBuilder
from meshpilot.xds.translate import TYPE_CLUSTER, TYPE_ROUTE, build_resources

IN_PROD = replace(SIDECAR, id="sidecar~127.10.0.19~web.prod", namespace="prod",
                  ip="127.10.0.19")


def test_export_to_forms() -> None:
    assert exported_to((), "a", "b") and exported_to(("*",), "a", "b")
    assert exported_to((".",), "a", "a") and not exported_to((".",), "a", "b")
    assert not exported_to(("~",), "a", "a")
    assert exported_to(("b", "c"), "a", "c") and not exported_to(("b",), "a", "a")


def reviews_to_v2(export_to: str) -> Any:
    return vs(f"""
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{REVIEWS}]
  exportTo: {export_to}
  http: [{{route: [{{destination: {{host: {REVIEWS}, subset: v2}}}}]}}]
""")


def first_cluster(res: dict[str, Any]) -> str:
    return str(vhost(res, f"{REVIEWS}:9080").routes[0].route.cluster)


def test_a_virtual_service_applies_only_where_it_is_exported() -> None:
    rule = reviews_to_v2('["."]')
    here = build_resources(snapshot(rule), SIDECAR)
    there = build_resources(snapshot(rule), IN_PROD)
    assert first_cluster(here) == f"outbound|9080|v2|{REVIEWS}"
    assert first_cluster(there) == f"outbound|9080||{REVIEWS}"  # the default route
    everywhere = build_resources(snapshot(reviews_to_v2('["*"]')), IN_PROD)
    assert first_cluster(everywhere) == f"outbound|9080|v2|{REVIEWS}"


def test_a_destination_rule_applies_only_where_it_is_exported() -> None:
    rule = dr(f"""
metadata: {{name: reviews, namespace: default}}
spec:
  host: {REVIEWS}
  exportTo: [prod]
  subsets: [{{name: v1, labels: {{version: v1}}}}]
""")
    assert f"outbound|9080|v1|{REVIEWS}" in build_resources(snapshot(rule), IN_PROD)[
        TYPE_CLUSTER]
    assert f"outbound|9080|v1|{REVIEWS}" not in build_resources(snapshot(rule), SIDECAR)[
        TYPE_CLUSTER]


def test_a_service_exported_to_its_own_namespace_is_not_seen_elsewhere() -> None:
    private = replace(SERVICES[OTHER], export_to=(".",))
    snap = snapshot(services={**SERVICES, OTHER: private}, endpoints=ENDPOINTS)
    elsewhere = build_resources(snap, SIDECAR)  # default
    assert not any(OTHER in name for name in elsewhere[TYPE_CLUSTER])
    assert f"outbound|{OTHER}" not in elsewhere[TYPE_ROUTE]
    at_home = build_resources(snap, IN_PROD)
    assert f"outbound|8080||{OTHER}" in at_home[TYPE_CLUSTER]


NET = "networking.istio.io"


def test_shared_builds_follow_export_to_per_namespace() -> None:
    hidden = (ObjectKey("", "Service", "default", "svc001"), {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "svc001", "namespace": "default",
                     "annotations": {"networking.istio.io/exportTo": "."}},
        "spec": {"selector": {"app": "svc001"}, "ports": [{"name": "http", "port": 8080}]}})
    local_vs = (ObjectKey(NET, "VirtualService", "default", "a-local"), {
        "apiVersion": f"{NET}/v1", "kind": "VirtualService",
        "metadata": {"name": "a-local", "namespace": "default"},
        "spec": {"hosts": ["svc000"], "exportTo": ["."], "http": [{"route": [
            {"destination": {"host": "svc000", "subset": "v2"}}]}]}})
    snap = objects(3, {}, extra=[hidden, local_vs])
    builder = ProxyConfigBuilder()
    home, away = node(1), node(2, namespace="prod")
    assert "outbound|8080||svc001.default.svc.cluster.local" in builder.config_for(snap, home)[
        TYPE_CLUSTER]
    assert "outbound|8080||svc001.default.svc.cluster.local" not in builder.config_for(
        snap, away)[TYPE_CLUSTER]
    for proxy in (home, away):
        same_as_reference(builder, snap, proxy)


def test_a_malformed_export_to_is_refused_naming_the_field() -> None:
    for entries, why in (('["~", team]', "stands alone"), ("[Team_A]", "not a namespace"),
                         ("[a, a]", "repeats")):
        p = plan(f"""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {{name: r, namespace: shop}}
        spec: {{host: reviews, exportTo: {entries}}}
        """)
        assert not p.ok
        (error,) = p.errors
        assert error.path == "spec.exportTo" and why in error.message, error.format()

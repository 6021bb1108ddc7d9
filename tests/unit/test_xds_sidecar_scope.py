"""Istio's Sidecar resource, egress hosts: a workload's sidecar knows only the services
its Sidecar's ``namespace/dnsName`` hosts cover, picked as Istio picks the Sidecar (a
selector match in the workload's namespace, else that namespace's Sidecar without a
selector, else the root namespace's); the shared per-class builds agree with the
reference build, and a Sidecar added later changes the config of proxies already built."""

from __future__ import annotations

from typing import Any

from tests.unit.test_validation_gateway_tls import plan
from tests.unit.test_xds_shared import node, objects, same_as_reference

from meshpilot.api.identity import ObjectKey
from meshpilot.xds import CLUSTER, ROUTE, ProxyConfigBuilder
from meshpilot.xds.translate import build_resources

NET = "networking.istio.io"


def sidecar(name: str, namespace: str, hosts: list[str],
            selector: dict[str, str] | None = None, created: str = "") -> Any:
    spec: dict[str, Any] = {"egress": [{"hosts": hosts}]}
    if selector:
        spec["workloadSelector"] = {"labels": selector}
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    return (ObjectKey(NET, "Sidecar", namespace, name),
            {"apiVersion": f"{NET}/v1", "kind": "Sidecar", "metadata": meta, "spec": spec})


def service(name: str, namespace: str) -> Any:
    return (ObjectKey("", "Service", namespace, name), {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]}})


OTHERS = [service("ratings", "prod"), service("istiod", "istio-system")]


def hosts_in(config: Any) -> set[str]:
    return {name.split("|")[-1] for name in config[CLUSTER] if name.startswith("outbound|")}


def test_egress_hosts_keep_a_proxy_to_its_namespace_and_what_it_lists() -> None:
    snap = objects(3, {}, extra=[*OTHERS,
                                 sidecar("default", "default", ["./*", "istio-system/*"])])
    seen = hosts_in(build_resources(snap, node(1)))
    assert "ratings.prod.svc.cluster.local" not in seen
    assert {"svc000.default.svc.cluster.local", "istiod.istio-system.svc.cluster.local"} <= seen
    assert not any("ratings.prod" in name for name in build_resources(snap, node(1))[
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"])
    elsewhere = hosts_in(build_resources(snap, node(5, namespace="prod")))
    assert "ratings.prod.svc.cluster.local" in elsewhere  # no Sidecar applies in prod


def test_which_sidecar_applies() -> None:
    root = sidecar("default", "istio-system", ["./*"])
    mine = sidecar("ns-wide", "prod", ["prod/*"])
    picky = sidecar("for-p5", "prod", ["*/svc000.default.svc.cluster.local"],
                    selector={"app": "p5"})
    snap = objects(3, {}, extra=[*OTHERS, root, mine, picky])
    # default has none: the root namespace's default, where "." is the proxy's namespace
    assert hosts_in(build_resources(snap, node(1))) == {
        f"svc00{i}.default.svc.cluster.local" for i in range(3)}
    assert hosts_in(build_resources(snap, node(6, namespace="prod"))) == {
        "ratings.prod.svc.cluster.local"}  # its namespace's Sidecar
    assert hosts_in(build_resources(snap, node(5, namespace="prod"))) == {
        "svc000.default.svc.cluster.local"}  # the one whose selector matches


def test_the_oldest_of_two_namespace_sidecars_applies() -> None:
    older = sidecar("b-older", "default", ["prod/*"], created="2026-01-01T00:00:00Z")
    newer = sidecar("a-newer", "default", ["./*"], created="2026-06-01T00:00:00Z")
    snap = objects(2, {}, extra=[*OTHERS, older, newer])
    assert hosts_in(build_resources(snap, node(1))) == {"ratings.prod.svc.cluster.local"}


def test_shared_builds_follow_the_sidecar_and_its_changes() -> None:
    builder = ProxyConfigBuilder()
    before = objects(3, {}, extra=OTHERS)
    old = builder.config_for(before, node(1))
    assert "ratings.prod.svc.cluster.local" in hosts_in(old)
    after = objects(3, {}, extra=[*OTHERS, sidecar("default", "default", ["./*"])])
    new = builder.config_for(after, node(1))
    assert hosts_in(new) == {f"svc00{i}.default.svc.cluster.local" for i in range(3)}
    assert len(new[ROUTE]) < len(old[ROUTE])
    for proxy in (node(1), node(2), node(3, namespace="prod")):
        same_as_reference(builder, after, proxy)
    narrower = objects(3, {}, extra=[*OTHERS, sidecar("default", "default",
                                                      ["./svc000.default.svc.cluster.local"])])
    assert hosts_in(builder.config_for(narrower, node(1))) == {
        "svc000.default.svc.cluster.local"}
    same_as_reference(builder, narrower, node(2))


def test_an_egress_host_without_a_namespace_is_refused_naming_it() -> None:
    p = plan("""
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: default, namespace: shop}
    spec:
      egress: [{hosts: ["./*", reviews]}]
    """)
    assert not p.ok
    (error,) = p.errors
    assert error.path == "spec.egress[0].hosts[1]" and "namespace/dnsName" in error.message

"""The shared build and retry on the primary: a class's clusters gain the aggregate
clusters its routes name, and lose them again, and equal the reference build throughout.

Given a Canary-shaped VirtualService (primary, canary) annotated
``meshpilot.io/retry-on-primary``, when its canary's weight goes 0 -> 10 -> 0, then the
class's cluster set holds the aggregate throughout (a retry under way at a rollback
still finds it) and loses it with the annotation; without
the annotation the cluster set is the very same object at every weight (the push size
is unchanged).
"""

from __future__ import annotations

from typing import Any

from tests.unit.test_xds_shared import SNAPSHOTS, node, same_as_reference

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.model import InboundPort, MeshSnapshot, WorkloadInstance
from meshpilot.xds import CLUSTER, ProxyConfigBuilder

NET = "networking.istio.io"
H = ".default.svc.cluster.local"
AGGREGATE = f"retry_on_primary|outbound|8080||app-canary{H}|outbound|8080||app-primary{H}"


def mesh(canary_weight: int, *, annotated: bool) -> MeshSnapshot:
    objs: list[tuple[ObjectKey, dict[str, Any]]] = []
    for name in ("app-primary", "app-canary", "app"):
        objs.append((ObjectKey("", "Service", "default", name), {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]}}))
    meta: dict[str, Any] = {"name": "app", "namespace": "default"}
    if annotated:
        meta["annotations"] = {"meshpilot.io/retry-on-primary": "true"}
    objs.append((ObjectKey(NET, "VirtualService", "default", "app"), {
        "apiVersion": f"{NET}/v1", "kind": "VirtualService", "metadata": meta,
        "spec": {"hosts": ["app"], "http": [{"route": [
            {"destination": {"host": "app-primary"}, "weight": 100 - canary_weight},
            {"destination": {"host": "app-canary"}, "weight": canary_weight}]}]}}))
    pods = [WorkloadInstance(name=n, namespace="default", ip=f"127.32.0.{i}",
                             labels={"app": n}, ports=(InboundPort(8080, 18080, "http"),))
            for i, n in enumerate(("app-primary", "app-canary"), start=1)]
    pods.append(WorkloadInstance(name="p", namespace="default", ip="127.30.0.1",
                                 labels={"app": "p"}, ports=(InboundPort(9080, 40000),)))
    return SNAPSHOTS.build(1, objs, pods)


def test_aggregate_is_held_at_every_weight_and_goes_with_the_annotation() -> None:
    builder = ProxyConfigBuilder()
    held = []
    for weight, annotated in ((0, True), (10, True), (20, True), (0, True), (0, False)):
        snap = mesh(weight, annotated=annotated)
        got = builder.config_for(snap, node(1))
        held.append(AGGREGATE in got[CLUSTER])
        same_as_reference(builder, snap, node(1))
    assert held == [True, True, True, True, False]  # kept at weight 0 (see the module)


def test_without_the_annotation_the_cluster_set_never_moves() -> None:
    builder = ProxyConfigBuilder()
    sets = []
    for weight in (0, 10, 20, 0):
        snap = mesh(weight, annotated=False)
        got = builder.config_for(snap, node(1))
        sets.append(got[CLUSTER].base)
        same_as_reference(builder, snap, node(1))
    assert all(s is sets[0] for s in sets)
    assert not [n for n in sets[0] if n.startswith("retry_on_primary")]

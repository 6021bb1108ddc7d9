"""A change to one service's routes costs each proxy that service, not the whole mesh.

Given a mesh of several hundred services, each with a DestinationRule and a weighted
VirtualService, when one VirtualService's weights change, then the push planned for a
sidecar (through the real build, cache diff and make-before-break plan, in Delta and
SotW) is one RouteConfiguration (that service's), with no scope, listener, cluster or
endpoint resent; its size does not grow with the mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from meshpilot.api.networking import DestinationRule, VirtualService
from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot, Named, ProxyNode, ServicePort
from meshpilot.xds import CLUSTER, FULL_STATE_TYPES, LISTENER, ROUTE, SCOPED_ROUTE
from meshpilot.xds.holdings import Push, Subscription, apply_push, delta_push, sotw_push
from meshpilot.xds.planner import plan_update
from meshpilot.xds.resources import PreparedResource, prepare, versions
from meshpilot.xds.translate import build_resources

Config = dict[str, dict[str, PreparedResource]]
NODE = ProxyNode(id="sidecar~127.20.0.1~client.default", kind="sidecar", namespace="default",
                 ip="127.20.0.1", labels={"app": "client"})


def host(i: int) -> str:
    return f"svc-{i:04d}.default.svc.cluster.local"


def _named(model: type, doc: dict[str, Any]) -> Named[Any]:
    obj = model.model_validate(doc)
    return Named(obj.metadata.namespace, obj.metadata.name, obj)


def mesh(n: int, weights: dict[int, tuple[int, int]]) -> MeshSnapshot:
    """``n`` services, each with subsets v1/v2 and a VirtualService splitting 90/10
    (``weights`` overrides the split of some)."""
    services, endpoints, rules, routes = {}, {}, [], []
    for i in range(n):
        name, h = f"svc-{i:04d}", host(i)
        services[h] = MeshService(h, name, "default", (ServicePort(8080, "http"),),
                                  short_names=(name, f"{name}.default", f"{name}.default.svc"))
        endpoints[h] = tuple(
            Endpoint(h, 8080, f"127.21.{i // 200}.{i % 200 + v}", 8080, {"version": f"v{v}"})
            for v in (1, 2))
        rules.append(_named(DestinationRule, yaml.safe_load(f"""
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {{name: {name}}}
            spec:
              host: {name}
              subsets:
              - {{name: v1, labels: {{version: v1}}}}
              - {{name: v2, labels: {{version: v2}}}}
            """)))
        v1, v2 = weights.get(i, (90, 10))
        routes.append(_named(VirtualService, yaml.safe_load(f"""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {{name: {name}}}
            spec:
              hosts: [{name}]
              http:
              - route:
                - {{destination: {{host: {name}, subset: v1}}, weight: {v1}}}
                - {{destination: {{host: {name}, subset: v2}}, weight: {v2}}}
            """)))
    return MeshSnapshot(version=1, services=services, endpoints=endpoints,
                        virtual_services=tuple(routes), destination_rules=tuple(rules))


def pushed(
    current: dict[str, dict[str, PreparedResource]], target: dict[str, dict[str, PreparedResource]],
    diff: Callable[..., Push | None],
) -> dict[str, list[Push]]:
    """What a proxy holding (and subscribed to) ``current`` is sent to reach ``target``.

    Like Envoy, the proxy subscribes to the route configs of the scopes it is sent (and
    drops those of removed scopes); the stream answers from the staged view.
    """
    sent = {t: versions(v) for t, v in current.items()}
    subs = {t: Subscription(wildcard=t in FULL_STATE_TYPES, names=set(v))
            for t, v in current.items()}
    staged = dict(current)
    out: dict[str, list[Push]] = {}

    def flush(t: str) -> None:
        push = diff(t, staged[t], subs[t], sent[t])
        if push is not None:
            apply_push(sent[t], push, subs[t])
            out.setdefault(t, []).append(push)
            if t == SCOPED_ROUTE:
                names = {e.message.route_configuration_name for e in staged[t].values()
                         if e.name in sent[t]}
                if names != subs[ROUTE].names:
                    subs[ROUTE] = Subscription(names=names)
                    flush(ROUTE)

    for phase in plan_update(current, target):
        staged.update(phase.stage)
        for t in phase.stage:
            flush(t)
    return out


@pytest.fixture(scope="module")
def weight_change() -> tuple[Config, Config]:
    n = 500
    before = prepare(build_resources(mesh(n, {}), NODE))
    after = prepare(build_resources(mesh(n, {123: (50, 50)}), NODE))
    return before, after


@pytest.mark.parametrize("diff", [delta_push, sotw_push], ids=["delta", "sotw"])
def test_one_virtual_service_weight_change_resends_one_route_config(weight_change, diff):
    before, after = weight_change
    # and the outbound traffic policy's two route configs and scopes
    assert len(before[ROUTE]) == 500 + 2 and len(before[SCOPED_ROUTE]) == 500 * 4 + 2

    out = pushed(before, after, diff)

    assert set(out) == {ROUTE}  # no scope, listener, cluster or endpoint
    (push,) = out[ROUTE]
    assert list(push.resources) == [f"outbound|{host(123)}"] and push.removed == ()
    # the push is one service's routes: a small fraction of the mesh's route tables
    sent_bytes = sum(e.packed.ByteSize() for e in push.resources.values())
    all_bytes = sum(e.packed.ByteSize() for e in after[ROUTE].values())
    assert sent_bytes * 100 < all_bytes, (sent_bytes, all_bytes)


def test_the_push_does_not_grow_with_the_mesh():
    def change_bytes(n: int) -> int:
        before = prepare(build_resources(mesh(n, {}), NODE))
        after = prepare(build_resources(mesh(n, {3: (50, 50)}), NODE))
        out = pushed(before, after, delta_push)
        assert set(out) == {ROUTE}
        return sum(e.packed.ByteSize() for p in out[ROUTE] for e in p.resources.values())

    assert change_bytes(10) == change_bytes(200)


def test_a_new_service_adds_its_scopes_and_its_route_config_only():
    before = prepare(build_resources(mesh(100, {}), NODE))
    after = prepare(build_resources(mesh(101, {}), NODE))
    out = pushed(before, after, delta_push)
    new = host(100)
    assert [list(p.resources) for p in out[SCOPED_ROUTE]] == [
        ["svc-0100", "svc-0100.default", "svc-0100.default.svc", new]]
    assert [list(p.resources) for p in out[ROUTE]] == [[f"outbound|{new}"]]
    assert LISTENER not in out
    assert {n for p in out[CLUSTER] for n in p.resources} == {
        f"outbound|8080|{s}|{new}" for s in ("", "v1", "v2")}
    # and when it goes, its scopes are removed (Envoy then drops its route config)
    back = pushed(after, before, delta_push)
    assert [p.removed for p in back[SCOPED_ROUTE]] == [
        ("svc-0100", "svc-0100.default", "svc-0100.default.svc", new)]
    assert ROUTE not in back and LISTENER not in back

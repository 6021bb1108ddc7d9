"""What a proxy holds and asked for, shared views, and the next response from them (pure)."""

from __future__ import annotations

import asyncio

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from meshpilot.xds.first_sync import FirstSyncGate
from meshpilot.xds.holdings import Holding
from meshpilot.xds.planner import PushPlanner, plan_update
from meshpilot.xds.resources import (
    LayeredSet,
    OwnSet,
    PreparedResource,
    SharedSet,
    diff,
    names_of,
    set_digest,
    versions_of,
)
from meshpilot.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SCOPED_ROUTE

PLANNER = PushPlanner()
"""One server's planner for these tests: subscriptions interned, plans and pushes shared."""


def entry(name: str, port: int = 80) -> PreparedResource:
    m = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    m.endpoints.add().lb_endpoints.add().endpoint.address.socket_address.port_value = port
    return PreparedResource.of(name, m)


def view(**ports: int) -> SharedSet:
    return SharedSet((n, entry(n, p)) for n, p in ports.items())


def test_equal_subscriptions_are_one_object() -> None:
    a = PLANNER.subscription(False, {"x", "y"})
    assert PLANNER.subscription(False, ["y", "x"]) is a
    wildcard = PLANNER.subscription(True)
    assert wildcard is not a and PLANNER.subscription(True) is wildcard
    assert a.wants("x") and not a.wants("z") and PLANNER.subscription(True).wants("z")


def test_a_have_is_a_view_seen_through_a_subscription_with_overrides() -> None:
    v = view(a=1, b=2, c=3)
    held = Holding(v, PLANNER.subscription(False, {"a", "b", "missing"}))
    assert dict(held) == {"a": v["a"].version, "b": v["b"].version}
    assert len(held) == 2 and "c" not in held and "missing" not in held
    changed = held.with_versions({"a": "old", "b": ""})  # "" = not held
    assert dict(changed) == {"a": "old"}
    assert dict(held) == {"a": v["a"].version, "b": v["b"].version}  # immutable
    assert held.is_exactly(v, held.subscription) and not changed.is_exactly(v, held.subscription)


def test_a_haves_length_is_the_number_of_names_it_holds() -> None:
    """``len`` counts the shared part once per (view, subscription) and adjusts for the
    overrides; it must agree with iterating, whatever the overrides say."""
    v = view(a=1, b=2, c=3, d=4)
    for subs in (PLANNER.subscription(True), PLANNER.subscription(False, {"a", "b", "x"})):
        base = Holding(v, subs)
        cases = [base, base.with_versions({"a": ""}), base.with_versions({"c": "old"}),
                 base.with_versions({"x": "v", "a": "old", "b": ""}),
                 base.with_versions({"d": "", "y": ""}), Holding.of({"p": "1", "q": "2"})]
        for have in cases:
            assert len(have) == len(list(have)) == len(dict(have.items()))


def test_a_first_sync_sends_the_whole_shared_view_as_it_is() -> None:
    v = view(a=1, b=2)
    push, after = PLANNER.push(ENDPOINT, True, v, PLANNER.subscription(True), Holding())
    assert push is not None and push.entire_set and push.resources is v
    assert after.is_exactly(v, PLANNER.subscription(True))
    # nothing differs any more: no push, and the same Holding back
    again, same = PLANNER.push(ENDPOINT, True, v, PLANNER.subscription(True), after)
    assert again is None and same is after


def test_a_change_is_found_from_the_views_diff_not_name_by_name() -> None:
    old, new = view(a=1, b=2, c=3), view(a=1, b=9, d=4)
    subs = PLANNER.subscription(True)
    push, after = PLANNER.push(ENDPOINT, True, new, subs, Holding(old, subs))
    assert push is not None and sorted(push.resources) == ["b", "d"] and push.removed == ("c",)
    assert after.is_exactly(new, subs)
    # SotW EDS keeps what a response does not mention: "c" stays held, nothing removed
    push, after = PLANNER.push(ENDPOINT, False, new, subs, Holding(old, subs))
    assert push is not None and sorted(push.resources) == ["b", "d"] and not push.removed
    assert dict(after)["c"] == old["c"].version


def test_a_new_subscription_name_is_sent_and_an_unsubscribed_one_is_not_removed() -> None:
    v = view(a=1, b=2)
    before = PLANNER.subscription(False, {"a"})
    now = PLANNER.subscription(False, {"b"})
    push, after = PLANNER.push(ENDPOINT, True, v, now, Holding(v, before))
    assert push is not None and list(push.resources) == ["b"] and push.removed == ()
    assert dict(after) == {"b": v["b"].version}


def test_a_layered_view_shares_its_base_and_diffs_from_its_layers() -> None:
    base1, base2 = view(a=1, b=2), view(a=1, b=3)
    top = OwnSet([("mine", entry("mine", 7))])
    one, two = LayeredSet(base1, top), LayeredSet(base2, top)
    assert set(one) == {"a", "b", "mine"} and len(one) == 3 and one["mine"] is top["mine"]
    assert diff(one, two) == (frozenset({"b"}), frozenset())
    assert set_digest(one) != set_digest(two) and set_digest(one) == set_digest(one)


def test_proxies_making_the_same_move_share_one_plan() -> None:
    old, new, routes, scopes = view(a=1), view(a=2), view(), view()
    mine_1, mine_2 = OwnSet(), OwnSet()  # each proxy's own (unchanged) listeners

    def plan(mine: OwnSet) -> object:
        common = {CLUSTER: old, SCOPED_ROUTE: scopes, ROUTE: routes, LISTENER: mine}
        return PLANNER.plan({**common, ENDPOINT: old}, {**common, ENDPOINT: new})

    plan_1, plan_2 = plan(mine_1), plan(mine_2)
    assert plan_1 is plan_2 and [p.name for p in plan_1] == ["make"]  # type: ignore[attr-defined]


def test_the_first_sync_gate_hands_slots_over_in_order() -> None:
    async def scenario() -> list[str]:
        gate = FirstSyncGate(1)
        order: list[str] = []
        assert gate.acquire(lambda: True)
        assert not gate.acquire(lambda: order.append("closed") or False)  # declines
        assert not gate.acquire(lambda: order.append("second") or True)
        gate.release()
        for _ in range(3):
            await asyncio.sleep(0)
        assert not gate.acquire(lambda: True)  # the slot went to "second"
        return order

    assert asyncio.run(scenario()) == ["closed", "second"]


def test_proxies_making_the_same_move_share_one_push() -> None:
    """A class's proxies hold the same view and are moved to the same next one: the push
    is worked out (and encoded) once; one holding something else gets its own."""
    before, after = view(a=1, b=2), view(a=1, b=3)
    subs = PLANNER.subscription(True)
    first, held_first = PLANNER.push(ENDPOINT, True, after, subs, Holding(before, subs))
    second, held_second = PLANNER.push(ENDPOINT, True, after, subs, Holding(before, subs))
    assert first is not None and first is second and held_first is held_second
    assert list(first.resources) == ["b"] and held_first.is_exactly(after, subs)
    other, _ = PLANNER.push(ENDPOINT, True, after, subs, Holding(before, subs, {"a": "old"}))
    assert other is not None and other is not first and sorted(other.resources) == ["a", "b"]
    narrower = PLANNER.subscription(False, {"a"})
    none, held = PLANNER.push(ENDPOINT, True, after, narrower, Holding(before, narrower))
    assert none is None and held.is_exactly(after, narrower)  # "b" is not asked for


def test_a_first_sync_expects_every_cluster_at_its_version() -> None:
    """A first sync's expectations come from the view's own name -> version map (built
    once per shared view): the same as asking every name, for shared and layered views."""
    def clusters(*names: str, kind: int = cluster_pb2.Cluster.STATIC
                 ) -> list[tuple[str, PreparedResource]]:
        return [(n, PreparedResource.of(n, cluster_pb2.Cluster(name=n, type=kind)))
                for n in names]

    base = SharedSet(clusters("a", "b", "c"))
    layered = LayeredSet(base, OwnSet(clusters("inbound", "b", kind=cluster_pb2.Cluster.EDS)))
    for target in (base, layered):
        phases = plan_update({}, {CLUSTER: target})
        assert phases[0].name == "make"
        assert phases[0].expect[CLUSTER] == {n: e.version for n, e in target.items()}
        assert names_of(target) == set(target)
    assert versions_of(base) is versions_of(base)  # kept on the shared view
    assert versions_of(layered)["b"] == layered["b"].version != base["b"].version  # the top's

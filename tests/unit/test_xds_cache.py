"""The xDS cache: versions, diffs, push content and make-before-break ordering (pure),
plus the stream's protocol state machine driven by hand-written requests (no network)."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
from benchmarks.driven import DrivenStream
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2, scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from meshpilot.mesh.model import ProxyNode
from meshpilot.xds import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    Resources,
    plan_update,
)
from meshpilot.xds.consistency import consistency_problems, referenced
from meshpilot.xds.holdings import Subscription, delta_push, sotw_push
from meshpilot.xds.references import eds_name, rds_names
from meshpilot.xds.resources import PreparedResource, prepare, resource_version

ADS = config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource())


def cluster(name: str, timeout: int = 1, service_name: str = "") -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ADS, service_name=service_name),
    )
    c.connect_timeout.seconds = timeout
    return c


def cla(name: str, port: int = 80) -> endpoint_pb2.ClusterLoadAssignment:
    m = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    ep = m.endpoints.add().lb_endpoints.add().endpoint
    ep.address.socket_address.address = "127.0.0.1"
    ep.address.socket_address.port_value = port
    return m


def listener(name: str, route_name: str) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="x", rds=hcm_pb2.Rds(config_source=ADS, route_config_name=route_name))
    packed = any_pb2.Any()
    packed.Pack(hcm)
    return listener_pb2.Listener(name=name, filter_chains=[listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name="hcm", typed_config=packed)])])


def route(name: str, to: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[
        route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[
            route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix="/"),
                                       route=route_components_pb2.RouteAction(cluster=to))])])


def world(clusters: dict[str, int], to: str, *, timeout: int = 1) -> Resources:
    """clusters: name -> endpoint port; one listener whose route sends / to ``to``."""
    return {
        CLUSTER: {c: cluster(c, timeout) for c in clusters},
        ENDPOINT: {c: cla(c, p) for c, p in clusters.items()},
        LISTENER: {"http": listener("http", "routes")},
        ROUTE: {"routes": route("routes", to)},
    }


def staged_after(current: Resources) -> dict[str, dict[str, PreparedResource]]:
    return prepare(current)


# --- versions and references ------------------------------------------------------------


def test_resource_version_depends_on_content_only():
    assert resource_version(cluster("a")) == resource_version(cluster("a"))
    assert resource_version(cluster("a")) != resource_version(cluster("a", timeout=2))
    assert resource_version(cluster("a")) != resource_version(cluster("b"))
    assert len(resource_version(cla("a"))) == 16


def test_references_and_consistency():
    assert eds_name(cluster("a")) == "a"
    assert eds_name(cluster("a", service_name="svc-a")) == "svc-a"
    assert eds_name(cluster_pb2.Cluster(name="s", type=cluster_pb2.Cluster.STATIC)) is None
    assert rds_names(listener("l", "r1")) == {"r1"}
    target = prepare(world({"a": 1}, "a"))
    assert referenced(target) == {ENDPOINT: {"a"}, ROUTE: {"routes"}}
    assert consistency_problems(target) == []
    del target[ENDPOINT]["a"]
    assert consistency_problems(target) == ["ClusterLoadAssignment missing: a"]


# --- the plan ----------------------------------------------------------------------------


def test_first_sync_orders_clusters_endpoints_then_listeners_routes():
    phases = plan_update({}, prepare(world({"a": 1}, "a")))
    assert [p.name for p in phases] == ["make", "switch"]
    assert list(phases[0].stage) == [CLUSTER, ENDPOINT]
    assert list(phases[1].stage) == [LISTENER, ROUTE]
    assert phases[0].expect[CLUSTER].keys() == {"a"}
    assert phases[0].expect[ENDPOINT].keys() == {"a"}
    assert phases[1].expect[ROUTE].keys() == {"routes"}


def test_first_sync_stages_empty_types_so_initial_requests_are_answered():
    phases = plan_update({}, {})
    staged = {t for p in phases for t in p.stage}
    assert staged == {CLUSTER, ENDPOINT, LISTENER, ROUTE}
    assert all(v == {} for p in phases for v in p.stage.values())


def test_no_change_no_phase():
    cur = staged_after(world({"a": 1}, "a"))
    assert plan_update(cur, prepare(world({"a": 1}, "a"))) == []


def test_route_only_change_is_one_route_push():
    cur = staged_after(world({"a": 1, "b": 2}, "a"))
    [phase] = plan_update(cur, prepare(world({"a": 1, "b": 2}, "b")))
    assert phase.name == "switch" and list(phase.stage) == [ROUTE]
    assert list(phase.expect[ROUTE]) == ["routes"]


def test_endpoint_only_change_is_one_endpoint_push():
    cur = staged_after(world({"a": 1, "b": 2}, "a"))
    [phase] = plan_update(cur, prepare(world({"a": 1, "b": 3}, "a")))
    assert phase.name == "make" and list(phase.stage) == [ENDPOINT]
    assert list(phase.expect[ENDPOINT]) == ["b"]


def test_switch_cluster_is_make_before_break():
    cur = staged_after(world({"a": 1}, "a"))
    make, switch, brk = plan_update(cur, prepare(world({"b": 2}, "b")))
    assert make.name == "make"
    assert set(make.stage[CLUSTER]) == {"a", "b"}  # the old cluster stays for now
    assert set(make.stage[ENDPOINT]) == {"a", "b"}
    assert make.expect[CLUSTER].keys() == {"b"} and make.expect[ENDPOINT].keys() == {"b"}
    assert switch.name == "switch" and list(switch.stage) == [ROUTE]
    assert brk.name == "break"
    assert set(brk.stage[CLUSTER]) == {"b"} and set(brk.stage[ENDPOINT]) == {"b"}


def test_changed_cluster_gets_its_endpoints_again():
    cur = staged_after(world({"a": 1}, "a"))
    [make] = plan_update(cur, prepare(world({"a": 1}, "a", timeout=5)))
    assert list(make.stage) == [CLUSTER, ENDPOINT]
    assert make.resend == {ENDPOINT: frozenset({"a"})}
    assert make.expect[ENDPOINT].keys() == {"a"}


def test_removed_listener_and_route():
    cur = staged_after(world({"a": 1}, "a"))
    target = prepare({CLUSTER: {"a": cluster("a")}, ENDPOINT: {"a": cla("a", 1)}})
    switch, brk = plan_update(cur, target)
    assert switch.stage == {LISTENER: {}}  # listeners go in the switch (full set) ...
    assert brk.stage == {ROUTE: {}}  # ... their routes only after


# --- response content ---------------------------------------------------------------------


def _view(**ports: int) -> dict[str, PreparedResource]:
    return {n: PreparedResource.of(n, cla(n, p)) for n, p in ports.items()}


def test_sotw_full_state_types_send_everything_when_anything_differs():
    staged = {n: PreparedResource.of(n, cluster(n)) for n in ("a", "b")}
    wild = Subscription(wildcard=True)
    push = sotw_push(CLUSTER, staged, wild, {})
    assert push is not None and push.full_state and list(push.resources) == ["a", "b"]
    sent = {n: e.version for n, e in staged.items()}
    assert sotw_push(CLUSTER, staged, wild, sent) is None
    assert sotw_push(CLUSTER, staged, wild, sent, force=True) is not None
    del staged["b"]  # removal = a full set without it
    push = sotw_push(CLUSTER, staged, wild, sent)
    assert push is not None and list(push.resources) == ["a"]


def test_sotw_rds_eds_send_only_changed_subscribed_names():
    staged = _view(a=1, b=2, c=3)
    subs = Subscription(names={"a", "b"})
    sent = {"a": staged["a"].version, "b": "old"}
    push = sotw_push(ENDPOINT, staged, subs, sent)
    assert push is not None and list(push.resources) == ["b"] and not push.full_state
    assert sotw_push(ENDPOINT, staged, subs, {n: staged[n].version for n in "ab"}) is None


def test_delta_sends_changes_and_removals_only():
    staged = _view(a=1, b=2)
    wild = Subscription(wildcard=True)
    sent = {"a": staged["a"].version, "b": "old", "gone": "v"}
    push = delta_push(ENDPOINT, staged, wild, sent)
    assert push is not None and list(push.resources) == ["b"] and push.removed == ("gone",)
    # Not subscribed: neither sent nor removed.
    push = delta_push(ENDPOINT, staged, Subscription(names={"a"}), {"a": "old", "x": "v"})
    assert push is not None and list(push.resources) == ["a"] and push.removed == ()
    assert delta_push(ENDPOINT, staged, Subscription(names={"a"}),
                      {"a": staged["a"].version}) is None
    forced = delta_push(ENDPOINT, staged, Subscription(names={"a"}),
                        {"a": staged["a"].version}, force=True)
    assert forced is not None and not forced.resources and not forced.removed


# --- the stream state machine (driven by hand, no network) ------------------------------


NODE = ProxyNode(id="n1", kind="sidecar", namespace="default", ip="127.0.0.1")


class Harness:
    def __init__(self, api: str, resources: Resources, phase_timeout: float = 2.0) -> None:
        self.resources = resources
        self.stream = DrivenStream(node=NODE, api=api,  # type: ignore[arg-type]
                                   resources_for=lambda n: self.resources,
                                   phase_timeout=phase_timeout, stream_id="s")
        self.out = self.stream.responses

    def recv(self, timeout: float = 3.0) -> Any:
        return self.out.get(timeout=timeout)

    def none(self, timeout: float = 0.3) -> bool:
        try:
            got = self.out.get(timeout=timeout)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected response {got}")

    def sotw(self, type_url: str, names: tuple[str, ...] = (), version: str = "",
             nonce: str = "", error: str = "") -> None:
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names,
                                             version_info=version, response_nonce=nonce)
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.stream.handle(req)

    def ack(self, resp: Any, names: tuple[str, ...] = ()) -> None:
        self.sotw(resp.type_url, names, resp.version_info, resp.nonce)

    def close(self) -> None:
        self.stream.close()


@pytest.fixture
def harness():
    made: list[Harness] = []

    def make(api: str, resources: Resources, phase_timeout: float = 2.0) -> Harness:
        h = Harness(api, resources, phase_timeout)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_sotw_protocol_ack_nack_stale_and_subscriptions(harness):
    h = harness("sotw", world({"a": 1, "b": 2}, "a"))
    h.stream.start(7)
    h.sotw(CLUSTER)
    cds = h.recv()
    assert cds.type_url == CLUSTER and len(cds.resources) == 2 and cds.nonce
    assert cds.version_info.startswith("7-")
    h.sotw(ENDPOINT, ("a",))
    eds = h.recv()
    assert eds.type_url == ENDPOINT and len(eds.resources) == 1
    h.ack(cds)
    h.ack(eds, ("a",))
    # A new subscription name: only the newly requested resource is sent.
    h.ack(eds, ("a", "b"))
    eds2 = h.recv()
    assert [r.type_url for r in eds2.resources] == [ENDPOINT]
    got = endpoint_pb2.ClusterLoadAssignment()
    eds2.resources[0].Unpack(got)
    assert got.cluster_name == "b"
    # A request carrying an older nonce is stale: ignored (no ACK recorded, no response).
    h.sotw(ENDPOINT, ("a", "b"), eds2.version_info, eds.nonce)
    assert h.none()
    assert h.stream.status().types[ENDPOINT].acked_version == eds.version_info
    h.ack(eds2, ("a", "b"))
    h.sotw(LISTENER)
    lds = h.recv()
    h.ack(lds)
    h.sotw(ROUTE, ("routes",))
    rds = h.recv()
    h.sotw(ROUTE, ("routes",), "", rds.nonce, error="bad route")
    st = h.stream.status()
    assert st.types[ROUTE].nack == "bad route" and st.types[ROUTE].acked_version is None
    assert h.none()  # the rejected config is not resent
    assert st.mesh_version == -1


def test_a_phase_not_acked_in_time_moves_on(harness, caplog):
    """A proxy that never ACKs its clusters does not hold the round forever: past the
    phase timeout the listeners are staged and sent all the same."""
    h = harness("sotw", world({"a": 1}, "a"), phase_timeout=0.3)
    h.stream.start(1)
    h.sotw(CLUSTER)
    assert h.recv().type_url == CLUSTER  # not ACKed, ever
    h.sotw(LISTENER)
    assert h.none(0.1)  # the listeners wait for the clusters' ACK...
    lds = h.recv(timeout=5.0)  # ...until the phase times out
    assert lds.type_url == LISTENER and len(lds.resources) == 1
    assert "not ACKed within 0.3s" in caplog.text


def test_delta_reconnect_sends_only_what_differs(harness):
    res = world({"a": 1, "b": 2}, "a")
    h = harness("delta", res)
    h.stream.start(3)
    have = {n: resource_version(m) for n, m in res[CLUSTER].items()}
    have["old"] = "x"
    h.stream.handle(discovery_pb2.DeltaDiscoveryRequest(
        type_url=CLUSTER, initial_resource_versions=have))
    resp = h.recv()
    assert list(resp.resources) == [] and list(resp.removed_resources) == ["old"]
    h.stream.handle(discovery_pb2.DeltaDiscoveryRequest(
        type_url=CLUSTER, response_nonce=resp.nonce))
    h.stream.handle(discovery_pb2.DeltaDiscoveryRequest(
        type_url=ENDPOINT, resource_names_subscribe=["a", "b"],
        initial_resource_versions={"a": resource_version(res[ENDPOINT]["a"])}))
    eds = h.recv()
    assert [r.name for r in eds.resources] == ["b"] and eds.resources[0].version
    assert h.stream.status().types[CLUSTER].acked_version == resp.system_version_info


# --- scoped routes (SRDS): scopes name route configs ---------------------------------------


def scope(name: str, route_name: str) -> scoped_route_pb2.ScopedRouteConfiguration:
    return scoped_route_pb2.ScopedRouteConfiguration(
        name=name, route_configuration_name=route_name,
        key=scoped_route_pb2.ScopedRouteConfiguration.Key(fragments=[
            scoped_route_pb2.ScopedRouteConfiguration.Key.Fragment(string_key=name)]))


def scoped_world(services: dict[str, str]) -> Resources:
    """services: name -> cluster its routes send to; per service a scope and a route
    (next to the listener's own route config ``routes``)."""
    res = world({c: 1 for c in set(services.values())}, next(iter(services.values())))
    res[ROUTE].update({f"outbound|{s}": route(f"outbound|{s}", c) for s, c in services.items()})
    res[SCOPED_ROUTE] = {s: scope(s, f"outbound|{s}") for s in services}
    return res


def test_scopes_reference_route_configs():
    target = prepare(scoped_world({"x": "a", "y": "a"}))
    assert referenced(target)[ROUTE] == {"routes", "outbound|x", "outbound|y"}
    del target[ROUTE]["outbound|y"], target[ROUTE]["routes"]
    assert consistency_problems(target) == [
        "RouteConfiguration missing: outbound|y, routes"]


def test_scopes_and_their_routes_are_staged_together_after_listeners():
    [_, switch] = plan_update({}, prepare(scoped_world({"x": "a"})))
    assert list(switch.stage) == [LISTENER, SCOPED_ROUTE, ROUTE]
    assert switch.expect[SCOPED_ROUTE].keys() == {"x"}
    assert switch.expect[ROUTE].keys() == {"outbound|x", "routes"}


def test_one_service_route_change_is_one_route_config():
    cur = staged_after(scoped_world({"x": "a", "y": "b", "z": "b"}))
    [phase] = plan_update(cur, prepare(scoped_world({"x": "a", "y": "a", "z": "b"})))
    assert list(phase.stage) == [ROUTE] and list(phase.expect[ROUTE]) == ["outbound|y"]


def test_new_service_scope_and_route_then_removed_after():
    cur = staged_after(scoped_world({"x": "a"}))
    [switch] = plan_update(cur, prepare(scoped_world({"x": "a", "y": "a"})))
    assert list(switch.stage) == [SCOPED_ROUTE, ROUTE]
    assert set(switch.stage[SCOPED_ROUTE]) == {"x", "y"}
    assert switch.expect[SCOPED_ROUTE] == {"y": ANY_VERSION}
    assert switch.expect[ROUTE] == {"outbound|y": ANY_VERSION}
    cur = staged_after(scoped_world({"x": "a", "y": "a"}))
    [brk] = plan_update(cur, prepare(scoped_world({"x": "a"})))
    assert brk.name == "break"  # a scope goes with its route config, nothing to make first
    assert set(brk.stage[SCOPED_ROUTE]) == {"x"} and set(brk.stage[ROUTE]) == {
        "routes", "outbound|x"}


class _AnyVersion:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) == 16


ANY_VERSION: Any = _AnyVersion()


def test_delta_stream_sends_a_scopes_route_config_once_the_proxy_asks(harness):
    h = harness("delta", scoped_world({"x": "a"}))
    h.stream.start(1)

    def req(type_url: str, **kw: Any) -> None:
        h.stream.handle(discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, **kw))

    def ack(resp: Any) -> None:
        req(resp.type_url, response_nonce=resp.nonce)

    req(CLUSTER)
    ack(h.recv())
    req(ENDPOINT, resource_names_subscribe=["a"])
    ack(h.recv())
    req(LISTENER)
    ack(h.recv())
    req(SCOPED_ROUTE)  # wildcard, as Envoy's SRDS subscription is
    srds = h.recv()
    assert srds.type_url == SCOPED_ROUTE and [r.name for r in srds.resources] == ["x"]
    ack(srds)
    req(ROUTE, resource_names_subscribe=["outbound|x"])  # Envoy asks once it holds "x"
    rds = h.recv()
    assert [r.name for r in rds.resources] == ["outbound|x"]
    ack(rds)
    wait_for_mesh_version(h, 1)
    st = h.stream.status()
    assert st.types[SCOPED_ROUTE].acked_version == srds.system_version_info
    assert st.types[ROUTE].acked_version == rds.system_version_info

    # A new service: its scope, then (on the proxy's request) its route config.
    h.resources = scoped_world({"x": "a", "y": "a"})
    h.stream.trigger(2)
    srds = h.recv()
    assert [r.name for r in srds.resources] == ["y"] and not srds.removed_resources
    ack(srds)
    assert h.none()  # the phase waits for the proxy to ask for outbound|y
    req(ROUTE, resource_names_subscribe=["outbound|y"])
    rds = h.recv()
    assert [r.name for r in rds.resources] == ["outbound|y"]
    ack(rds)
    wait_for_mesh_version(h, 2)


def test_sotw_scopes_are_full_state_and_a_nack_shows_on_srds(harness):
    h = harness("sotw", scoped_world({"x": "a", "y": "a"}))
    h.stream.start(1)
    h.sotw(LISTENER)
    h.ack(h.recv())
    h.sotw(SCOPED_ROUTE)  # no names: wildcard
    srds = h.recv()
    assert [unpack_scope(a).name for a in srds.resources] == ["x", "y"]
    h.sotw(SCOPED_ROUTE, (), "", srds.nonce, error="scope key conflict")
    st = h.stream.status()
    assert st.types[SCOPED_ROUTE].nack == "scope key conflict"
    assert st.types[LISTENER].nack is None


def unpack_scope(packed: Any) -> scoped_route_pb2.ScopedRouteConfiguration:
    out = scoped_route_pb2.ScopedRouteConfiguration()
    packed.Unpack(out)
    return out


def wait_for_mesh_version(h: Any, version: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while h.stream.status().mesh_version != version:
        assert time.monotonic() < deadline, h.stream.status()
        time.sleep(0.01)

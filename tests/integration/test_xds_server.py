"""The ADS server against real Envoy processes, in both SotW (GRPC) and Delta (DELTA_GRPC).

Given a hand-built config (EDS cluster over ADS → a Python HTTP backend, a listener
whose HTTP connection manager fetches its routes over RDS), when Envoy connects, it
becomes LIVE and proxies requests; updates, NACKs, cluster switches under load and
control-plane restarts then behave as the xDS protocol requires.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from tests.conftest import wait_for
from tests.integration.ads_envoy import AdsEnvoy
from tests.proxy_tokens import authenticator

from meshpilot.mesh.model import ProxyNode
from meshpilot.proxy.admin import AdminClient
from meshpilot.proxy.admin_socket import admin_socket_path, prepare_socket_dir
from meshpilot.proxy.ports import free_port
from meshpilot.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resources, XdsServer, XdsSnapshot

APIS = ["GRPC", "DELTA_GRPC"]
LISTENER_NAME = "http"
ROUTE_NAME = "http-routes"


def free_ports(n: int) -> list[int]:
    """``n`` free loopback ports as the runtime picks them (distinct: a process never
    gets the same port twice from ``free_port``)."""
    return [free_port() for _ in range(n)]


# --- a backend ------------------------------------------------------------------------


class Backend:
    """A tiny HTTP server answering 200 with its name as the body."""

    def __init__(self, name: str) -> None:
        self.name = name
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- hand-built resources ---------------------------------------------------------------


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def _any(msg: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def make_cluster(name: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        connect_timeout=duration_pb2.Duration(seconds=1),
    )


def make_cla(name: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[
            endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
                    address="127.0.0.1", port_value=port)),
            )),
        ])],
    )


def make_listener(port: int) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="ingress_http",
        rds=hcm_pb2.Rds(config_source=_ads(), route_config_name=ROUTE_NAME),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router",
                                         typed_config=_any(router_pb2.Router()))],
    )
    return listener_pb2.Listener(
        name=LISTENER_NAME,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
            address="127.0.0.1", port_value=port)),
        filter_chains=[listener_components_pb2.FilterChain(filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager", typed_config=_any(hcm)),
        ])],
    )


def make_route(weights: dict[str, int], tag: str, *, duplicate_domains: bool = False
               ) -> route_pb2.RouteConfiguration:
    if len(weights) == 1:
        action = route_components_pb2.RouteAction(cluster=next(iter(weights)))
    else:
        action = route_components_pb2.RouteAction(
            weighted_clusters=route_components_pb2.WeightedCluster(clusters=[
                route_components_pb2.WeightedCluster.ClusterWeight(
                    name=c, weight=wrappers_pb2.UInt32Value(value=w))
                for c, w in weights.items()
            ]))
    vhost = route_components_pb2.VirtualHost(
        name="all", domains=["*"],
        routes=[route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix="/"), route=action)],
        response_headers_to_add=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="x-route-tag", value=tag))],
    )
    vhosts = [vhost]
    if duplicate_domains:  # Envoy rejects two virtual hosts with the same domain
        vhosts += [route_components_pb2.VirtualHost(name=f"dup-{i}", domains=["dup.example"],
                                                    routes=vhost.routes) for i in range(2)]
    return route_pb2.RouteConfiguration(name=ROUTE_NAME, virtual_hosts=vhosts)


@dataclass
class Mesh:
    """The config the test mutates; ``resources_for`` reads it under a lock."""

    listener_port: int
    backends: dict[str, int] = field(default_factory=dict)  # cluster -> backend port
    weights: dict[str, int] = field(default_factory=dict)
    tag: str = "v1"
    duplicate_domains: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def resources_for(self, node: ProxyNode) -> Resources:
        with self.lock:
            return {
                CLUSTER: {c: make_cluster(c) for c in self.backends},
                ENDPOINT: {c: make_cla(c, p) for c, p in self.backends.items()},
                LISTENER: {LISTENER_NAME: make_listener(self.listener_port)},
                ROUTE: {ROUTE_NAME: make_route(self.weights, self.tag,
                                               duplicate_domains=self.duplicate_domains)},
            }

    def set(self, **changes: Any) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(self, k, v)


# --- Envoy --------------------------------------------------------------------------------


class Envoy(AdsEnvoy):
    """An ADS Envoy whose admin (on a socket) the tests read."""

    def __init__(self, node: ProxyNode, xds_port: int, api_type: str, workdir: Path) -> None:
        self.node = node
        self.admin_socket = admin_socket_path(workdir, node.workload)
        prepare_socket_dir(self.admin_socket.parent)
        super().__init__(node, xds_port, workdir, f"{node.workload}-envoy",
                         api_type=api_type,  # type: ignore[arg-type]
                         admin_socket=self.admin_socket)
        self.admin = AdminClient(self.admin_socket, timeout=5.0)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"envoy exited {self.proc.returncode}:\n{self.log()}")
        return self.admin.ready()

    def config_dump(self, resource: str = "") -> dict[str, Any]:
        return self.admin.config_dump(resource or None, include_eds="endpoint" in resource)

    def cluster_hosts(self) -> dict[str, set[str]]:
        """cluster name -> "ip:port" of its hosts, from /clusters?format=json."""
        data = self.admin.clusters_json()
        out: dict[str, set[str]] = {}
        for c in data.get("cluster_statuses", []):
            hosts = set()
            for h in c.get("host_statuses", []):
                sa = h["address"]["socket_address"]
                hosts.add(f"{sa['address']}:{sa['port_value']}")
            out[c["name"]] = hosts
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.admin.close()
        super().stop()


# --- fixtures -----------------------------------------------------------------------------


@dataclass
class World:
    mesh: Mesh
    server: XdsServer
    envoy: Envoy
    node: ProxyNode
    client: httpx.Client
    backends: dict[str, Backend]
    version: int = 1
    changes: list[float] = field(default_factory=list)  # on_change notifications

    def get(self, path: str = "/") -> httpx.Response:
        return self.client.get(f"http://127.0.0.1:{self.mesh.listener_port}{path}")

    def push(self, timeout: float = 15.0, **changes: Any) -> int:
        """Apply a mesh change as snapshot version+1 and wait for the proxy's ACK."""
        self.mesh.set(**changes)
        self.version += 1
        self.server.publish(XdsSnapshot(self.version, self.mesh.resources_for))
        assert self.server.wait_acked(self.version, [self.node.id], timeout=timeout), \
            self.server.status()
        return self.version

    def add_backend(self, name: str) -> Backend:
        b = self.backends[name] = Backend(name)
        return b


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[Callable[[str], World]]:
    cleanup: list[Callable[[], None]] = []

    def make(api_type: str) -> World:
        backend = Backend("A")
        cleanup.append(backend.close)
        (listener_port,) = free_ports(1)
        mesh = Mesh(listener_port=listener_port, backends={"A": backend.port}, weights={"A": 1})
        server = XdsServer(authenticate=authenticator())
        changes: list[float] = []
        server.on_change(lambda: changes.append(time.monotonic()))
        port = server.start()
        cleanup.append(lambda: server.stop(0.2))
        server.publish(XdsSnapshot(1, mesh.resources_for))
        node = ProxyNode(id=f"sidecar~127.0.0.1~web-{api_type.lower()}.default~default",
                         kind="sidecar", namespace="default", ip="127.0.0.1",
                         workload=f"web-{api_type.lower()}", labels={"app": "web"})
        envoy = Envoy(node, port, api_type, tmp_path)
        cleanup.append(envoy.stop)
        client = httpx.Client(trust_env=False, timeout=5.0)
        cleanup.append(client.close)
        world = World(mesh, server, envoy, node, client, {"A": backend}, changes=changes)
        cleanup.append(lambda: [b.close() for n, b in world.backends.items() if n != "A"])
        wait_for(envoy.ready, timeout=30)
        assert server.wait_acked(1, [node.id], timeout=15), server.status()
        return world

    yield make
    for fn in reversed(cleanup):
        with contextlib.suppress(Exception):  # teardown must run every step
            fn()


def _status(world: World):
    [st] = [s for s in world.server.status() if s.node.id == world.node.id]
    return st


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("api_type", APIS)
def test_envoy_goes_live_and_proxies(world_factory: Callable[[str], World], api_type: str):
    world = world_factory(api_type)

    r = world.get()
    assert r.status_code == 200 and r.text == "A"
    assert r.headers["x-route-tag"] == "v1"

    st = _status(world)
    assert st.connected and st.mesh_version == 1
    assert st.api == ("sotw" if api_type == "GRPC" else "delta")
    assert st.node.workload == world.node.workload and st.node.labels == {"app": "web"}
    assert set(st.types) == {CLUSTER, ENDPOINT, LISTENER, ROUTE}
    for t in st.types.values():
        assert t.acked_version == t.sent_version and t.nack is None, t
        assert t.resources == 1 and t.last_ack_at is not None and t.nonce

    assert len(world.changes) >= 5  # connect + at least one ACK per type

    dump = world.envoy.config_dump("dynamic_active_clusters")
    names = {c["cluster"]["name"] for c in dump["configs"]}
    assert names == {"A"}


@pytest.mark.parametrize("api_type", APIS)
def test_route_only_update_sends_only_the_route(
    world_factory: Callable[[str], World], api_type: str,
):
    world = world_factory(api_type)
    before = len(world.server.sent_log(world.node.id))

    world.push(tag="v2")

    sent = world.server.sent_log(world.node.id)[before:]
    assert [(r.type_url, r.resources, r.removed) for r in sent] == [(ROUTE, (ROUTE_NAME,), ())]
    assert sent[0].acked_at is not None
    wait_for(lambda: world.get().headers.get("x-route-tag") == "v2", timeout=5)
    st = _status(world)
    assert st.mesh_version == world.version
    assert st.types[ROUTE].acked_version == sent[0].version


@pytest.mark.parametrize("api_type", APIS)
def test_nack_is_recorded_and_envoy_keeps_serving(
    world_factory: Callable[[str], World], api_type: str,
):
    world = world_factory(api_type)
    good_route_version = _status(world).types[ROUTE].acked_version

    world.mesh.set(duplicate_domains=True, tag="bad")
    world.version += 1
    world.server.publish(XdsSnapshot(world.version, world.mesh.resources_for))
    wait_for(lambda: _status(world).types[ROUTE].nack, timeout=10)

    st = _status(world)
    assert "dup.example" in st.types[ROUTE].nack, st.types[ROUTE].nack
    assert st.types[ROUTE].acked_version == good_route_version
    assert st.mesh_version == world.version - 1
    assert not world.server.wait_acked(world.version, [world.node.id], timeout=0.5)
    r = world.get()
    assert r.status_code == 200 and r.headers["x-route-tag"] == "v1"
    # The rejected config is not sent again in a loop.
    time.sleep(0.5)
    bad = [r for r in world.server.sent_log(world.node.id) if r.nacked]
    assert len(bad) == 1 and bad[0].type_url == ROUTE

    # The next real change is sent, ACKed, and clears the NACK.
    world.push(duplicate_domains=False, tag="v3")
    st = _status(world)
    assert st.types[ROUTE].nack is None and st.mesh_version == world.version
    wait_for(lambda: world.get().headers.get("x-route-tag") == "v3", timeout=5)


@pytest.mark.parametrize("api_type", APIS)
def test_switch_to_new_cluster_loses_no_request(
    world_factory: Callable[[str], World], api_type: str,
):
    world = world_factory(api_type)
    b = world.add_backend("B")
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(trust_env=False, timeout=5.0) as c:
            while not stop.is_set():
                try:
                    r = c.get(f"http://127.0.0.1:{world.mesh.listener_port}/")
                    results.append((r.status_code, r.text))
                except httpx.HTTPError as e:
                    results.append((0, repr(e)))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(results) > 20, timeout=10)
        before = len(world.server.sent_log(world.node.id))
        # One update: add cluster B and its endpoints, route to B, drop cluster A.
        world.push(backends={"B": b.port}, weights={"B": 1}, tag="v2")
        wait_for(lambda: any(body == "B" for _, body in results[-5:]), timeout=10)
        n = len(results)
        wait_for(lambda: len(results) > n + 20, timeout=10)
    finally:
        stop.set()
        t.join(timeout=10)

    failures = [r for r in results if r[0] != 200]
    assert not failures, failures[:5]
    assert results[-1] == (200, "B")

    sent = world.server.sent_log(world.node.id)[before:]
    route_rec = next(r for r in sent if r.type_url == ROUTE)
    first_cds = next(r for r in sent if r.type_url == CLUSTER)
    if api_type == "GRPC":
        assert set(first_cds.resources) == {"A", "B"}  # make: both clusters
        removal = next(r for r in sent if r.type_url == CLUSTER and "A" not in r.resources)
    else:
        assert first_cds.resources == ("B",) and first_cds.removed == ()
        removal = next(r for r in sent if r.type_url == CLUSTER and "A" in r.removed)
    eds_b = next(r for r in sent if r.type_url == ENDPOINT and "B" in r.resources)
    assert first_cds.sent_at <= eds_b.sent_at < route_rec.sent_at
    assert eds_b.acked_at is not None and eds_b.acked_at <= route_rec.sent_at
    assert route_rec.acked_at is not None and route_rec.acked_at <= removal.sent_at
    wait_for(lambda: {c["cluster"]["name"] for c in world.envoy.config_dump(
        "dynamic_active_clusters").get("configs", [])} == {"B"}, timeout=10)


def test_sotw_partial_eds_keeps_unmentioned_endpoints(world_factory: Callable[[str], World]):
    """SotW EDS responses may name only changed resources; Envoy keeps the others."""
    world = world_factory("GRPC")
    b, c = world.add_backend("B"), world.add_backend("C")
    a_port = world.mesh.backends["A"]
    world.push(backends={"A": a_port, "B": b.port}, weights={"A": 1, "B": 1})
    wait_for(lambda: world.envoy.cluster_hosts().get("B") == {f"127.0.0.1:{b.port}"})
    before = len(world.server.sent_log(world.node.id))

    world.push(backends={"A": a_port, "B": c.port})  # only B's endpoints change

    sent = world.server.sent_log(world.node.id)[before:]
    assert [(r.type_url, r.resources) for r in sent] == [(ENDPOINT, ("B",))]
    wait_for(lambda: world.envoy.cluster_hosts().get("B") == {f"127.0.0.1:{c.port}"})
    assert world.envoy.cluster_hosts()["A"] == {f"127.0.0.1:{a_port}"}
    bodies = {world.get().text for _ in range(30)}
    assert bodies == {"A", "C"}


@pytest.mark.parametrize("api_type", APIS)
def test_envoy_resyncs_after_server_restart(
    world_factory: Callable[[str], World], api_type: str,
):
    world = world_factory(api_type)
    port = world.server.port
    world.server.stop(0.2)
    wait_for(lambda: not world.server.status()[0].connected
             if world.server.status() else True, timeout=5)

    # The proxy keeps serving its last config while the control plane is down.
    r = world.get()
    assert r.status_code == 200 and r.text == "A"

    server = XdsServer(authenticate=authenticator(), port=port)
    deadline = time.monotonic() + 10
    while True:  # the old socket may take a moment to be released
        try:
            server.start()
            break
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        server.publish(XdsSnapshot(world.version, world.mesh.resources_for))
        assert server.wait_acked(world.version, [world.node.id], timeout=45), server.status()
        st = next(s for s in server.status() if s.node.id == world.node.id)
        assert st.connected and set(st.types) == {CLUSTER, ENDPOINT, LISTENER, ROUTE}
        assert all(t.nack is None and t.acked_version for t in st.types.values())
        sent = server.sent_log(world.node.id)
        if api_type == "DELTA_GRPC":
            # initial_resource_versions: nothing it already has is sent again.
            assert all(not r.resources for r in sent), sent
        # And a change after the restart reaches it.
        world.server = server
        world.push(tag="after-restart")
        wait_for(lambda: world.get().headers.get("x-route-tag") == "after-restart", timeout=5)
    finally:
        server.stop(0.2)


@pytest.mark.parametrize("api_type", APIS)
def test_an_inconsistent_config_is_refused_and_the_proxy_keeps_its_last_good_one(
    world_factory: Callable[[str], World], api_type: str,
):
    """go-control-plane's snapshot check, as a gate: a config naming endpoints it does not
    hold is never sent; the proxy keeps serving the last good config and its status says
    what was wrong; the next consistent version goes out and clears the refusal."""
    world = world_factory(api_type)
    sent_before = len(world.server.sent_log(world.node.id))
    world.version += 1

    def broken(node: ProxyNode) -> Resources:
        return {**world.mesh.resources_for(node), ENDPOINT: {}}  # clusters name EDS "A"

    world.server.publish(XdsSnapshot(world.version, broken))
    wait_for(lambda: _status(world).refusal is not None, timeout=10)
    st = _status(world)
    assert st.refusal is not None and st.refusal.version == world.version
    assert st.refusal.problems == ("ClusterLoadAssignment missing: A",)
    assert st.mesh_version == world.version - 1
    assert len(world.server.sent_log(world.node.id)) == sent_before  # nothing sent
    r = world.get()
    assert r.status_code == 200 and r.text == "A"

    world.push(tag="v2")  # consistent again
    st = _status(world)
    assert st.refusal is None and st.mesh_version == world.version
    wait_for(lambda: world.get().headers.get("x-route-tag") == "v2", timeout=5)

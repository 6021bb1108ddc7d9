"""Scoped routes (SRDS) against real Envoy, in both SotW (GRPC) and Delta (DELTA_GRPC).

Given the real xDS build (``build_resources``) for a small mesh whose endpoints are Python
backends, and a real Envoy sidecar whose outbound HTTP proxy scopes its routes by request
host, when an app sends absolute-form proxy requests (``GET http://alpha:8080/``), each is
routed by its host's scope; a host with no scope gets 404; a change to one service's
routes sends that one route config and nothing else; services come and go; a rejected
route config or scope shows up as a NACK of its own type.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from test_xds_server import Backend, free_ports
from tests.conftest import wait_for
from tests.dns_responder import DnsResponder
from tests.integration.ads_envoy import AdsEnvoy
from tests.integration.gateway_envoy import WorkloadMaterial
from tests.proxy_tokens import authenticator

from meshpilot.api.mesh_config import DEFAULT_MESH_CONFIG, DnsResolver, MeshConfig
from meshpilot.api.networking import DestinationRule, VirtualService
from meshpilot.mesh.model import (
    Endpoint,
    MeshService,
    MeshSnapshot,
    Named,
    ProxyNode,
    ServicePort,
)
from meshpilot.xds import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    Resources,
    XdsServer,
    XdsSnapshot,
)
from meshpilot.xds.translate import TYPE_SECRET, build_resources
from meshpilot.xds.types import EXTENSION_CONFIG, SECRET

APIS = ["GRPC", "DELTA_GRPC"]
ALPHA = "alpha.default.svc.cluster.local"
BETA = "beta.default.svc.cluster.local"
GAMMA = "gamma.default.svc.cluster.local"
REMOTE = "remote.other.svc.cluster.local"
EXTERNAL = "external.test"


def _named(model: type, text: str) -> Named[Any]:
    obj = model.model_validate(yaml.safe_load(text))
    return Named(obj.metadata.namespace, obj.metadata.name, obj)


def alpha_rules(v1: int, v2: int) -> tuple[Named[Any], Named[Any]]:
    rule = _named(DestinationRule, """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: alpha}
spec:
  host: alpha
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
""")
    route = _named(VirtualService, f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: alpha}}
spec:
  hosts: [alpha]
  http:
  - route:
    - {{destination: {{host: alpha, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: alpha, subset: v2}}, weight: {v2}}}
""")
    return rule, route


def _service(host: str) -> MeshService:
    name, ns = host.split(".")[:2]
    return MeshService(host, name, ns, (ServicePort(8080, "http"),),
                       short_names=(name, f"{name}.{ns}", f"{name}.{ns}.svc"))


@dataclass
class Mesh:
    """What the test mutates: the snapshot, plus an optional post-processing of resources."""

    backends: dict[str, Backend]
    weights: tuple[int, int] = (100, 0)
    gamma: bool = False
    tamper: Callable[[Resources], None] | None = None
    mesh_config: MeshConfig = DEFAULT_MESH_CONFIG
    extra: tuple[MeshService, ...] = ()  # more services, each on backend "X"
    sidecars: tuple[Named[Any], ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)
    credential: WorkloadMaterial = field(default_factory=WorkloadMaterial.issued)

    def snapshot(self) -> MeshSnapshot:
        def ep(host: str, backend: str, version: str, ns: str = "default") -> Endpoint:
            return Endpoint(host, 8080, "127.0.0.1", self.backends[backend].port,
                            {"app": host.split(".")[0], "version": version}, backend, ns)

        services = {h: _service(h) for h in (ALPHA, BETA, REMOTE)}
        endpoints = {ALPHA: (ep(ALPHA, "A1", "v1"), ep(ALPHA, "A2", "v2")),
                     BETA: (ep(BETA, "B", "v1"),), REMOTE: (ep(REMOTE, "R", "v1", "other"),)}
        if self.gamma:
            services[GAMMA] = _service(GAMMA)
            endpoints[GAMMA] = (ep(GAMMA, "G", "v1"),)
        for service in self.extra:
            services[service.host] = service
            endpoints[service.host] = (Endpoint(service.host, 8080, "127.0.0.1",
                                                self.backends["X"].port, {}, "", ""),)
        rule, route = alpha_rules(*self.weights)
        return MeshSnapshot(version=1, services=services, endpoints=endpoints,
                            virtual_services=(route,), destination_rules=(rule,),
                            sidecars=self.sidecars, mesh_config=self.mesh_config)

    def resources_for(self, node: ProxyNode) -> Resources:
        with self.lock:
            out = build_resources(self.snapshot(), node)
            out.setdefault(TYPE_SECRET, {}).update(self.credential.secrets())
            if self.tamper is not None:
                self.tamper(out)
            return out

    def set(self, **changes: Any) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(self, k, v)


@dataclass
class World:
    mesh: Mesh
    server: XdsServer
    node: ProxyNode
    client: httpx.Client
    proc: subprocess.Popen[bytes]
    log: Path
    dns: DnsResponder
    version: int = 1

    def get(self, url: str) -> httpx.Response:
        """An absolute-form request through the sidecar, as an app with HTTP_PROXY sends."""
        return self.client.get(url)

    def body(self, url: str) -> str:
        r = self.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text)
        return r.text

    def push(self, timeout: float = 15.0, **changes: Any) -> list[Any]:
        """Apply a change as version+1, wait for the proxy's ACK; the responses it took."""
        before = len(self.server.sent_log(self.node.id))
        self.mesh.set(**changes)
        self.version += 1
        self.server.publish(XdsSnapshot(self.version, self.mesh.resources_for))
        assert self.server.wait_acked(self.version, [self.node.id], timeout=timeout), (
            self.server.status(), self.log.read_text(errors="replace")[-3000:])
        return self.server.sent_log(self.node.id)[before:]

    def status(self):
        [st] = [s for s in self.server.status() if s.node.id == self.node.id]
        return st


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[Callable[[str], World]]:
    cleanup: list[Callable[[], None]] = []

    def make(api_type: str) -> World:
        backends = {n: Backend(n) for n in ("A1", "A2", "B", "G", "R", "X")}
        cleanup.extend(b.close for b in backends.values())
        # hosts outside the registry are looked up here, never by the system's resolver
        dns = DnsResponder({EXTERNAL: "127.0.0.1"}).__enter__()
        cleanup.append(dns.close)
        mesh = Mesh(backends, mesh_config=MeshConfig(
            dns_resolvers=(DnsResolver("127.0.0.1", dns.port),)))
        server = XdsServer(authenticate=authenticator())
        port = server.start()
        cleanup.append(lambda: server.stop(0.2))
        server.publish(XdsSnapshot(1, mesh.resources_for))
        (outbound,) = free_ports(1)
        node = ProxyNode(id=f"sidecar~127.0.0.1~web-{api_type.lower()}.default",
                         kind="sidecar", namespace="default", ip="127.0.0.1",
                         workload=f"web-{api_type.lower()}", labels={"app": "web"},
                         outbound_port=outbound)
        # no admin: nothing here reads it
        envoy = AdsEnvoy(node, port, tmp_path, api_type,
                         api_type=api_type)  # type: ignore[arg-type]
        cleanup.append(envoy.stop)
        client = httpx.Client(proxy=f"http://127.0.0.1:{outbound}", trust_env=False,
                              timeout=5.0)
        cleanup.append(client.close)
        assert server.wait_acked(1, [node.id], timeout=30), (
            server.status(), envoy.log_tail())
        return World(mesh, server, node, client, envoy.proc, envoy.log_path, dns)

    yield make
    for fn in reversed(cleanup):
        with contextlib.suppress(Exception):  # teardown must run every step
            fn()


@pytest.mark.parametrize("api_type", APIS)
def test_absolute_form_requests_are_scoped_by_host(
    world_factory: Callable[[str], World], api_type: str,
):
    world = world_factory(api_type)
    for host in ("alpha", "alpha.default", "alpha.default.svc", ALPHA):
        assert world.body(f"http://{host}:8080/") == "A1", host
    assert world.body("http://alpha/") == "A1"  # one port: the bare name reaches it
    assert world.body("http://beta:8080/") == "B"
    # another namespace: only the namespace-qualified spellings have a scope
    assert world.body("http://remote.other:8080/") == "R"
    assert world.get("http://remote:8080/").status_code == 404
    # a host with no scope, and a scope's host at a port it does not serve, are passed
    # through (ALLOW_ANY): their names do not resolve, so 404
    assert world.get("http://nowhere:8080/").status_code == 404
    assert "nowhere" in world.dns.asked
    assert world.get("http://alpha:9999/").status_code == 404
    assert "alpha" in world.dns.asked  # passed through: looked up, not refused unrouted

    st = world.status()
    assert set(st.types) == {SECRET, CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER,
                             SCOPED_ROUTE, ROUTE}
    for t in st.types.values():
        assert t.acked_version == t.sent_version and t.nack is None, t
    # alpha, beta: 4; remote: 3; the outbound traffic policy's 2
    assert st.types[SCOPED_ROUTE].resources == 4 + 4 + 3 + 2
    assert st.types[ROUTE].resources == 3 + 2  # one route config per service, the policy's


@pytest.mark.parametrize("api_type", APIS)
def test_one_service_route_change_sends_one_route_config(
    world_factory: Callable[[str], World], api_type: str,
):
    world = world_factory(api_type)
    sent = world.push(weights=(0, 100))
    assert [(r.type_url, r.resources, r.removed) for r in sent] == [
        (ROUTE, (f"outbound|{ALPHA}",), ())]
    wait_for(lambda: world.body("http://alpha:8080/") == "A2", timeout=5)
    assert world.body("http://beta:8080/") == "B"


@pytest.mark.parametrize("api_type", APIS)
def test_services_come_and_go(world_factory: Callable[[str], World], api_type: str):
    world = world_factory(api_type)
    assert world.get("http://gamma:8080/").status_code == 404

    sent = world.push(gamma=True)
    scopes = [r for r in sent if r.type_url == SCOPED_ROUTE]
    routes = [r for r in sent if r.type_url == ROUTE]
    if api_type == "DELTA_GRPC":
        assert [r.resources for r in scopes] == [
            ("gamma", "gamma.default", "gamma.default.svc", GAMMA)]
    else:  # SotW scopes are full state: the whole set
        assert len(scopes) == 1 and len(scopes[0].resources) == 15 + 2
    # the route config is sent once Envoy asks for it, after the scopes naming it
    assert [r.resources for r in routes] == [(f"outbound|{GAMMA}",)]
    assert scopes[0].sent_at < routes[0].sent_at
    assert world.body("http://gamma:8080/") == "G"
    assert world.body("http://gamma.default.svc.cluster.local:8080/") == "G"

    sent = world.push(gamma=False)
    scopes = [r for r in sent if r.type_url == SCOPED_ROUTE]
    if api_type == "DELTA_GRPC":
        assert [r.removed for r in scopes] == [
            ("gamma", "gamma.default", "gamma.default.svc", GAMMA)]
    wait_for(lambda: world.get("http://gamma:8080/").status_code == 404, timeout=5)
    assert world.body("http://alpha:8080/") == "A1"
    st = world.status()
    assert all(t.nack is None for t in st.types.values()), st
    assert st.types[SCOPED_ROUTE].resources == 13 and st.types[ROUTE].resources == 5


def _bad_route(res: Resources) -> None:
    """Two vhosts of beta's route config claim one domain: Envoy rejects it."""
    config = res[ROUTE][f"outbound|{BETA}"]
    dup = route_pb2.RouteConfiguration()
    dup.CopyFrom(config)
    config.virtual_hosts.add().CopyFrom(dup.virtual_hosts[0])
    config.virtual_hosts[-1].name = "dup"


def _bad_scope(res: Resources) -> None:
    """A second scope with alpha's key: Envoy rejects the scopes."""
    clash = scoped_route_pb2.ScopedRouteConfiguration()
    clash.CopyFrom(res[SCOPED_ROUTE]["alpha"])
    clash.name = "alpha-clash"
    clash.route_configuration_name = f"outbound|{BETA}"
    res[SCOPED_ROUTE]["alpha-clash"] = clash


@pytest.mark.parametrize("api_type", APIS)
def test_nacks_show_per_type_and_envoy_keeps_serving(
    world_factory: Callable[[str], World], api_type: str,
):
    world = world_factory(api_type)
    for tamper, bad_type, good_type in ((_bad_route, ROUTE, SCOPED_ROUTE),
                                        (_bad_scope, SCOPED_ROUTE, ROUTE)):
        good = world.status().types[bad_type].acked_version
        world.mesh.set(tamper=tamper, weights=(0, 100))
        world.version += 1
        world.server.publish(XdsSnapshot(world.version, world.mesh.resources_for))
        wait_for(lambda t=bad_type: world.status().types[t].nack, timeout=10)
        st = world.status()
        assert st.types[bad_type].acked_version == good
        log = world.server.sent_log(world.node.id)
        assert len([r for r in log if r.nacked and r.type_url == bad_type]) == 1, log
        assert st.types[good_type].nack is None
        assert st.mesh_version < world.version
        # the proxy keeps its last good config for the rejected type
        assert world.body("http://beta:8080/") == "B"
        assert world.body("http://alpha:8080/") in {"A1", "A2"}

        world.push(tamper=None, weights=(100, 0))  # the next good change clears it
        st = world.status()
        assert st.types[bad_type].nack is None and st.mesh_version == world.version
        wait_for(lambda: world.body("http://alpha:8080/") == "A1", timeout=5)


"""TCP and TLS at a sidecar for ServiceEntry hosts, against a real Envoy over ADS with
real connections on loopback.

- Istio's "Egress Control / Accessing External Services" with a TCP entry (a MongoDB-like
  port, STATIC endpoint): the app connects to its sidecar's listener for the entry and
  reaches the external server.
- Istio's "Egress using Wildcard Hosts" (``*.wikipedia.org``, resolution NONE, HTTPS on
  443): the app speaks TLS to its sidecar's listener for the wildcard entry with the SNI
  of a covered name; the sidecar resolves that name (on a loopback DNS responder, so no
  query leaves the machine) and passes the still-encrypted connection through, and the
  app checks the real server's certificate. An SNI the pattern does not cover is closed.
- The same task's HTTP case (a wildcard entry resolved NONE on an HTTP port), with the
  mesh's ``outboundTrafficPolicy`` REGISTRY_ONLY: a covered name is the mesh's and is
  passed through to the host the request names; a name nothing covers gets 502.
- Istio's L4MatchAttributes ``sourceSubnet`` / ``destinationSubnets`` on a ``tcp`` route
  of the entry: held against the pod's own address (source and destination of every
  connection at its listeners), so moving the subnet onto that address moves the route.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from test_xds_server import Backend, free_ports
from tests.dns_responder import DnsResponder
from tests.integration.ads_envoy import AdsEnvoy
from tests.integration.gateway_envoy import WorkloadMaterial
from tests.line_server import DEADLINE, LineServer
from tests.proxy_tokens import authenticator
from tests.tls_pairs import certificate, key_pem, pem

from meshpilot.api.mesh_config import DnsResolver, MeshConfig
from meshpilot.api.networking import VirtualService
from meshpilot.mesh.model import (
    Endpoint,
    MeshService,
    MeshSnapshot,
    Named,
    ProxyNode,
    ServicePort,
    TcpOutbound,
)
from meshpilot.xds import Resources, XdsServer, XdsSnapshot
from meshpilot.xds.translate import TYPE_SECRET, build_resources

DB = "db.example.test"  # a TCP entry, STATIC endpoint (as the task's MongoDB)
OTHER = "other.example.test"  # a second TCP entry, for the subnet-matched route
WILD = "*.wiki.test"  # a wildcard entry resolved NONE, TLS port
COVERED = "en.wiki.test"
WEB = "*.web.test"  # a wildcard entry resolved NONE, HTTP port
WEB_COVERED = "api.web.test"


def entry(host: str, port: ServicePort, resolution: str = "STATIC") -> MeshService:
    return MeshService(host, host, "default", (port,), origin="ServiceEntry",
                       location="MESH_EXTERNAL", resolution=resolution)  # type: ignore[arg-type]


def subnet_route(match: str) -> Named[VirtualService]:
    obj = VirtualService.model_validate(yaml.safe_load(f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: default}}
spec:
  hosts: [{DB}]
  tcp:
  - match: [{match}]
    route: [{{destination: {{host: {OTHER}}}}}]
  - route: [{{destination: {{host: {DB}}}}}]
"""))
    return Named("default", "db", obj)


@dataclass
class World:
    """A sidecar (real Envoy) for one pod at 127.0.0.1 whose node lists the entries'
    ports, fed by a real xDS server from the real translation."""

    db: LineServer
    other: LineServer
    secure: LineServer
    web: Backend
    dns: DnsResponder
    server: XdsServer
    node: ProxyNode
    log: Path
    routes: tuple[Named[VirtualService], ...] = ()
    version: int = 1
    material: WorkloadMaterial = field(default_factory=WorkloadMaterial.issued)

    def snapshot(self) -> MeshSnapshot:
        services = {DB: entry(DB, ServicePort(self.db.port, "mongo", "TCP")),
                    OTHER: entry(OTHER, ServicePort(self.other.port, "tcp", "TCP")),
                    WILD: entry(WILD, ServicePort(self.secure.port, "https", "HTTPS"),
                                resolution="NONE"),
                    WEB: entry(WEB, ServicePort(self.web.port, "http", "HTTP"),
                               resolution="NONE")}
        endpoints = {host: (Endpoint(host, port, "127.0.0.1", port),)
                     for host, port in ((DB, self.db.port), (OTHER, self.other.port))}
        return MeshSnapshot(version=self.version, services=services, endpoints=endpoints,
                            virtual_services=self.routes, mesh_config=MeshConfig(
                                outbound_mode="REGISTRY_ONLY",
                                dns_resolvers=(DnsResolver("127.0.0.1", self.dns.port),)))

    def resources_for(self, node: ProxyNode) -> Resources:
        out = build_resources(self.snapshot(), node)
        out.setdefault(TYPE_SECRET, {}).update(self.material.secrets())
        return out

    def push(self, *routes: Named[VirtualService]) -> None:
        self.routes = routes
        self.version += 1
        self.server.publish(XdsSnapshot(self.version, self.resources_for))
        assert self.server.wait_acked(self.version, [self.node.id], timeout=15), (
            self.server.status(), self.log.read_text(errors="replace")[-3000:])

    def local(self, host: str) -> int:
        return next(t.local_port for t in self.node.tcp_outbound if t.host == host)

    def line(self, host: str) -> str:
        """One connection to the sidecar's listener for ``host``: the word answering."""
        with socket.create_connection(("127.0.0.1", self.local(host)), DEADLINE) as conn:
            conn.sendall(b"hello\n")
            return conn.makefile("rb").readline().decode().split(" ")[0]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    cleanup: list[Callable[[], Any]] = []
    try:
        yield _started(tmp_path, cleanup)
    finally:
        for fn in reversed(cleanup):
            with contextlib.suppress(Exception):  # teardown must run every step
                fn()


def _started(tmp_path: Path, cleanup: list[Callable[[], Any]]) -> World:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ca.pem").write_bytes(pem(certificate("test root", ca_key, ca=True)))
    key = ec.generate_private_key(ec.SECP256R1())
    cert, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(pem(certificate(COVERED, key, ("test root", ca_key))))
    key_file.write_bytes(key_pem(key))
    key_file.chmod(0o600)
    servers = [LineServer("db"), LineServer("other"), LineServer("wiki", (cert, key_file))]
    cleanup.extend(s.close for s in servers)
    web = Backend("web")
    cleanup.append(web.close)
    dns = DnsResponder({COVERED: "127.0.0.1", WEB_COVERED: "127.0.0.1",
                        "api.elsewhere.test": "127.0.0.1"}).__enter__()
    cleanup.append(dns.close)
    server = XdsServer(authenticate=authenticator())
    port = server.start()
    cleanup.append(lambda: server.stop(0.2))
    outbound, *local = free_ports(4)
    db, other, secure = servers
    node = ProxyNode(
        id="sidecar~127.0.0.1~app.default", kind="sidecar", namespace="default",
        ip="127.0.0.1", workload="app", labels={"app": "app"}, outbound_port=outbound,
        tcp_outbound=(TcpOutbound(DB, db.port, local[0]),
                      TcpOutbound(OTHER, other.port, local[1]),
                      TcpOutbound(WILD, secure.port, local[2])))
    world = World(db, other, secure, web, dns, server, node, tmp_path / "envoy.log")
    server.publish(XdsSnapshot(1, world.resources_for))
    envoy = AdsEnvoy(node, port, tmp_path, "envoy")
    cleanup.append(envoy.stop)
    assert server.wait_acked(1, [node.id], timeout=30), (
        server.status(), world.log.read_text(errors="replace")[-3000:])
    return world


def tls_word(world: World, sni: str) -> tuple[str, str]:
    """One TLS connection with ``sni`` through the wildcard entry's listener, the
    server's certificate checked against the test root: (word, certificate CN)."""
    context = ssl.create_default_context(cafile=str(world.log.with_name("ca.pem")))
    context.check_hostname = False  # the test certificate names its host in the CN only
    with socket.create_connection(("127.0.0.1", world.local(WILD)), DEADLINE) as raw, \
            context.wrap_socket(raw, server_hostname=sni) as conn:
        subject = dict(x[0] for x in conn.getpeercert()["subject"])
        conn.sendall(b"hello\n")
        return conn.makefile("rb").readline().decode().split(" ")[0], subject["commonName"]


def test_a_tcp_service_entry_is_reached_through_the_sidecar_listener(world: World) -> None:
    assert world.line(DB) == "db"
    assert world.line(OTHER) == "other"


def test_a_wildcard_entry_resolved_none_passes_tls_through_to_the_sni_name(
        world: World) -> None:
    assert tls_word(world, COVERED) == ("wiki", COVERED)
    assert COVERED in world.dns.asked  # resolved by the mesh config's resolver
    # a name the pattern does not cover finds no chain: the connection is closed
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls_word(world, "en.elsewhere.test")
    assert "en.elsewhere.test" not in world.dns.asked


def test_subnet_matches_are_held_against_the_pod_s_own_address(world: World) -> None:
    # Given a route on a source block the pod is not in, and one on a destination block
    # that does not hold the pod's address: neither applies, the entry itself answers
    world.push(subnet_route("{sourceSubnet: 10.0.0.0/8}"))
    assert world.line(DB) == "db"
    world.push(subnet_route("{destinationSubnets: [192.0.2.0/24]}"))
    assert world.line(DB) == "db"
    # When the blocks hold the pod's address (127.0.0.1: its source and the address its
    # app connected to), then the first route applies
    world.push(subnet_route("{sourceSubnet: 127.0.0.0/8}"))
    assert world.line(DB) == "other"
    world.push(subnet_route("{destinationSubnets: [10.0.0.0/8, 127.0.0.1]}"))
    assert world.line(DB) == "other"


def test_a_wildcard_entry_resolved_none_passes_http_through_to_the_request_s_host(
        world: World) -> None:
    port = world.web.port
    with httpx.Client(proxy=f"http://127.0.0.1:{world.node.outbound_port}",
                      trust_env=False, timeout=DEADLINE) as client:
        r = client.get(f"http://{WEB_COVERED}:{port}/")
        assert r.status_code == 200 and r.text == "web", r.text
        assert WEB_COVERED in world.dns.asked
        # REGISTRY_ONLY: a name no entry covers is refused, never looked up
        refused = client.get(f"http://api.elsewhere.test:{port}/")
        assert refused.status_code == 502 and "BlackHoleCluster" in refused.text
        assert "api.elsewhere.test" not in world.dns.asked

"""ServiceEntry hosts resolved by DNS, against real Envoy, with the mesh config's
``dnsResolvers`` pointing at the DNS responder on loopback (no query leaves the machine;
the ``.test`` names exist nowhere else, so reaching them at all proves where they were
asked).

Follows Istio's ServiceEntry ``resolution`` (istio.io reference, "ServiceEntry";
istiod's cluster builder maps it): ``DNS`` is a STRICT_DNS cluster, every address the name
resolves to an endpoint balanced over; ``DNS_ROUND_ROBIN`` is LOGICAL_DNS, connections go
to the first address only. Istio gives its DNS clusters a c-ares resolver config; here
that is the mesh config's resolvers, the same ones the passthrough asks.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from test_xds_scoped_routes import World, world_factory  # noqa: F401 - fixture
from tests.conftest import wait_for

from meshpilot.mesh.model import MeshService, MeshSnapshot, ServicePort

ADDRESSES = ("127.0.0.2", "127.0.0.3")


class _Named(BaseHTTPRequestHandler):
    """Answers 200 with the address it listens on, so a test sees which one it reached."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.server.server_address[0].encode()  # type: ignore[index]
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def twins() -> Iterator[int]:
    """Two HTTP servers, one per address of :data:`ADDRESSES`, on the same port (a DNS
    answer gives addresses, the entry the port); the port."""
    first = ThreadingHTTPServer((ADDRESSES[0], 0), _Named)
    port = int(first.server_address[1])
    servers = [first, ThreadingHTTPServer((ADDRESSES[1], port), _Named)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port
    for server in servers:
        server.shutdown()
        server.server_close()


def with_dns_entries(world: World, port: int, resolutions: dict[str, str]) -> None:
    """Register each host of ``resolutions`` as a ServiceEntry would: one HTTP port
    ``port``, the resolution given, no endpoints (the host is the name resolved)."""
    plain: Callable[[], MeshSnapshot] = type(world.mesh).snapshot.__get__(world.mesh)

    def snapshot() -> MeshSnapshot:
        built = plain()
        return dataclasses.replace(built, services={**built.services, **{
            host: MeshService(host, host, "default", (ServicePort(port, "http", "HTTP"),),
                              origin="ServiceEntry", location="MESH_EXTERNAL",
                              resolution=resolution)
            for host, resolution in resolutions.items()}})

    world.mesh.snapshot = snapshot  # type: ignore[method-assign]


def reached(world: World, url: str, times: int) -> list[str]:
    """The bodies of ``times`` requests to ``url`` (each on a connection of its own, so
    the cluster picks a host for every one)."""
    out = []
    for _ in range(times):
        r = world.client.get(url, headers={"connection": "close"})
        assert r.status_code == 200, (url, r.status_code, r.text)
        out.append(r.text)
    return out


def test_dns_resolution_balances_over_every_address_the_mesh_resolver_gives(
    world_factory: Callable[[str], World], twins: int,  # noqa: F811 - fixture
) -> None:
    world = world_factory("DELTA_GRPC")
    world.dns.names["dns.test"] = list(ADDRESSES)
    with_dns_entries(world, twins, {"dns.test": "DNS", "missing.test": "DNS"})
    world.push()
    url = f"http://dns.test:{twins}/"
    wait_for(lambda: world.get(url).status_code == 200, timeout=10)
    # STRICT_DNS: both addresses are endpoints, so both servers answer
    seen = set(reached(world, url, 24))
    assert seen == set(ADDRESSES), seen
    assert "dns.test" in world.dns.asked
    # a name the mesh's resolver does not know is not looked up anywhere else: no host
    # to send to (503), though the host's own resolver would not know it either
    assert world.get(f"http://missing.test:{twins}/").status_code == 503
    assert "missing.test" in world.dns.asked


def test_dns_round_robin_connects_to_the_first_address_only(
    world_factory: Callable[[str], World], twins: int,  # noqa: F811 - fixture
) -> None:
    world = world_factory("GRPC")
    world.dns.names["rr.test"] = list(ADDRESSES)
    with_dns_entries(world, twins, {"rr.test": "DNS_ROUND_ROBIN"})
    world.push()
    url = f"http://rr.test:{twins}/"
    wait_for(lambda: world.get(url).status_code == 200, timeout=10)
    # LOGICAL_DNS: one logical host, the first address of the answer, for every connection
    seen = set(reached(world, url, 24))
    assert len(seen) == 1 and seen <= set(ADDRESSES), seen
    assert "rr.test" in world.dns.asked

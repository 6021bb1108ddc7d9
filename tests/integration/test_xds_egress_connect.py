"""HTTPS through the sidecar (``CONNECT``) against real Envoy, after istio.io's "Accessing
External Services" (its HTTPS steps): an app whose ``HTTPS_PROXY`` is its sidecar sends
``CONNECT host:port`` and then speaks TLS to the host itself, end to end.

- ALLOW_ANY: a host outside the registry is tunnelled to the address its name resolves to
  (the DNS responder on loopback), through ``PassthroughCluster``, as Istio's sidecar
  passes unknown TLS through to its original destination.
- REGISTRY_ONLY: the tunnel is refused with BlackHoleCluster's 502 and the name is never
  looked up (Istio resets the connection; an HTTP proxy's client is told why instead).
- A ServiceEntry listing the host with an HTTPS (or TLS) port: the tunnel goes to that
  entry's endpoints (a STATIC address here, not what DNS says) in either mode, through
  its own cluster ``outbound|443||host``, as Istio routes a registered TLS host. At a
  port the entry does not list (tunnel or plain HTTP), the mode decides, as Istio's
  sidecar sends a known host's other ports to its passthrough / blackhole routes.

The TLS server is real (a certificate for the host, signed by a root made for the test);
the client verifies it, so a tunnel that reached the wrong place, or mangled the bytes,
fails the handshake.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_xds_scoped_routes import EXTERNAL, World, world_factory  # noqa: F401 - fixture
from test_xds_server import free_ports
from tests.https_backend import HttpsBackend, https_backend

from meshpilot.api.networking import VirtualService
from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot, Named, ServicePort
from meshpilot.xds.translate import egress


@pytest.fixture
def tls_backend(tmp_path: Path) -> Iterator[HttpsBackend]:
    with https_backend(EXTERNAL, tmp_path, also=["api.wild.test"]) as backend:
        yield backend


def https_client(world: World, backend: HttpsBackend) -> httpx.Client:
    """What an app with ``HTTPS_PROXY`` set to its sidecar does: CONNECT, then TLS to the
    host it named, verified against the test's root."""
    proxy = f"http://127.0.0.1:{world.node.outbound_port}"
    return httpx.Client(proxy=proxy, verify=ssl.create_default_context(cafile=backend.root),
                        trust_env=False, timeout=5.0)


def connect(world: World, target: str) -> str:
    """The sidecar's whole answer to a bare ``CONNECT target`` (a refusal closes)."""
    with socket.create_connection(("127.0.0.1", world.node.outbound_port), timeout=5) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        answer = b""
        for _ in range(64):  # bounded: a refusal is a few hundred bytes
            chunk = sock.recv(4096)
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *([0-9]+)", head)
            if not chunk or (length and len(body) >= int(length.group(1))):
                break
        return answer.decode(errors="replace")


def closed(world: World) -> Any:
    return dataclasses.replace(world.mesh.mesh_config, outbound_mode="REGISTRY_ONLY")


def with_https_entries(world: World, ports: dict[str, int], *routes: Named[Any]) -> None:
    """Register each host of ``ports`` as a ServiceEntry would (port 443, HTTPS, STATIC
    endpoint 127.0.0.1 at the port given), and add the VirtualServices ``routes``."""
    plain: Callable[[], MeshSnapshot] = type(world.mesh).snapshot.__get__(world.mesh)

    def entry(host: str) -> MeshService:
        return MeshService(host, host, "default", (ServicePort(443, "https", "HTTPS"),),
                           origin="ServiceEntry", location="MESH_EXTERNAL",
                           resolution="STATIC")

    def snapshot() -> MeshSnapshot:
        built = plain()
        return dataclasses.replace(
            built, services={**built.services, **{h: entry(h) for h in ports}},
            endpoints={**built.endpoints, **{
                h: (Endpoint(h, 443, "127.0.0.1", port, {}, "", ""),)
                for h, port in ports.items()}},
            virtual_services=(*built.virtual_services, *routes))

    world.mesh.snapshot = snapshot  # type: ignore[method-assign]


def test_allow_any_tunnels_an_unknown_host_to_its_resolved_address(
    world_factory: Callable[[str], World], tls_backend: HttpsBackend,  # noqa: F811 - fixture
) -> None:
    world = world_factory("DELTA_GRPC")
    with https_client(world, tls_backend) as client:
        # the unknown host's tunnel reaches the server its name resolves to, TLS end to end
        r = client.get(f"https://{EXTERNAL}:{tls_backend.port}/get")
        assert r.status_code == 200, r.text
        assert r.json()["path"] == "/get"
        # nothing of the proxy's hop is inside the tunnel
        assert "x-meshpilot-authority" not in r.json()["headers"]
        assert EXTERNAL in world.dns.asked
        # a name that does not resolve: the tunnel is refused, the request never sent
        with pytest.raises(httpx.ProxyError, match="404"):
            client.get("https://nowhere.test/")
    assert world.body("http://alpha:8080/") == "A1"  # plain HTTP as before


def test_registry_only_refuses_the_tunnel_without_looking_the_host_up(
    world_factory: Callable[[str], World], tls_backend: HttpsBackend,  # noqa: F811 - fixture
) -> None:
    world = world_factory("GRPC")
    world.push(mesh_config=closed(world))
    with https_client(world, tls_backend) as client, \
            pytest.raises(httpx.ProxyError, match="502"):
        client.get(f"https://{EXTERNAL}:{tls_backend.port}/")
    assert EXTERNAL not in world.dns.asked
    # the refusal a client sees says which cluster refused it and why
    refused = connect(world, f"{EXTERNAL}:443")
    assert refused.startswith("HTTP/1.1 502 ") and egress.BLACKHOLE_CLUSTER in refused


@pytest.mark.parametrize("mode", ["REGISTRY_ONLY", "ALLOW_ANY"])
def test_a_service_entry_with_an_https_port_takes_the_tunnel_to_its_endpoints(
    world_factory: Callable[[str], World], tls_backend: HttpsBackend,  # noqa: F811 - fixture
    mode: str,
) -> None:
    world = world_factory("DELTA_GRPC")
    if mode == "REGISTRY_ONLY":
        world.push(mesh_config=closed(world))
    with_https_entries(world, {EXTERNAL: tls_backend.port})
    world.push()
    with https_client(world, tls_backend) as client:
        # port 443 is the entry's: the tunnel goes to its STATIC endpoint, not to :443 of
        # whatever the name resolves to (nothing listens there)
        r = client.get(f"https://{EXTERNAL}/entry")
        assert r.status_code == 200, r.text
        assert r.json()["path"] == "/entry"
    assert EXTERNAL not in world.dns.asked
    # a port the entry does not list goes by the outbound traffic policy, as Istio's
    # sidecar sends a known host's other ports to its passthrough or blackhole route:
    # passed through to that port of the address the name resolves to, or refused
    http_port = world.mesh.backends["X"].port
    if mode == "ALLOW_ANY":
        with https_client(world, tls_backend) as client:
            r = client.get(f"https://{EXTERNAL}:{tls_backend.port}/unlisted")
        assert r.status_code == 200 and r.json()["path"] == "/unlisted", r.text
        assert EXTERNAL in world.dns.asked
        # plain HTTP takes the same path: the host at a port it does not list
        assert world.body(f"http://{EXTERNAL}:{http_port}/") == "X"
    else:
        refused = connect(world, f"{EXTERNAL}:{tls_backend.port}")
        assert refused.startswith("HTTP/1.1 502 ") and egress.BLACKHOLE_CLUSTER in refused
        r = world.get(f"http://{EXTERNAL}:{http_port}/")
        assert r.status_code == 502 and egress.BLACKHOLE_CLUSTER in r.text, r.text
        assert EXTERNAL not in world.dns.asked


def test_a_tls_route_covering_the_host_takes_the_tunnel_to_its_destination(
    world_factory: Callable[[str], World], tls_backend: HttpsBackend,  # noqa: F811 - fixture
) -> None:
    """A mesh VirtualService's ``tls`` route matching the host by SNI (Istio's "Egress
    Gateways" shape, sending TLS for a host elsewhere): the tunnel to ``external.test``
    goes to the route's destination ``backup.test`` (the TLS server), not to the entry's
    own endpoint (a port where nothing listens)."""
    world = world_factory("DELTA_GRPC")
    world.push(mesh_config=closed(world))
    route = VirtualService.model_validate(yaml.safe_load(f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: external, namespace: default}}
spec:
  hosts: [{EXTERNAL}]
  tls:
  - match: [{{sniHosts: [{EXTERNAL}], port: 443}}]
    route: [{{destination: {{host: backup.test, port: {{number: 443}}}}}}]
"""))
    (unused,) = free_ports(1)
    with_https_entries(world, {EXTERNAL: unused, "backup.test": tls_backend.port},
                       Named("default", "external", route))
    world.push()
    with https_client(world, tls_backend) as client:
        r = client.get(f"https://{EXTERNAL}/routed")
    assert r.status_code == 200 and r.json()["path"] == "/routed", r.text


def test_a_wildcard_entry_with_an_https_port_takes_the_tunnels_of_the_names_it_covers(
    world_factory: Callable[[str], World], tls_backend: HttpsBackend,  # noqa: F811 - fixture
) -> None:
    """Istio's "Egress using Wildcard Hosts" with an address to send to (STATIC): a
    tunnel to a name ``*.wild.test`` covers reaches the entry's endpoint (no DNS name is
    behind it), with REGISTRY_ONLY too; the scope key the sidecar computes for a covered
    name is the pattern, which the matcher knows."""
    world = world_factory("DELTA_GRPC")
    world.push(mesh_config=closed(world))
    with_https_entries(world, {"*.wild.test": tls_backend.port})
    world.push()
    with https_client(world, tls_backend) as client:
        r = client.get("https://api.wild.test/covered")
    assert r.status_code == 200 and r.json()["path"] == "/covered", r.text
    assert "api.wild.test" not in world.dns.asked
    assert connect(world, f"{EXTERNAL}:443").startswith("HTTP/1.1 502 ")  # not covered
    # a covered name at a port the pattern does not list goes by the mode, as for an
    # exact host (Istio's blackhole route for REGISTRY_ONLY)
    assert connect(world, "api.wild.test:8443").startswith("HTTP/1.1 502 ")


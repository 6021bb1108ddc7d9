"""A Gateway TCP server routing by the client's address, after Istio's
L4MatchAttributes (``sourceSubnet``: "IPv4 or IPv6 ip address of source with optional
subnet") and its first-match rule for ``tcp`` routes, on the "TCP Traffic Shifting"
task's tcp-echo sample.

Real connections from two loopback source addresses to the gateway's Envoy: the one
inside the first route's block reaches v2, even though the second route names it more
narrowly (the first route that matches wins; Envoy's most specific chain would pick the
second), and the other falls to the last route, which takes every client, and reaches
v1.
"""

from __future__ import annotations

import socket
from collections import Counter

from tests.builders import by_version, destination_rule
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.e2e.test_gateway_tcp import GATEWAY, SERVICE, codes, echo

ROUTES = """\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: tcp-echo}
    spec:
      hosts: ["*"]
      gateways: [tcp-echo-gateway]
      tcp:
      - match: [{sourceSubnet: 127.0.0.0/30}]
        route: [{destination: {host: tcp-echo, subset: v2}}]
      - match: [{sourceSubnet: 127.0.0.2/32}]
        route: [{destination: {host: tcp-echo, subset: v1}}]
      - match: [{port: 31400}]
        route: [{destination: {host: tcp-echo, subset: v1}}]
    """


def words_from(mesh: Mesh, source: str, connections: int) -> Counter[str]:
    """The word each of ``connections`` new connections from ``source`` answered."""
    port = int(mesh.cp_endpoints()["ingress_ports"]["31400"])
    seen: Counter[str] = Counter()
    for i in range(connections):
        with socket.create_connection(("127.0.0.1", port), timeout=10,
                                      source_address=(source, 0)) as conn:
            conn.sendall(f"hello {i}\n".encode())
            word, _, rest = conn.makefile("rb").readline().decode().partition(" ")
        assert rest == f"hello {i}\n", (word, rest)
        seen[word] += 1
    return seen


def test_the_client_s_address_picks_the_first_tcp_route_that_matches(
        mesh: Mesh, given: Given) -> None:
    given.applied(GATEWAY, echo("v1", "one"), echo("v2", "two"), SERVICE,
                  destination_rule("tcp-echo", subsets=by_version("v1", "v2")))
    applied = mesh.apply(ROUTES)
    assert "MP2015" not in codes(applied) and "MP2013" not in codes(applied)
    given.applied(ROUTES)
    assert words_from(mesh, "127.0.0.2", 5) == Counter({"two": 5})
    assert words_from(mesh, "127.0.0.9", 5) == Counter({"one": 5})

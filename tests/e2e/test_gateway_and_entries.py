"""Ingress Gateway routes, and hosts outside the mesh: ServiceEntry and WorkloadEntry."""

from __future__ import annotations

from collections.abc import Callable

from tests.builders import workload_entry
from tests.dns_responder import DnsResponder
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given, Then, When

GATEWAY = """\
    apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: my-gateway}
    spec:
      selector: {istio: ingressgateway}
      servers:
      - port: {number: 80, name: http, protocol: HTTP}
        hosts: [myapp.example.com]
    """

GATEWAY_ROUTE = """\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: myapp-ingress}
    spec:
      hosts: [myapp.example.com, myapp]
      gateways: [my-gateway]
      http:
      - route: [{destination: {host: myapp, subset: v2}}]
        headers:
          response:
            set: {x-via: gateway-route}
    """


def test_gateway_routes_its_hosts_only_at_the_edge(
    mesh: Mesh, given: Given, then: Then
) -> None:
    given.applied(myapp.version("v1"), myapp.version("v2"), myapp.service(), myapp.subsets(),
                  GATEWAY, GATEWAY_ROUTE)

    # Then for the Gateway's host, the ingress gateway routes by the bound VirtualService.
    for _ in range(5):
        r = mesh.from_ingress(host="myapp.example.com")
        assert r.status_code == 200, r.text
        assert r.headers["x-version"] == "v2"
        assert r.headers["x-via"] == "gateway-route"
        assert r.json()["pod"].startswith("myapp-v2-")
    # The port in Host does not matter at the edge.
    assert mesh.from_ingress(host="myapp.example.com:80").status_code == 200
    # Any other host is not served by the Gateway.
    assert mesh.from_ingress(host="other.example.com").status_code == 404
    assert mesh.from_ingress(host="myapp").status_code == 404

    # Inside the mesh the gateway-only route does not apply: both versions, no header.
    then.split_within(30, {"v1": None, "v2": None})
    assert "x-via" not in mesh.http.get(URL).headers
    # ...and the Gateway's public host is not a mesh host.
    assert mesh.http.get("http://myapp.example.com/").status_code == 404


def _service_entry(port: int) -> str:
    return f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: ext}}
        spec:
          hosts: [ext.example.com]
          location: MESH_EXTERNAL
          resolution: STATIC
          ports: [{{number: 80, name: http, protocol: HTTP}}]
          endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
        """


def test_service_entry_reaches_a_host_outside_the_mesh(
    mesh: Mesh, given: Given, when: When, backend_app: Callable[..., str],
    loopback_dns: DnsResponder,
) -> None:
    address = backend_app("ext")
    port = int(address.rsplit(":", 1)[1])
    given.applied(_service_entry(port))

    r = mesh.http.get("http://ext.example.com/")
    assert r.status_code == 200, r.text
    assert r.headers["x-version"] == "ext"
    assert r.json()["host"] == "ext.example.com"
    assert "x-ext" not in r.headers

    # When a VirtualService on the external host is applied, it applies to mesh traffic to it
    when.apply("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: ext}
        spec:
          hosts: [ext.example.com]
          http:
          - route: [{destination: {host: ext.example.com}}]
            headers:
              response:
                set: {x-ext: via-mesh}
        """)
    r = mesh.http.get("http://ext.example.com/path")
    assert r.status_code == 200, r.text
    assert r.headers["x-ext"] == "via-mesh"
    assert r.json()["path"] == "/path"
    # A host nobody declared is still unknown to the mesh: passed through (ALLOW_ANY),
    # its name looked up on the test's loopback DNS server, which does not know it: 404
    assert mesh.http.get("http://unknown.example.com/").status_code == 404
    assert "unknown.example.com" in loopback_dns.asked


def test_workload_entry_is_an_endpoint_of_a_service(
    mesh: Mesh, given: Given, backend_app: Callable[..., str]
) -> None:
    address = backend_app("legacy")
    port = int(address.rsplit(":", 1)[1])
    given.applied(workload_entry("legacy-vm", port=port, labels={"app": "legacy"}),
                  myapp.service("legacy"))

    for url in ("http://legacy:8080/", "http://legacy.default.svc.cluster.local:8080/hello"):
        r = mesh.http.get(url)
        assert r.status_code == 200, r.text
        assert r.headers["x-version"] == "legacy"
    cluster = "outbound|8080||legacy.default.svc.cluster.local"
    assert mesh.endpoint_addresses("mesh-proxy", cluster) == [address]

"""Ingress Gateway routes, and hosts outside the mesh: ServiceEntry and WorkloadEntry."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.e2e.conftest import Mesh, demo_deployment, service
from tests.e2e.traffic import destination_rule

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


def _ingress(mesh: Mesh, host: str, path: str = "/") -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=15.0) as client:
        return client.get(mesh.ingress + path, headers={"Host": host})


def test_gateway_routes_its_hosts_only_at_the_edge(mesh: Mesh) -> None:
    mesh.apply(
        demo_deployment("myapp-v1", "v1"),
        demo_deployment("myapp-v2", "v2"),
        service(),
        destination_rule(),
        GATEWAY,
        GATEWAY_ROUTE,
    )
    mesh.converge()

    # Given the Gateway's host, the ingress gateway routes by the bound VirtualService.
    for _ in range(5):
        r = _ingress(mesh, "myapp.example.com")
        assert r.status_code == 200, r.text
        assert r.headers["x-version"] == "v2"
        assert r.headers["x-via"] == "gateway-route"
        assert r.json()["pod"].startswith("myapp-v2-")
    # The port in Host does not matter at the edge.
    assert _ingress(mesh, "myapp.example.com:80").status_code == 200
    # Any other host is not served by the Gateway.
    assert _ingress(mesh, "other.example.com").status_code == 404
    assert _ingress(mesh, "myapp").status_code == 404

    # Inside the mesh the gateway-only route does not apply: both versions, no header.
    counts = mesh.versions("http://myapp:8080/", 30)
    assert set(counts) == {"v1", "v2"}, counts
    assert "x-via" not in mesh.http.get("http://myapp:8080/").headers
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
    mesh: Mesh, backend_app: Callable[..., str]
) -> None:
    address = backend_app("ext")
    port = int(address.rsplit(":", 1)[1])
    mesh.apply(_service_entry(port))
    mesh.converge()

    r = mesh.http.get("http://ext.example.com/")
    assert r.status_code == 200, r.text
    assert r.headers["x-version"] == "ext"
    assert r.json()["host"] == "ext.example.com"
    assert "x-ext" not in r.headers

    # A VirtualService on the external host applies to mesh traffic to it.
    mesh.apply("""\
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
    mesh.converge()
    r = mesh.http.get("http://ext.example.com/path")
    assert r.status_code == 200, r.text
    assert r.headers["x-ext"] == "via-mesh"
    assert r.json()["path"] == "/path"
    # A host nobody declared is still unknown to the mesh.
    assert mesh.http.get("http://unknown.example.com/").status_code == 404


def test_workload_entry_is_an_endpoint_of_a_service(
    mesh: Mesh, backend_app: Callable[..., str]
) -> None:
    address = backend_app("legacy")
    port = int(address.rsplit(":", 1)[1])
    mesh.apply(
        f"""\
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {{name: legacy-vm}}
        spec:
          address: 127.0.0.1
          ports: {{http: {port}}}
          labels: {{app: legacy}}
        """,
        service("legacy"),
    )
    mesh.converge()

    for url in ("http://legacy:8080/", "http://legacy.default.svc.cluster.local:8080/hello"):
        r = mesh.http.get(url)
        assert r.status_code == 200, r.text
        assert r.headers["x-version"] == "legacy"
    endpoints = [
        f"{ep['endpoint']['address']['socket_address']['address']}:"
        f"{ep['endpoint']['address']['socket_address']['port_value']}"
        for item in mesh.proxy_config("mesh-proxy", "endpoints")
        if item["endpoint_config"]["cluster_name"]
        == "outbound|8080||legacy.default.svc.cluster.local"
        for group in item["endpoint_config"].get("endpoints", [])
        for ep in group.get("lb_endpoints", [])
    ]
    assert endpoints == [address]

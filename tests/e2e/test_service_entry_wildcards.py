"""ServiceEntry wildcard hosts and addresses end to end: requests through the mesh proxy
by a host name a wildcard entry covers reach the entry's endpoints.

Follows Istio's "Egress using Wildcard Hosts" task page (its "single hosting server"
case: ``*.wikipedia.org`` with resolution DNS and one endpoint serving every covered
host), with the same for resolution STATIC; an exact entry under the same suffix keeps its
own host (Istio's more specific host wins); an entry's single ``addresses`` entry is a
host a client may write; a ``workloadSelector`` entry's endpoints are the pods and
WorkloadEntries of its namespace it selects (Istio's "ServiceEntry" reference, MESH_INTERNAL
with workloadSelector).
"""

from __future__ import annotations

from collections.abc import Callable

from tests.builders import demo_deployment, workload_entry
from tests.e2e.mesh import Mesh, version_of
from tests.e2e.scenario import Given, When


def _entry(name: str, hosts: str, resolution: str, address: str, port: int,
           addresses: str = "[]") -> str:
    return f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: {name}}}
        spec:
          hosts: {hosts}
          addresses: {addresses}
          location: MESH_EXTERNAL
          resolution: {resolution}
          ports: [{{number: 80, name: http, protocol: HTTP}}]
          endpoints: [{{address: {address}, ports: {{http: {port}}}}}]
        """


def test_a_wildcard_entry_is_reached_by_every_host_it_covers(
        mesh: Mesh, given: Given, when: When, backend_app: Callable[..., str]) -> None:
    wiki = int(backend_app("wiki").rsplit(":", 1)[1])
    static = int(backend_app("static").rsplit(":", 1)[1])
    exact = int(backend_app("exact").rsplit(":", 1)[1])
    given.applied(
        # DNS: the one endpoint is a name, resolved by the proxy (Istio's task)
        _entry("wikipedia", '["*.wikipedia.org"]', "DNS", "localhost", wiki),
        _entry("static", '["*.static.example.com"]', "STATIC", "127.0.0.1", static,
               addresses='["240.0.0.7"]'),
        _entry("exact", '["api.static.example.com"]', "STATIC", "127.0.0.1", exact))

    for host in ("en.wikipedia.org", "de.wikipedia.org"):
        r = mesh.http.get(f"http://{host}/")
        assert r.status_code == 200, (host, r.status_code, r.text)
        assert r.headers["x-version"] == "wiki"
        assert r.json()["host"] == host  # the covered name is kept upstream
        assert "x-meshpilot-scope" not in r.json()["headers"]
    r = mesh.http.get("http://img.static.example.com/")
    assert r.headers.get("x-version") == "static", r.text
    assert mesh.http.get("http://img.static.example.com:80/").headers.get("x-version") \
        == "static"
    # the exact host wins over the wildcard that also covers it
    assert mesh.http.get("http://api.static.example.com/").headers.get("x-version") == "exact"
    # the entry's address is one of its hosts
    assert mesh.http.get("http://240.0.0.7/").headers.get("x-version") == "static"
    # the bare domain is not covered, nor another domain (whatever the mesh does with
    # an unknown host, the entry's endpoint does not answer)
    for host in ("wikipedia.org", "en.wikipedia.com"):
        assert "x-version" not in mesh.http.get(f"http://{host}/").headers

    # a VirtualService for the pattern routes every covered name; its destination, a
    # covered name, is the entry
    when.apply("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: wikipedia}
        spec:
          hosts: ["*.wikipedia.org"]
          http:
          - route: [{destination: {host: en.wikipedia.org}}]
            headers: {response: {set: {x-routed: wikipedia}}}
        """)
    r = mesh.http.get("http://fr.wikipedia.org/")
    assert (r.headers.get("x-routed"), r.headers.get("x-version")) == ("wikipedia", "wiki")


def test_a_workload_selector_entry_reaches_the_pods_and_entries_it_selects(
        mesh: Mesh, given: Given, backend_app: Callable[..., str]) -> None:
    vm = int(backend_app("vm").rsplit(":", 1)[1])
    pods = demo_deployment("api-v1", "v1", app="api")
    pods["spec"]["template"]["metadata"]["labels"]["role"] = "api"
    given.applied(pods, workload_entry("api-vm", port=vm, labels={"role": "api"}),
                  demo_deployment("other", "other", app="other"), """\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: api}
        spec:
          hosts: [api.internal]
          location: MESH_INTERNAL
          resolution: STATIC
          ports: [{number: 8080, name: http, protocol: HTTP}]
          workloadSelector: {labels: {role: api}}
        """)
    seen = {version_of(mesh.http.get("http://api.internal:8080/")) for _ in range(20)}
    assert seen == {"v1", "vm"}, seen  # the pod (over its sidecar) and the entry

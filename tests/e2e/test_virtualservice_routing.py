"""VirtualService routing against real Envoy: weights, matches, first-match-wins, sourceLabels.

Every test is Given (a mesh with myapp v1 + v2) / When (a VirtualService is applied and the
mesh has converged) / Then (real requests through the mesh proxy, or from inside a pod
through its own sidecar, land where the VirtualService says).

Rules in the match tests tag their responses with a ``x-rule`` response header, so a test
sees which rule answered, not only which version.
"""

from __future__ import annotations

import textwrap

from tests.e2e.conftest import Mesh, demo_deployment, service, subsets_rule

URL = "http://myapp:8080"


def virtual_service(http: str, *, name: str = "myapp", host: str = "myapp") -> str:
    """A VirtualService for ``host`` whose ``http:`` list is the YAML in ``http``."""
    body = textwrap.indent(textwrap.dedent(http).strip("\n"), "  ")
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
            f"metadata: {{name: {name}, namespace: default}}\n"
            f"spec:\n  hosts: [{host}]\n  http:\n{body}\n")


def given_v1_and_v2(mesh: Mesh, *extra: str) -> None:
    mesh.apply(demo_deployment("myapp-v1", "v1"), demo_deployment("myapp-v2", "v2"),
               service(), subsets_rule(), *extra)
    mesh.converge()


def when_applied(mesh: Mesh, http: str) -> None:
    mesh.apply(virtual_service(http))
    mesh.converge()


def rule_of(mesh: Mesh, path: str, method: str = "GET", **kwargs: object) -> tuple[str, str]:
    """(x-rule, x-version) of the response to one request."""
    r = mesh.http.request(method, URL + path, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.headers.get("x-rule", "<none>"), r.headers.get("x-version", "<none>")


def test_weighted_routes_are_relative_zero_gets_nothing_and_changes_apply(mesh: Mesh) -> None:
    # Given myapp v1 and v2
    given_v1_and_v2(mesh)

    # When the weights are 1:3 (they do not add up to 100: weights are relative)
    when_applied(mesh, """
        - route:
          - {destination: {host: myapp, subset: v1}, weight: 1}
          - {destination: {host: myapp, subset: v2}, weight: 3}
        """)
    # Then about a quarter goes to v1 and three quarters to v2
    counts = mesh.versions(URL + "/", 200)
    assert set(counts) == {"v1", "v2"}, counts
    assert 20 <= counts["v1"] <= 85, counts  # expected 50
    assert 115 <= counts["v2"] <= 180, counts  # expected 150

    # When v1 has weight 0
    when_applied(mesh, """
        - route:
          - {destination: {host: myapp, subset: v1}, weight: 0}
          - {destination: {host: myapp, subset: v2}, weight: 5}
        """)
    # Then v1 gets nothing
    assert mesh.versions(URL + "/", 60) == {"v2": 60}

    # When there is a single destination (no weight)
    when_applied(mesh, """
        - route:
          - destination: {host: myapp, subset: v1}
        """)
    # Then it gets everything
    assert mesh.versions(URL + "/", 60) == {"v1": 60}

    # When the weights change to 50/50
    when_applied(mesh, """
        - route:
          - {destination: {host: myapp, subset: v1}, weight: 50}
          - {destination: {host: myapp, subset: v2}, weight: 50}
        """)
    # Then both versions answer again, in roughly equal shares
    counts = mesh.versions(URL + "/", 200)
    assert set(counts) == {"v1", "v2"}, counts
    assert 60 <= counts["v1"] <= 140, counts


def _tagged(name: str, subset: str, match: str = "") -> str:
    """One http rule: optional ``match`` YAML, tags responses with ``x-rule: name``."""
    lines = [f"- name: {name}"]
    if match:
        lines.append(f"  match: {match}")
    lines += [
        f"  headers: {{response: {{set: {{x-rule: {name}}}}}}}",
        f"  route: [{{destination: {{host: myapp, subset: {subset}}}}}]",
    ]
    return "\n".join(lines) + "\n"


def test_uri_header_query_method_matches_and_first_match_wins(mesh: Mesh) -> None:
    # Given myapp v1 and v2
    given_v1_and_v2(mesh)

    # When a VirtualService has one rule per kind of match, then a catch-all to v1
    when_applied(mesh, "".join([
        _tagged("uri-exact", "v2", "[{uri: {exact: /exact}}]"),
        _tagged("special", "v2", "[{uri: {prefix: /api/special}}]"),
        _tagged("uri-prefix", "v2", "[{uri: {prefix: /api/}}]"),
        _tagged("unreachable", "v1", "[{uri: {prefix: /api/never}}]"),  # after /api/
        _tagged("uri-regex", "v2", "[{uri: {regex: '/items/[0-9]+'}}]"),
        _tagged("header-exact", "v2", "[{headers: {x-user: {exact: alice}}}]"),
        _tagged("header-prefix", "v2", "[{headers: {x-team: {prefix: blue}}}]"),
        _tagged("header-regex", "v2", "[{headers: {x-id: {regex: '[0-9]{3}'}}}]"),
        _tagged("without", "v2",
                "[{uri: {prefix: /wo}, withoutHeaders: {x-skip: {exact: 'yes'}}}]"),
        _tagged("query", "v2", "[{queryParams: {debug: {exact: '1'}}}]"),
        _tagged("method", "v2", "[{method: {exact: POST}}]"),
        _tagged("and", "v2", "[{uri: {prefix: /and}, headers: {x-a: {exact: '1'}}}]"),
        _tagged("or", "v2", "[{uri: {exact: /or1}}, {uri: {exact: /or2}}]"),
        _tagged("default", "v1"),
    ]))

    # Then uri exact matches only the exact path
    assert rule_of(mesh, "/exact") == ("uri-exact", "v2")
    assert rule_of(mesh, "/exact/more") == ("default", "v1")
    assert rule_of(mesh, "/exactly") == ("default", "v1")
    # uri prefix
    assert rule_of(mesh, "/api/users") == ("uri-prefix", "v2")
    assert rule_of(mesh, "/apix") == ("default", "v1")
    # first match wins: the specific rule before the broader one takes its requests, and a
    # rule after a broader one never matches
    assert rule_of(mesh, "/api/special/1") == ("special", "v2")
    assert rule_of(mesh, "/api/never") == ("uri-prefix", "v2")
    # uri regex: the whole path must match, the query string is not part of it
    assert rule_of(mesh, "/items/42") == ("uri-regex", "v2")
    assert rule_of(mesh, "/items/42?x=1") == ("uri-regex", "v2")
    assert rule_of(mesh, "/items/abc") == ("default", "v1")
    assert rule_of(mesh, "/items/42/x") == ("default", "v1")
    # headers exact / prefix / regex
    assert rule_of(mesh, "/", headers={"X-User": "alice"}) == ("header-exact", "v2")
    assert rule_of(mesh, "/", headers={"x-user": "alicex"}) == ("default", "v1")
    assert rule_of(mesh, "/", headers={"x-team": "blueberry"}) == ("header-prefix", "v2")
    assert rule_of(mesh, "/", headers={"x-team": "red-blue"}) == ("default", "v1")
    assert rule_of(mesh, "/", headers={"x-id": "123"}) == ("header-regex", "v2")
    assert rule_of(mesh, "/", headers={"x-id": "1234"}) == ("default", "v1")
    # withoutHeaders: the rule applies unless the header matches
    assert rule_of(mesh, "/wo") == ("without", "v2")
    assert rule_of(mesh, "/wo", headers={"x-skip": "no"}) == ("without", "v2")
    assert rule_of(mesh, "/wo", headers={"x-skip": "yes"}) == ("default", "v1")
    # queryParams
    assert rule_of(mesh, "/q?debug=1") == ("query", "v2")
    assert rule_of(mesh, "/q?debug=2") == ("default", "v1")
    assert rule_of(mesh, "/q?nodebug=1") == ("default", "v1")
    # method
    assert rule_of(mesh, "/m", "POST", content=b"hi") == ("method", "v2")
    assert rule_of(mesh, "/m", "PUT", content=b"hi") == ("default", "v1")
    # conditions within one match are ANDed, match entries of one rule are ORed
    assert rule_of(mesh, "/and", headers={"x-a": "1"}) == ("and", "v2")
    assert rule_of(mesh, "/and") == ("default", "v1")
    assert rule_of(mesh, "/or1") == ("or", "v2")
    assert rule_of(mesh, "/or2") == ("or", "v2")
    assert rule_of(mesh, "/or3") == ("default", "v1")

    # When the order of a specific rule and a catch-all is swapped
    when_applied(mesh, _tagged("catch-all", "v1") + _tagged("uri-exact", "v2",
                                                            "[{uri: {exact: /exact}}]"))
    # Then the catch-all answers everything
    assert rule_of(mesh, "/exact") == ("catch-all", "v1")
    assert rule_of(mesh, "/other") == ("catch-all", "v1")


def test_source_labels_decide_by_the_calling_proxy(mesh: Mesh) -> None:
    # Given myapp v1 and v2, and a "tester" workload (another app) with a service
    given_v1_and_v2(mesh, demo_deployment("tester", "t1", app="tester"),
                    service("tester"))

    # When rules select by the caller's labels, and the last rule catches everything else
    when_applied(mesh, "".join([
        _tagged("from-tester", "v2", "[{sourceLabels: {app: tester}}]"),
        _tagged("from-mesh-client", "v2", "[{sourceLabels: {app: mesh-client}}]"),
        _tagged("from-elsewhere", "v2", "[{sourceLabels: {app: somebody-else}}]"),
        _tagged("from-myapp-v2", "v1", "[{sourceLabels: {app: myapp, version: v2}}]"),
        _tagged("default", "v1"),
    ]))

    # Then requests through the mesh proxy (labels app=mesh-client) take its rule
    assert rule_of(mesh, "/") == ("from-mesh-client", "v2")
    assert mesh.versions(URL + "/", 20) == {"v2": 20}

    # And a request from inside the tester pod, through its own sidecar, takes the tester rule
    r = mesh.http.get("http://tester:8080/call", params={"url": URL + "/"})
    assert r.status_code == 200, r.text
    call = r.json()
    assert call["pod"].startswith("tester"), call
    assert call["status"] == 200, call
    assert call["headers"].get("x-rule") == "from-tester", call
    assert call["body"]["version"] == "v2", call

    # And from inside a myapp v2 pod (reached through the mesh proxy's rule), the rule for
    # app=myapp,version=v2 applies; no pod has app=somebody-else, so that rule never does
    r = mesh.http.get(URL + "/call", params={"url": URL + "/"})
    assert r.status_code == 200, r.text
    call = r.json()
    assert call["version"] == "v2", call
    assert call["headers"].get("x-rule") == "from-myapp-v2", call
    assert call["body"]["version"] == "v1", call

    # When the mesh-client rule goes, then the mesh proxy falls through to the default
    when_applied(mesh, "".join([
        _tagged("from-tester", "v2", "[{sourceLabels: {app: tester}}]"),
        _tagged("default", "v1"),
    ]))
    assert rule_of(mesh, "/") == ("default", "v1")
    r = mesh.http.get("http://tester:8080/call", params={"url": URL + "/"})
    assert r.json()["headers"].get("x-rule") == "from-tester", r.text

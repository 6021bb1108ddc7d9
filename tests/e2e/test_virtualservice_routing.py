"""VirtualService routing against real Envoy: weights, matches, first-match-wins, sourceLabels.

Every test is Given (a mesh with myapp v1 + v2) / When (a VirtualService is applied and the
mesh has converged) / Then (real requests through the mesh proxy, or from inside a pod
through its own sidecar, land where the VirtualService says).

Rules in the match tests tag their responses with a ``x-rule`` response header, so a test
sees which rule answered, not only which version.
"""

from __future__ import annotations

from tests.builders import demo_deployment
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given, Then, When

V1_AND_V2 = (myapp.version("v1"), myapp.version("v2"), myapp.service(), myapp.subsets())


def rule_of(mesh: Mesh, path: str, method: str = "GET", **kwargs: object) -> tuple[str, str]:
    """(x-rule, x-version) of the response to one request."""
    r = mesh.http.request(method, URL.rstrip("/") + path, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.headers.get("x-rule", "<none>"), r.headers.get("x-version", "<none>")


def test_weighted_routes_are_relative_zero_gets_nothing_and_changes_apply(
    given: Given, when: When, then: Then
) -> None:
    given.applied(*V1_AND_V2)

    # When the weights are 1:3 (they do not add up to 100: weights are relative)
    when.apply(myapp.split(v1=1, v2=3))
    # Then about a quarter goes to v1 and three quarters to v2 (expected 50 and 150)
    then.split_within(200, {"v1": (20, 85), "v2": (115, 180)})

    # When v1 has weight 0, then v1 gets nothing
    when.apply(myapp.split(v1=0, v2=5))
    then.split_is({"v2": 60})

    # When there is a single destination (no weight), then it gets everything
    when.apply(myapp.routes("""
        - route:
          - destination: {host: myapp, subset: v1}
        """))
    then.split_is({"v1": 60})

    # When the weights change to 50/50, then both versions answer again, in roughly
    # equal shares
    when.apply(myapp.split(v1=50, v2=50))
    then.split_within(200, {"v1": (60, 140), "v2": None})


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


def test_uri_header_query_method_matches_and_first_match_wins(
    mesh: Mesh, given: Given, when: When
) -> None:
    given.applied(*V1_AND_V2)

    # When a VirtualService has one rule per kind of match, then a catch-all to v1
    when.apply(myapp.routes("".join([
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
    ])))

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
    when.apply(myapp.routes(_tagged("catch-all", "v1")
                            + _tagged("uri-exact", "v2", "[{uri: {exact: /exact}}]")))
    # Then the catch-all answers everything
    assert rule_of(mesh, "/exact") == ("catch-all", "v1")
    assert rule_of(mesh, "/other") == ("catch-all", "v1")


def test_source_labels_decide_by_the_calling_proxy(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    # Given myapp v1 and v2, and a "tester" workload (another app) with a service
    given.applied(*V1_AND_V2, demo_deployment("tester", "t1", app="tester"),
                  myapp.service("tester"))

    # When rules select by the caller's labels, and the last rule catches everything else
    when.apply(myapp.routes("".join([
        _tagged("from-tester", "v2", "[{sourceLabels: {app: tester}}]"),
        _tagged("from-mesh-client", "v2", "[{sourceLabels: {app: mesh-client}}]"),
        _tagged("from-elsewhere", "v2", "[{sourceLabels: {app: somebody-else}}]"),
        _tagged("from-myapp-v2", "v1", "[{sourceLabels: {app: myapp, version: v2}}]"),
        _tagged("default", "v1"),
    ])))

    # Then requests through the mesh proxy (labels app=mesh-client) take its rule
    assert rule_of(mesh, "/") == ("from-mesh-client", "v2")
    then.split_is({"v2": 20})

    # And a request from inside the tester pod, through its own sidecar, takes the tester rule
    r = mesh.http.get("http://tester:8080/call", params={"url": URL})
    assert r.status_code == 200, r.text
    call = r.json()
    assert call["pod"].startswith("tester"), call
    assert call["status"] == 200, call
    assert call["headers"].get("x-rule") == "from-tester", call
    assert call["body"]["version"] == "v2", call

    # And from inside a myapp v2 pod (reached through the mesh proxy's rule), the rule for
    # app=myapp,version=v2 applies; no pod has app=somebody-else, so that rule never does
    r = mesh.http.get(URL + "call", params={"url": URL})
    assert r.status_code == 200, r.text
    call = r.json()
    assert call["version"] == "v2", call
    assert call["headers"].get("x-rule") == "from-myapp-v2", call
    assert call["body"]["version"] == "v1", call

    # When the mesh-client rule goes, then the mesh proxy falls through to the default
    when.apply(myapp.routes("".join([
        _tagged("from-tester", "v2", "[{sourceLabels: {app: tester}}]"),
        _tagged("default", "v1"),
    ])))
    assert rule_of(mesh, "/") == ("default", "v1")
    r = mesh.http.get("http://tester:8080/call", params={"url": URL})
    assert r.json()["headers"].get("x-rule") == "from-tester", r.text

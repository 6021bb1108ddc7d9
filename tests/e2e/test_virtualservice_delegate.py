"""Delegate VirtualServices end to end, after Istio's VirtualService reference
("delegate"): the root for myapp hands ``/v2`` to a VirtualService without hosts that
another team owns in its own namespace; the team changes its routes without touching the
root, and the mesh follows."""

from __future__ import annotations

from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given, Then, When

ROOT = """\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: myapp}
    spec:
      hosts: [myapp]
      http:
      - name: team
        match: [{uri: {prefix: /v2}}]
        delegate: {name: myapp-team, namespace: team}
        headers: {response: {set: {x-via: root}}}
      - route: [{destination: {host: myapp, subset: v1}}]
    """


def team_routes(v1: int, v2: int) -> str:
    return f"""\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {{name: myapp-team, namespace: team}}
    spec:
      http:
      - match: [{{uri: {{prefix: /v2/only}}}}]
        route: [{{destination: {{host: myapp.default.svc.cluster.local, subset: v2}}}}]
      - route:
        - {{destination: {{host: myapp.default.svc.cluster.local, subset: v1}}, weight: {v1}}}
        - {{destination: {{host: myapp.default.svc.cluster.local, subset: v2}}, weight: {v2}}}
    """


def test_a_delegate_routes_its_part_and_its_changes_reach_the_mesh(
        mesh: Mesh, given: Given, when: When, then: Then) -> None:
    given.applied(myapp.version("v1"), myapp.version("v2"), myapp.service(),
                  myapp.subsets(), ROOT, team_routes(0, 100))

    # Outside /v2 the root's own rule: v1.
    then.split_is({"v1": 10})
    # Under /v2 the delegate's rules, with the root rule's response header.
    then.split_is({"v2": 10}, url=URL + "v2/any")
    assert mesh.http.get(URL + "v2/any").headers["x-via"] == "root"
    assert "x-via" not in mesh.http.get(URL).headers

    # When the team moves its traffic back to v1 (the root untouched)
    when.apply(team_routes(100, 0))

    # Then /v2 follows, except the path the team keeps on v2.
    then.split_is({"v1": 10}, url=URL + "v2/any")
    then.split_is({"v2": 5}, url=URL + "v2/only/this")

"""Given a canary 80/20 VirtualService, when clients call myapp, then ~20% reach v2."""

from __future__ import annotations

from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given, Then


def test_weighted_canary_through_the_mesh_proxy(mesh: Mesh, given: Given, then: Then) -> None:
    given.applied(myapp.version("v1"), myapp.version("v2"), myapp.service(), myapp.subsets(),
                  myapp.split(v1=80, v2=20))

    # 20% of 200 = 40, a wide band for randomness
    then.split_within(200, {"v1": None, "v2": (20, 65)})
    body = mesh.http.get(URL).json()
    assert body["pod"].startswith("myapp-v")

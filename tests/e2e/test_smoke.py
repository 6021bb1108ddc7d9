"""Given a canary 90/10 VirtualService, when clients call myapp, then ~10% reach v2."""

from __future__ import annotations

from tests.e2e.conftest import Mesh, demo_deployment, service, subsets_rule


def test_weighted_canary_through_the_mesh_proxy(mesh: Mesh) -> None:
    mesh.apply(
        demo_deployment("myapp-v1", "v1"), demo_deployment("myapp-v2", "v2"), service(),
        subsets_rule(),
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: myapp}
        spec:
          hosts: [myapp]
          http:
          - route:
            - {destination: {host: myapp, subset: v1}, weight: 80}
            - {destination: {host: myapp, subset: v2}, weight: 20}
        """,
    )
    mesh.converge()
    counts = mesh.versions("http://myapp:8080/", 200)
    assert set(counts) == {"v1", "v2"}, counts
    assert 20 <= counts["v2"] <= 65, counts  # 20% of 200 = 40, wide band for randomness
    body = mesh.http.get("http://myapp:8080/").json()
    assert body["pod"].startswith("myapp-v")

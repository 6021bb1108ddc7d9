"""No request is lost while the mesh changes under load: weight shifts, a rolling update,
scaling down. A client thread sends requests back to back through the mesh proxy the
whole time; every single response must be a 200."""

from __future__ import annotations

from collections import Counter

from tests.e2e.conftest import Mesh, demo_deployment, service
from tests.e2e.traffic import LoadLoop, destination_rule, pods_of, tail_versions, wait_until

URL = "http://myapp:8080/"


def _weights(v1: int, v2: int) -> str:
    return f"""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: myapp}}
        spec:
          hosts: [myapp]
          http:
          - route:
            - {{destination: {{host: myapp, subset: v1}}, weight: {v1}}}
            - {{destination: {{host: myapp, subset: v2}}, weight: {v2}}}
        """


def _assert_no_failures(load: LoadLoop) -> None:
    assert load.sent > 50, f"the client hardly ran: {load.sent} requests"
    assert not load.failures, (
        f"{len(load.failures)} of {load.sent} requests failed: "
        f"{Counter(f[0] for f in load.failures)} {load.failures[:5]}"
    )


def test_shifting_weights_loses_no_request(mesh: Mesh) -> None:
    mesh.apply(
        demo_deployment("myapp-v1", "v1"),
        demo_deployment("myapp-v2", "v2"),
        service(),
        destination_rule(),
        _weights(100, 0),
    )
    mesh.converge()
    expected = {(100, 0): {"v1"}, (50, 50): {"v1", "v2"}, (0, 100): {"v2"}}
    with LoadLoop(mesh, URL) as load:
        load.wait_for_requests(20)
        for v1, v2 in ((50, 50), (0, 100), (100, 0), (50, 50), (0, 100), (100, 0)):
            mesh.apply(_weights(v1, v2))
            mesh.converge()
            load.wait_for_requests(20)
            seen = mesh.versions(URL, 40)
            assert set(seen) == expected[(v1, v2)], (v1, v2, seen)
    _assert_no_failures(load)
    assert set(load.versions) == {"v1", "v2"}
    assert mesh.versions(URL, 30) == {"v1": 30}


def test_rolling_update_loses_no_request(mesh: Mesh) -> None:
    mesh.apply(demo_deployment("myapp-v1", "v1", replicas=2), service())
    mesh.converge()
    old = {p["metadata"]["name"] for p in pods_of(mesh, "myapp-v1")}
    assert len(old) == 2

    def rolled() -> bool:
        pods = pods_of(mesh, "myapp-v1")
        return (
            len(pods) == 2
            and not {p["metadata"]["name"] for p in pods} & old
            and all(p["status"]["ready"] and p["status"]["phase"] == "Running" for p in pods)
        )

    with LoadLoop(mesh, URL) as load:
        load.wait_for_requests(20)
        # A new pod template (the app now reports another version): a rolling update.
        mesh.apply(demo_deployment("myapp-v1", "v1", replicas=2, args="--version v1-new"))
        wait_until(rolled, 45, "the rolling update to finish")
        mesh.converge()
        load.wait_for_requests(20)
    _assert_no_failures(load)
    assert "v1" in load.versions and "v1-new" in load.versions
    # The requests sent after the rollout converged were all answered by new pods.
    assert tail_versions(load.versions, 10) == {"v1-new": 10}
    assert mesh.versions(URL, 20) == {"v1-new": 20}


def test_scaling_down_loses_no_request(mesh: Mesh) -> None:
    mesh.apply(demo_deployment("myapp-v1", "v1", replicas=3), service())
    mesh.converge()
    assert len(pods_of(mesh, "myapp-v1")) == 3
    with LoadLoop(mesh, URL) as load:
        load.wait_for_requests(30)
        mesh.apply(demo_deployment("myapp-v1", "v1", replicas=1))
        wait_until(lambda: len(pods_of(mesh, "myapp-v1")) == 1, 30, "scale down to 1 pod")
        mesh.converge()
        load.wait_for_requests(20)
    _assert_no_failures(load)
    assert len(load.pods) == 3, load.pods  # all three pods served during the test
    survivor = pods_of(mesh, "myapp-v1")[0]["metadata"]["name"]
    counts = Counter(r.headers["x-pod"] for r in (mesh.http.get(URL) for _ in range(10)))
    assert counts == {survivor: 10}

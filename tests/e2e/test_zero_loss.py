"""No request is lost while the mesh changes under load: weight shifts, a rolling update,
scaling down. A client thread sends requests back to back through the mesh proxy the
whole time; every single response must be a 200."""

from __future__ import annotations

from collections import Counter

from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given, Then, When
from tests.e2e.traffic import Traffic


def back_to_back(when: When) -> Traffic:
    """One client sending requests back to back (bounded: 20000 requests, 40 s)."""
    return when.traffic(workers=1, rate=None, max_requests=20000, max_seconds=40.0,
                        timeout=15.0)


def test_shifting_weights_loses_no_request(given: Given, when: When, then: Then) -> None:
    given.applied(myapp.version("v1"), myapp.version("v2"), myapp.service(), myapp.subsets(),
                  myapp.split(v1=100, v2=0))
    expected = {(100, 0): {"v1"}, (50, 50): {"v1", "v2"}, (0, 100): {"v2"}}
    with back_to_back(when) as load:
        load.wait_for_requests(20)
        for v1, v2 in ((50, 50), (0, 100), (100, 0), (50, 50), (0, 100), (100, 0)):
            when.apply(myapp.split(v1=v1, v2=v2))
            load.wait_for_requests(20)
            then.split_within(40, dict.fromkeys(expected[(v1, v2)]))
    then.no_request_failed(load, more_than=50)
    assert set(load.versions) == {"v1", "v2"}
    then.split_is({"v1": 30})


def test_rolling_update_loses_no_request(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.version("v1", replicas=2), myapp.service())
    old = {p["metadata"]["name"] for p in mesh.pods_of("myapp-v1")}
    assert len(old) == 2

    def rolled() -> bool:
        pods = mesh.pods_of("myapp-v1")
        return (
            len(pods) == 2
            and not {p["metadata"]["name"] for p in pods} & old
            and all(p["status"]["ready"] and p["status"]["phase"] == "Running" for p in pods)
        )

    with back_to_back(when) as load:
        load.wait_for_requests(20)
        # A new pod template (the app now reports another version): a rolling update.
        when.apply_nowait(myapp.version("v1", replicas=2, args="--version v1-new"))
        when.until(rolled, 45, "the rolling update to finish")
        when.converges()
        load.wait_for_requests(20)
    then.no_request_failed(load, more_than=50)
    assert "v1" in load.versions and "v1-new" in load.versions
    # The requests sent after the rollout converged were all answered by new pods.
    assert load.last_versions(10) == {"v1-new": 10}
    then.split_is({"v1-new": 20})


def test_scaling_down_loses_no_request(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.version("v1", replicas=3), myapp.service())
    assert len(mesh.pods_of("myapp-v1")) == 3
    with back_to_back(when) as load:
        load.wait_for_requests(30)
        when.apply_nowait(myapp.version("v1", replicas=1))
        when.until(lambda: len(mesh.pods_of("myapp-v1")) == 1, 30, "scale down to 1 pod")
        when.converges()
        load.wait_for_requests(20)
    then.no_request_failed(load, more_than=50)
    assert len(load.pods) == 3, load.pods  # all three pods served during the test
    survivor = mesh.pods_of("myapp-v1")[0]["metadata"]["name"]
    counts = Counter(r.headers["x-pod"] for r in (mesh.http.get(URL) for _ in range(10)))
    assert counts == {survivor: 10}

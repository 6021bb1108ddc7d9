"""Control-plane replicas on one etcd: every replica serves the API and xDS, one leader
runs what must run once, and a dead leader is replaced within a few seconds.

Follows how Kubernetes controllers elect a leader with a lease (client-go's
leaderelection: one holder, renewals, a dead holder replaced once its lease lapses) and
etcd's own election recipe (a key created under a lease, in a transaction that succeeds
only if the key does not exist)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ControlPlane, run_cli, wait_for
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.rollouts import Rollout, canary
from tests.e2e.scenario import Given, Then, When
from tests.e2e.test_rollout_crash import new_revisions
from tests.etcd_cluster import Cluster

LEADER = "/apis/meshpilot.io/v1/leader"
MYAPP_CLUSTER = "outbound|8080||myapp.default.svc.cluster.local"
PRIMARY_CLUSTER = "outbound|8080||myapp-primary.default.svc.cluster.local"
MYAPP_VS = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/myapp"
FAILOVER_BOUND = 8.0  # the lease's 3 s, a poll, and a loaded CI machine's slack


def leading(mesh: Mesh) -> bool:
    return bool(mesh.api.get(LEADER).json()["leading"])


def _answers(mesh: Mesh) -> bool:
    try:
        return mesh.api.get(LEADER).status_code == 200
    except httpx.HTTPError:
        return False


def canary_routed(mesh: Mesh) -> int:
    """The weight the stored VirtualService of the rollout routes to its canary."""
    vs = mesh.api.get(MYAPP_VS).json()
    return sum(r.get("weight", 0) for r in vs["spec"]["http"][0]["route"]
               if r["destination"]["host"] == "myapp-canary")


def running_pods(mesh: Mesh, deployment: str) -> list[dict[str, Any]]:
    return [p for p in mesh.pods_of(deployment, terminating=False)
            if p["status"]["phase"] == "Running"]


@pytest.fixture
def replicas(control_plane_factory: Callable[..., ControlPlane], etcd_server: Cluster,
             etcd_prefix: str) -> Iterator[list[Mesh]]:
    url = etcd_server.url + etcd_prefix.rstrip("/")
    meshes = [Mesh(control_plane_factory(name, args=["--store", url]))
              for name in ("one", "two")]
    for m in meshes:  # a loaded machine may take a moment before each answers its API
        wait_for(lambda m=m: _answers(m), timeout=30, message="the replica's API answers")
    try:
        yield meshes
    finally:
        for m in meshes:
            m.close()


def test_the_leader_is_killed_and_the_other_replica_takes_over_within_a_bound(
        replicas: list[Mesh]) -> None:
    """Two replicas, one leader: only it runs the pods, while both serve the config and
    the pods' endpoints to their proxies. SIGKILL the leader: the other replica leads
    within the bound, starts the pods on its host, and a change applied to it reaches
    its proxies."""
    one, two = replicas
    statuses = [m.api.get(LEADER).json() for m in replicas]
    assert sorted(s["leading"] for s in statuses) == [False, True]
    assert statuses[0]["leader"] == statuses[1]["leader"]  # both see the same leader
    leader, follower = (one, two) if statuses[0]["leading"] else (two, one)

    follower.apply(myapp.version("v1"), myapp.service())  # any replica takes writes
    wait_for(lambda: running_pods(leader, "myapp-v1"), timeout=60, message="v1 on the leader")
    assert follower.pods_of("myapp-v1") == []  # the follower runs no pods
    # the follower's own proxies are told about the Service all the same, and about the
    # leader's pods: a request through the follower's mesh proxy reaches them
    wait_for(lambda: any("myapp" in name for name in follower.clusters()), timeout=30,
             message="the follower's mesh proxy knows myapp")
    pods = {p["status"]["podIP"] for p in running_pods(leader, "myapp-v1")}
    wait_for(lambda: {a.rsplit(":", 1)[0] for a in follower.endpoint_addresses(
        "mesh-proxy", MYAPP_CLUSTER)} == pods, timeout=15,
             message="the follower's mesh proxy holds the leader's pods")
    assert set(follower.versions("http://myapp:8080/", 10)) == {"v1"}

    killed_at = time.monotonic()
    leader.cp.kill()
    wait_for(lambda: leading(follower), timeout=FAILOVER_BOUND + 5, interval=0.05,
             message="the follower takes the lead")
    assert time.monotonic() - killed_at < FAILOVER_BOUND
    wait_for(lambda: running_pods(follower, "myapp-v1"), timeout=60,
             message="the new leader runs the pods")

    follower.apply(myapp.version("v2"), myapp.subsets(), myapp.split(v1=0, v2=100))
    follower.converge()
    assert {v for v in follower.versions("http://myapp:8080/", 10)} == {"v2"}


@pytest.mark.timeout(240)  # a whole rollout, a take-over and its pods: 55-100 s loaded
def test_a_rollout_in_progress_continues_under_the_new_leader(replicas: list[Mesh]) -> None:
    """The leader is SIGKILLed mid-canary: the other replica takes the lead, starts the
    pods on its host and steps the same rollout on from the step stored with it (same
    revision, no step replayed) to its promotion, as a restarted control plane does
    (test_rollout_crash.py) and as Flagger resumes from the Canary's status. Requests
    sent all along through the other replica's mesh proxy never fail: its proxies had
    the leader's pods as endpoints, and keep them (their processes outlive the killed
    control plane) until its own pods of the same Deployments are ready, as Kubernetes
    keeps a lost node's pods in the endpoints until the node is declared dead. Nor does
    the route change at the hand-over: the new leader's canary pods are not ready yet,
    and an unready canary holds its step and its weight, as Flagger halts advancement."""
    leader, follower = (m for m in sorted(replicas, key=lambda m: not leading(m)))
    Given(leader).rollout(canary(interval="2s", max_weight=40, step_weight=10))
    # the primary's pods start on the leader under the suite's load, then reach the
    # follower through the replica directory
    seen: list[str] = []

    def reaches() -> bool:
        answer = follower.http.get(URL)
        seen[:] = [f"{answer.status_code} {answer.text[:200]!r}"]
        return answer.status_code == 200

    try:
        wait_for(reaches, timeout=60, message="the follower's mesh proxy reaches the leader's pods")
    except AssertionError as missed:  # say what the follower answered and held
        held = follower.endpoint_addresses("mesh-proxy", PRIMARY_CLUSTER)
        raise AssertionError(f"{missed}; last answer {seen}, its primary endpoints {held}, "
                             f"the leader's pods {leader.pods_of('myapp-primary')}") from None
    with When(follower).traffic(rate=50, max_seconds=200) as load:
        When(leader).release("v2")
        before = When(leader).rollout_reaches(lambda b: b["canaryWeight"] >= 20,
                                              "the canary at 20%", timeout=60)
        leader.cp.kill()
        wait_for(lambda: leading(follower), timeout=FAILOVER_BOUND + 5, interval=0.05,
                 message="the follower takes the lead")
        after = Rollout(follower).get()
        assert after["revision"] == before["revision"]
        assert after["canaryWeight"] >= before["canaryWeight"]
        assert new_revisions(after) == new_revisions(before)  # not started over
        samples: list[tuple[str, int]] = []  # (phase, routed canary weight) per poll

        def finished(body: dict[str, Any]) -> bool:
            samples.append((body["phase"], canary_routed(follower)))
            return body["phase"] in ("Succeeded", "Failed")

        final = Rollout(follower).wait(finished, timeout=110, what="the rollout to finish")
    Then(follower).rollout_phase("Succeeded")
    # the hand-over changed no route: while the new leader's pods started, the canary
    # kept the weight of the stored step (the last Progressing sample may already see
    # the promotion's route, read just after its status)
    held = [w for phase, w in samples if phase == "Progressing"][:-1]
    assert len(held) > 10 and min(held) >= before["canaryWeight"], samples[:40]
    weights = [e["message"] for e in final["events"] if "canary weight" in e["message"]]
    assert len(weights) == len(set(weights)), weights  # every step taken once
    assert load.sent > 100
    # none failed: a pod is an endpoint (and ready here, which ends the hand-over) only
    # once its sidecar accepts on its inbound listener
    assert load.failures == [], load.failures[:5]
    assert load.last_versions(20) == {"v2": 20}  # promoted: v2 answers


def test_up_refuses_a_store_url_it_cannot_use(tmp_path: Any) -> None:
    """A mistyped ``--store`` is refused by ``up`` with the form it expects, and nothing
    starts."""
    result = run_cli("up", "--no-mesh", "--store", "etcd://nohost", "--wait", "20",
                     state_dir=tmp_path / "state")
    assert result.returncode != 0
    assert "'nohost' is not HOST:PORT" in result.stderr + result.stdout
    assert "etcd://HOST:2379" in result.stderr + result.stdout

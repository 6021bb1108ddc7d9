"""The leader's pods told to the other replicas: a pod survives the trip through the
replica directory's JSON unchanged, another replica's unchanged list yields the very
same objects (what the snapshot builder's caches rely on), and a replica never counts
its own pods twice."""

from __future__ import annotations

from typing import Any

from meshpilot.mesh.model import InboundPort, WorkloadInstance
from meshpilot.server.shared_endpoints import SharedEndpoints, instance, record
from meshpilot.store.replicas import SingleReplica

POD = WorkloadInstance(name="myapp-v1-0", namespace="default", ip="127.0.1.7",
                       labels={"app": "myapp", "version": "v1"},
                       ports=(InboundPort(8080, 9080, "http", "HTTP"),
                              InboundPort(9090, 9091, "grpc", "GRPC")),
                       ready=True, workload="myapp-v1", service_account="myapp")


class Directory:
    """The replica directory as SharedEndpoints sees it: its identity and the records."""

    identity = "me"

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = [{"identity": "me"}]

    def replicas(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.records]

    def update(self, **fields: Any) -> None:
        self.records[0] = {**self.records[0], **fields}


def test_a_pod_survives_the_trip() -> None:
    assert instance(record(POD)) == POD


def test_others_are_the_same_objects_until_their_list_changes() -> None:
    directory = Directory()
    shared = SharedEndpoints(directory)  # type: ignore[arg-type]
    shared.share([POD])
    assert shared.others() == []  # its own pods are already in its snapshot
    directory.records.append({"identity": "leader", "workloads": [record(POD)]})
    first = shared.others()
    assert first == [POD]
    assert shared.others()[0] is first[0]
    moved = {**record(POD), "ready": False}
    directory.records[1] = {"identity": "leader", "workloads": [moved]}
    (changed,) = shared.others()
    assert changed is not first[0] and changed.ready is False
    directory.records.pop()  # the leader died: its lease took its record
    assert shared.others() == []


def test_one_control_plane_has_no_others() -> None:
    single = SingleReplica()
    single.start({"api": "http://127.0.0.1:1"}, lambda replicas: None)
    shared = SharedEndpoints(single)
    shared.share([POD])
    assert shared.others() == []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_departed_leaders_pods_stay_until_ready_here_or_the_bound() -> None:
    """The leader's record goes (its lease lapsed): its pods stay endpoints until this
    replica has ready pods of the same Deployment, as Kubernetes keeps a lost node's pods
    in the endpoints until the node is declared dead; at most ``keep_departed``."""
    other = WorkloadInstance(name="other-0", namespace="default", ip="127.0.1.8",
                             labels={"app": "other"}, workload="other")
    directory = Directory()
    clock = Clock()
    shared = SharedEndpoints(directory, keep_departed=30.0, clock=clock)  # type: ignore[arg-type]
    directory.records.append({"identity": "leader",
                              "workloads": [record(POD), record(other)]})
    assert shared.others() == [POD, other]
    directory.records.pop()  # the leader died
    kept = shared.others()
    assert kept == [POD, other]
    starting = WorkloadInstance(name="myapp-v1-new", namespace="default", ip="127.0.2.1",
                                labels=dict(POD.labels), workload="myapp-v1", ready=False)
    shared.share([starting])
    assert shared.others() == [POD, other]  # not ready here yet
    shared.share([WorkloadInstance(**{**starting.__dict__, "ready": True})])
    assert shared.others() == [other]  # myapp-v1 is ready here: its old pod goes
    assert shared.others()[0] is kept[1]
    assert shared.departing()  # the mesh rebuilds each poll meanwhile
    clock.now += 31
    assert shared.others() == []  # the bound
    assert not shared.departing()

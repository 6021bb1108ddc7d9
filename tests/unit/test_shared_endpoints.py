"""The leader's pods told to the other replicas: a pod survives the trip through the
replica directory's JSON unchanged, another replica's unchanged list yields the very
same objects (what the snapshot builder's caches rely on), and a replica never counts
its own pods twice."""

from __future__ import annotations

import logging
from typing import Any

from meshpilot.mesh.model import InboundPort, WorkloadInstance
from meshpilot.server.shared_endpoints import MAX_LAG, SharedEndpoints, instance, record
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


def test_a_rebuild_waits_for_the_leaders_pods_as_of_its_revision_within_a_bound() -> None:
    """A follower at store revision 7 waits while the leader's record says it built 6
    (a route made at 7 may send to pods the follower does not know yet); it goes on once
    the leader says 7, or after MAX_LAG without waiting again until the leader caught
    up. A replica that does not lead is never waited for."""
    directory = Directory()
    clock = Clock()
    shared = SharedEndpoints(directory, clock=clock)  # type: ignore[arg-type]
    directory.records.append({"identity": "other", "leading": False, "revision": 1})
    assert not shared.behind(7)
    directory.records.append({"identity": "leader", "leading": True, "revision": 6})
    assert shared.behind(7)
    clock.now += 1
    assert shared.behind(7)
    directory.records[2]["revision"] = 7
    assert not shared.behind(7)
    directory.records[2]["revision"] = 8
    assert shared.behind(9)
    clock.now += MAX_LAG + 0.1
    assert not shared.behind(9)  # a slow or dead leader holds nothing back for long
    assert not shared.behind(10)
    directory.records[2]["revision"] = 10
    assert not shared.behind(10)
    assert shared.behind(11)  # caught up: waiting again from here


def test_a_departed_leaders_pods_are_left_running_and_a_warning_names_them(
        caplog: Any) -> None:
    """This replica cannot prove a departed leader's pods to be that control plane's
    processes, so it stops none of them; it says so once, naming them, when the leader's
    record goes (and nothing when a replica without pods departs)."""
    directory = Directory()
    shared = SharedEndpoints(directory, keep_departed=30.0, clock=Clock())  # type: ignore[arg-type]
    directory.records += [{"identity": "leader", "workloads": [record(POD)]},
                          {"identity": "idle", "workloads": []}]
    shared.others()
    with caplog.at_level(logging.WARNING, logger="meshpilot.server.shared_endpoints"):
        del directory.records[1:]  # both died
        shared.others()
        shared.others()
    (warning,) = caplog.messages
    assert "replica leader left" in warning and "default/myapp-v1-0" in warning
    assert "not stopped from here" in warning

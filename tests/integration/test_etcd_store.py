"""The etcd store across processes and member failures: what SQLite cannot show.

Each case follows etcd's own guarantees as its documentation states them: a transaction
is atomic and serialisable; a watch delivers every event after its start revision, in
order, once; a cluster of three keeps accepting writes with one member down (a majority
remains), and clients move to another member."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.builders import stored, virtual_service
from tests.conftest import wait_for
from tests.etcd_cluster import Cluster, running

from meshpilot.server.api import create_app
from meshpilot.server.config_service import ConfigService
from meshpilot.store import Conflict, ObjectKey, Put, Refused, Unavailable
from meshpilot.store.election import Election
from meshpilot.store.etcd import EtcdStore

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
"""
KEY = ObjectKey("networking.istio.io", "VirtualService", "default", "a")


def test_a_replica_sees_another_replicas_commits_live_and_in_order(
        etcd_server: Cluster, etcd_prefix: str) -> None:
    """Two stores on one cluster and prefix (two control-plane replicas): one's watch
    delivers the other's commits, each whole, in revision order."""
    with EtcdStore(etcd_server.endpoints, prefix=etcd_prefix) as one, \
            EtcdStore(etcd_server.endpoints, prefix=etcd_prefix) as two:
        watch = one.watch()
        revisions = []
        for i in range(5):
            results = two.commit([stored(virtual_service(f"s{i}")),
                                  stored(virtual_service(f"t{i}"))])
            revisions.append(results[0].object.resource_version)  # type: ignore[union-attr]
        got = [watch.get(timeout=5) for _ in range(10)]
        assert [(e.resource_version, e.object.key.name) for e in got if e] == [
            (rev, name) for i, rev in enumerate(revisions) for name in (f"s{i}", f"t{i}")]
        assert one.revision() == two.revision() == revisions[-1]
        watch.close()


def test_a_closed_watch_lets_go_of_its_thread_and_connection(
        etcd_server: Cluster, etcd_prefix: str) -> None:
    """Every API watch has an etcd watch stream and a thread behind it: closing the watch
    (or the store) ends both at once, so watches that come and go leak nothing."""
    def feeds() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "etcd-watch"}

    others = feeds()  # other tests' feeds may still be ending: not counted
    store = EtcdStore(etcd_server.endpoints, prefix=etcd_prefix)
    watches = [store.watch() for _ in range(4)]
    mine = feeds() - others
    assert len(mine) == 4
    for watch in watches[:2]:
        watch.close()
    wait_for(lambda: sum(t.is_alive() for t in mine) == 2, timeout=5,
             message="two feeds end")
    store.close()
    wait_for(lambda: not any(t.is_alive() for t in mine), timeout=5,
             message="every feed ends")
    assert all(w.closed for w in watches)


def test_concurrent_conditional_writes_from_two_replicas_one_wins(
        etcd_server: Cluster, etcd_prefix: str) -> None:
    """Optimistic concurrency across processes: both replicas ask for the same expected
    resourceVersion; etcd's transaction lets exactly one through, the other is a
    Conflict naming the revision it lost to."""
    stores = [EtcdStore(etcd_server.endpoints, prefix=etcd_prefix) for _ in range(2)]
    try:
        first = stores[0].commit([stored(virtual_service("a"))])[0].object
        assert first is not None
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def write(store: EtcdStore, host: str) -> None:
            barrier.wait()
            try:
                store.commit([stored(virtual_service("a", hosts=[host]),
                                     expected_resource_version=first.resource_version)])
                outcomes.append("ok")
            except Conflict as exc:
                assert exc.expected == first.resource_version
                outcomes.append("conflict")

        threads = [threading.Thread(target=write, args=(s, f"h{i}.example.com"))
                   for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert sorted(outcomes) == ["conflict", "ok"]
        assert stores[1].revision() == first.resource_version + 1
    finally:
        for s in stores:
            s.close()


def test_a_commit_beyond_etcds_limits_is_refused_whole_and_says_which_limit(
        etcd_server: Cluster, etcd_prefix: str) -> None:
    """etcd refuses a transaction with more operations than its --max-txn-ops (1024 in
    the tests' etcd): the store reports that, with the flag to raise, and writes
    nothing."""
    with EtcdStore(etcd_server.endpoints, prefix=etcd_prefix) as store:
        many = [stored(virtual_service(f"s{i}")) for i in range(1100)]
        with pytest.raises(Refused) as exc:
            store.commit(many)
        assert "--max-txn-ops 1102" in str(exc.value)
        assert "nothing was written" in str(exc.value)
        assert store.list() == [] and store.revision() == 0


@pytest.fixture
def three_members(tmp_path: Path) -> Iterator[Cluster]:
    with running(tmp_path / "etcd3", size=3, name="m") as cluster:
        yield cluster


def test_writes_and_watches_continue_when_an_etcd_member_is_killed(
        three_members: Cluster) -> None:
    """A 3-member cluster loses one member to SIGKILL (the one the store talks to
    first): commits keep succeeding on the remaining majority and the watch that was
    open goes on, reconnected to a live member, missing nothing."""
    store = EtcdStore(three_members.endpoints, prefix="/mesh/")
    try:
        watch = store.watch()
        store.commit([stored(virtual_service("before"))])
        three_members.members[0].kill()
        names = [f"after{i}" for i in range(5)]
        for name in names:
            store.commit([stored(virtual_service(name))])
        assert {o.key.name for o in store.list()} == {"before", *names}
        got = [watch.get(timeout=15) for _ in range(6)]
        assert [e.object.key.name for e in got if e] == ["before", *names]
        # with a second member gone there is no majority: a write fails, and says why
        three_members.members[1].kill()
        with pytest.raises(Unavailable) as exc:
            EtcdStore(three_members.endpoints, prefix="/mesh/", retry_seconds=1).commit(
                [Put(virtual_service("lost"), KEY)])
        assert "could not be reached" in str(exc.value)
        watch.close()
    finally:
        store.close()


def test_one_of_two_candidates_leads_and_a_stepped_down_leader_is_replaced_at_once(
        etcd_server: Cluster, etcd_prefix: str) -> None:
    """etcd's election recipe: the key is created under the winner's lease only if it
    does not exist; revoking the lease (a graceful stop) deletes it, and the other
    candidate, polling, takes the lead without waiting for a lease to lapse."""
    key = etcd_prefix + "leader"
    changes: list[tuple[str, bool]] = []
    first = Election(etcd_server.endpoints, key, "first")
    second = Election(etcd_server.endpoints, key, "second")
    try:
        first.start(lambda leading: changes.append(("first", leading)))
        wait_for(first.leading, timeout=5, message="the first candidate leads")
        second.start(lambda leading: changes.append(("second", leading)))
        time.sleep(0.6)  # a few of the second candidate's polls
        assert not second.leading() and second.leader() == "first"
        stopped = time.monotonic()
        first.stop()
        wait_for(second.leading, timeout=5, message="the second candidate leads")
        assert time.monotonic() - stopped < 2.0  # no lease had to expire
        assert second.leader() == "second"
        assert changes == [("first", True), ("first", False), ("second", True)]
    finally:
        first.stop()  # a no-op when already stopped
        second.stop()


def test_etcd_out_of_reach_is_503_naming_it_for_applies_and_reads(tmp_path: Path) -> None:
    """With no etcd member answering, an apply and a read through the API are 503 with
    MP0060 and the endpoints, not server errors; nothing is written."""
    with running(tmp_path / "alone", name="alone") as cluster:
        store = EtcdStore(cluster.endpoints, prefix="/mesh/", retry_seconds=0.5)
        service = ConfigService(store)
        client = TestClient(create_app(service, "t0ken", {}),
                            headers={"Authorization": "Bearer t0ken"})
        try:
            assert service.apply([("svc.yaml", SERVICE)]).status == 200
            cluster.members[0].kill()
            outcome = service.apply([("svc.yaml", SERVICE.replace("8080", "9090"))])
            assert outcome.status == 503
            [diagnostic] = outcome.diagnostics
            assert diagnostic.code == "MP0060"
            assert cluster.members[0].endpoint.removeprefix("http://") in diagnostic.message
            read = client.get("/api/v1/namespaces/default/services")
            assert read.status_code == 503
            assert read.json()["diagnostics"][0]["code"] == "MP0060"
        finally:
            client.close()
            store.close()

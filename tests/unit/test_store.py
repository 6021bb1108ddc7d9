"""Tests of the durable config store (meshpilot.store), run on both implementations:
SQLite and a real etcd. Revisions are written ``rv(n)``, the n-th commit of the test:
etcd's revisions are the cluster's (shared by every test), SQLite's start at 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.builders import stored, virtual_service
from tests.conftest import wait_for
from tests.unit.conftest import Backend

from meshpilot.store import (
    Conflict,
    Delete,
    Expired,
    NotFound,
    ObjectKey,
    Put,
    PutStatus,
    SqliteStore,
    Stale,
    WatchEvent,
)
from meshpilot.store.protocol import ConfigStore

GROUP = "networking.istio.io"
KIND = "VirtualService"


def key(name: str, namespace: str = "default") -> ObjectKey:
    return ObjectKey(GROUP, KIND, namespace, name)


def vs(name: str, hosts: list[str] | None = None, **metadata: Any) -> dict[str, Any]:
    return virtual_service(name, hosts=hosts or [f"{name}.example.com"], **metadata)


def put(name: str, hosts: list[str] | None = None, **kw: Any) -> Put:
    return stored(vs(name, hosts), **kw)


@pytest.fixture
def store(any_store: ConfigStore) -> ConfigStore:
    return any_store


@pytest.fixture
def rv(backend: Backend) -> Any:
    return backend.rv


def test_empty_store(store: ConfigStore) -> None:
    assert store.revision() == 0
    assert store.get(key("a")) is None
    assert store.list() == []
    assert store.events_since(0) == []


def test_create_fills_metadata(store: ConfigStore, rv: Any) -> None:
    body = vs("a")
    body["metadata"]["namespace"] = "ignored"  # the key wins
    (result,) = store.commit([Put(body, key("a"))])
    assert result.action == "created"
    obj = result.object
    assert obj is not None
    assert obj.resource_version == rv(1) and obj.generation == 1
    meta = obj.body["metadata"]
    assert meta["resourceVersion"] == str(rv(1))
    assert meta["generation"] == 1
    assert meta["name"] == "a" and meta["namespace"] == "default"
    assert len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z")
    assert body["metadata"]["namespace"] == "ignored"  # caller's dict not mutated
    got = store.get(key("a"))
    assert got is not None and got.body == obj.body
    assert store.revision() == rv(1)


def test_update_unchanged_delete_round_trip(store: ConfigStore, rv: Any) -> None:
    created = store.commit([put("a")])[0].object
    assert created is not None
    uid = created.body["metadata"]["uid"]
    ts = created.body["metadata"]["creationTimestamp"]

    # resubmitting what get() returned (with server metadata) is unchanged
    (same,) = store.commit([Put(created.body, key("a"))])
    assert same.action == "unchanged"
    assert same.object is not None and same.object.resource_version == rv(1)
    assert store.revision() == rv(1)
    assert store.commit([put("a")])[0].action == "unchanged"

    (updated,) = store.commit([put("a", ["other.example.com"])])
    assert updated.action == "configured"
    assert updated.object is not None
    assert updated.object.resource_version == rv(2) and updated.object.generation == 2
    assert updated.object.body["metadata"]["uid"] == uid
    assert updated.object.body["metadata"]["creationTimestamp"] == ts
    assert updated.object.body["spec"]["hosts"] == ["other.example.com"]

    (deleted,) = store.commit([Delete(key("a"))])
    assert deleted.action == "deleted"
    assert deleted.object is not None
    assert deleted.object.body["spec"]["hosts"] == ["other.example.com"]
    assert deleted.object.resource_version == rv(3)
    assert store.get(key("a")) is None
    assert store.revision() == rv(3)
    assert [e.type for e in store.events_since(0)] == ["ADDED", "MODIFIED", "DELETED"]


def test_revision_shared_within_commit_and_monotonic(store: ConfigStore, rv: Any) -> None:
    results = store.commit([put("a"), put("b"), put("c")])
    assert {r.object.resource_version for r in results if r.object} == {rv(1)}
    results = store.commit([put("a"), put("b", ["x"]), Delete(key("c"))])
    assert [r.action for r in results] == ["unchanged", "configured", "deleted"]
    assert results[0].object is not None and results[0].object.resource_version == rv(1)
    assert results[1].object is not None and results[1].object.resource_version == rv(2)
    assert store.revision() == rv(2)
    events = store.events_since(rv(1))
    assert [(e.type, e.object.key.name, e.resource_version) for e in events] == [
        ("MODIFIED", "b", rv(2)),
        ("DELETED", "c", rv(2)),
    ]


def test_list_filters_and_order(store: ConfigStore) -> None:
    store.commit(
        [
            Put(vs("z"), ObjectKey(GROUP, KIND, "b", "z")),
            Put(vs("y"), ObjectKey(GROUP, KIND, "a", "y")),
            Put(vs("x"), ObjectKey(GROUP, "Gateway", "a", "x")),
            Put({"kind": "Service", "metadata": {}}, ObjectKey("", "Service", "a", "s")),
        ]
    )
    keys = [o.key for o in store.list()]
    assert keys == sorted(keys)
    assert [o.key.name for o in store.list(group="")] == ["s"]
    assert [o.key.name for o in store.list(kind=KIND)] == ["y", "z"]
    assert [o.key.name for o in store.list(GROUP, KIND, "a")] == ["y"]
    assert [o.key.name for o in store.list(namespace="a")] == ["s", "x", "y"]


def test_generation_bumps_only_on_spec_change(store: ConfigStore, rv: Any) -> None:
    store.commit([put("a")])
    (labelled,) = store.commit([Put(vs("a", labels={"app": "web"}), key("a"))])
    assert labelled.action == "configured"
    assert labelled.object is not None
    assert labelled.object.resource_version == rv(2) and labelled.object.generation == 1
    (annotated,) = store.commit(
        [Put(vs("a", labels={"app": "web"}, annotations={"n": "1"}), key("a"))]
    )
    assert annotated.object is not None and annotated.object.generation == 1
    (spec,) = store.commit([Put(vs("a", ["b"], labels={"app": "web"}), key("a"))])
    assert spec.object is not None
    assert spec.object.generation == 2 and spec.object.resource_version == rv(4)
    assert spec.object.body["metadata"]["generation"] == 2
    # extra top-level fields count as spec, too
    body = vs("a", ["b"], labels={"app": "web"})
    body["extra"] = 1
    (extra,) = store.commit([Put(body, key("a"))])
    assert extra.object is not None and extra.object.generation == 3


def test_status_preserved_on_put_and_written_by_put_status(store: ConfigStore, rv: Any) -> None:
    body = vs("a")
    body["status"] = {"ignored": True}
    created = store.commit([Put(body, key("a"))])[0].object
    assert created is not None and "status" not in created.body

    (st,) = store.commit([PutStatus(key("a"), {"phase": "Ready"})])
    assert st.action == "configured"
    assert st.object is not None
    assert st.object.body["status"] == {"phase": "Ready"}
    assert st.object.resource_version == rv(2) and st.object.generation == 1

    # same status again: no-op
    assert store.commit([PutStatus(key("a"), {"phase": "Ready"})])[0].action == "unchanged"
    assert store.revision() == rv(2)

    # a Put that only differs in status is unchanged and keeps the stored status
    body = vs("a")
    body["status"] = {"phase": "Bogus"}
    assert store.commit([Put(body, key("a"))])[0].action == "unchanged"

    (upd,) = store.commit([put("a", ["new"])])
    assert upd.object is not None
    assert upd.object.body["status"] == {"phase": "Ready"}
    assert upd.object.generation == 2
    got = store.get(key("a"))
    assert got is not None and got.body["status"] == {"phase": "Ready"}


def test_put_status_of_missing_is_not_found(store: ConfigStore) -> None:
    with pytest.raises(NotFound) as exc:
        store.commit([PutStatus(key("nope"), {})])
    assert exc.value.key == key("nope")


def test_conflict_on_stale_resource_version(store: ConfigStore, rv: Any) -> None:
    store.commit([put("a")])
    store.commit([put("a", ["v2"])])
    with pytest.raises(Conflict) as exc:
        store.commit([put("a", ["v3"], expected_resource_version=rv(1))])
    assert (exc.value.key, exc.value.expected, exc.value.actual) == (key("a"), rv(1), rv(2))
    assert f"resourceVersion {rv(1)}" in str(exc.value) and str(rv(2)) in str(exc.value)
    assert "default/a" in str(exc.value)
    (ok,) = store.commit([put("a", ["v3"], expected_resource_version=rv(2))])
    assert ok.action == "configured"
    with pytest.raises(Conflict):
        store.commit([Delete(key("a"), expected_resource_version=rv(2))])
    assert store.commit([Delete(key("a"), expected_resource_version=rv(3))])[0].action == "deleted"


def test_expected_zero_means_must_not_exist(store: ConfigStore, rv: Any) -> None:
    assert store.commit([put("a", expected_resource_version=0)])[0].action == "created"
    with pytest.raises(Conflict) as exc:
        store.commit([put("a", ["x"], expected_resource_version=0)])
    assert (exc.value.expected, exc.value.actual) == (0, rv(1))
    with pytest.raises(Conflict) as exc:
        store.commit([put("b", expected_resource_version=rv(5))])
    assert exc.value.actual == 0


@pytest.mark.parametrize(
    "bad",
    [
        put("a", ["x"], expected_resource_version=0),  # Conflict
        Delete(key("missing")),  # NotFound
        PutStatus(key("missing"), {"x": 1}),  # NotFound
    ],
)
def test_failed_commit_writes_nothing(store: ConfigStore, bad: Any, rv: Any) -> None:
    store.commit([put("a"), put("b")])
    before = [(o.key, o.body) for o in store.list()]
    watch = store.watch()
    changes = [put("b", ["changed"]), put("c"), Delete(key("a")), bad]
    if isinstance(bad, Put):
        changes = [put("b", ["changed"]), put("c"), bad]
    with pytest.raises((Conflict, NotFound)):
        store.commit(changes)
    assert [(o.key, o.body) for o in store.list()] == before
    assert store.revision() == rv(1)
    assert len(store.events_since(0)) == 2
    assert watch.get(timeout=0.05) is None
    # the store is still usable afterwards
    assert store.commit([put("c")])[0].action == "created"
    assert store.revision() == rv(2)


def test_a_commit_based_on_an_older_revision_is_stale_and_writes_nothing(
        store: ConfigStore, rv: Any) -> None:
    """What a validating writer relies on: "commit only onto the state I checked"."""
    store.commit([put("a")])
    store.commit([put("b")])
    with pytest.raises(Stale) as exc:
        store.commit([put("c")], unchanged_since=rv(1))
    assert (exc.value.based_on, exc.value.actual) == (rv(1), rv(2))
    assert store.get(key("c")) is None and store.revision() == rv(2)
    (done,) = store.commit([put("c")], unchanged_since=rv(2))
    assert done.action == "created" and store.revision() == rv(3)


def test_delete_missing_is_not_found(store: ConfigStore) -> None:
    with pytest.raises(NotFound):
        store.commit([Delete(key("a"))])
    assert store.revision() == 0


def test_same_key_twice_in_one_commit_is_value_error(store: ConfigStore) -> None:
    with pytest.raises(ValueError):
        store.commit([put("a"), put("a", ["x"])])
    assert store.revision() == 0
    assert store.commit([]) == []


def test_reopen_sees_same_data_and_revision(backend: Backend) -> None:
    with backend.open() as s:
        s.commit([put("a"), put("b")])
        s.commit([PutStatus(key("a"), {"ok": True})])
        s.commit([Delete(key("b"))])
        before = s.list()
    with backend.open() as s:
        assert s.revision() == backend.rv(3)
        assert [(o.key, o.body, o.resource_version, o.generation) for o in s.list()] == [
            (o.key, o.body, o.resource_version, o.generation) for o in before
        ]
        assert [e.type for e in s.events_since(0)] == ["ADDED", "ADDED", "MODIFIED", "DELETED"]
        assert s.commit([put("c")])[0].object.resource_version == backend.rv(4)  # type: ignore[union-attr]


def test_watch_from_now(store: ConfigStore, rv: Any) -> None:
    store.commit([put("old")])
    watch = store.watch()
    assert watch.get(timeout=0.05) is None
    store.commit([put("a")])
    store.commit([PutStatus(key("a"), {"s": 1})])
    store.commit([put("a")])  # unchanged: no event
    store.commit([Delete(key("a"))])
    events = [watch.get(timeout=1) for _ in range(3)]
    assert [(e.type, e.resource_version) for e in events if e] == [
        ("ADDED", rv(2)),
        ("MODIFIED", rv(3)),
        ("DELETED", rv(4)),
    ]
    assert watch.get(timeout=0.05) is None
    watch.close()
    store.commit([put("b")])
    assert watch.get(timeout=0.05) is None
    assert list(watch) == []


def test_watch_resume_since_no_gap_no_dup(store: ConfigStore, rv: Any) -> None:
    for i in range(5):
        store.commit([put(f"o{i}")])
    watch = store.watch(since=rv(2))
    store.commit([put("o5")])
    store.commit([put("o6"), put("o7")])
    got: list[WatchEvent] = []
    # six events are due; a loaded machine may deliver etcd's later than 0.2 s apart, so
    # wait up to 5 s for each of them, then briefly for a seventh that must not come
    while len(got) < 6 and (e := watch.get(timeout=5)) is not None:
        got.append(e)
    while (e := watch.get(timeout=0.2)) is not None:
        got.append(e)
    assert [(e.resource_version, e.object.key.name) for e in got] == [
        (rv(3), "o2"),
        (rv(4), "o3"),
        (rv(5), "o4"),
        (rv(6), "o5"),
        (rv(7), "o6"),
        (rv(7), "o7"),
    ]
    assert all(e.object.body["metadata"]["resourceVersion"] == str(e.resource_version) for e in got)
    watch.close()


def test_watch_since_future_revision_skips_until_then(store: ConfigStore, rv: Any) -> None:
    watch = store.watch(since=rv(2))
    for name in ("a", "b", "c"):
        store.commit([put(name)])
    e = watch.get(timeout=1)
    assert e is not None and e.resource_version == rv(3)
    watch.close()


def test_watch_sees_commits_from_other_thread(store: ConfigStore, rv: Any) -> None:
    watch = store.watch()
    received: list[WatchEvent] = []

    def consume() -> None:
        for event in watch:
            received.append(event)
            if len(received) == 20:
                return

    consumer = threading.Thread(target=consume)
    consumer.start()

    def produce(prefix: str) -> None:
        for i in range(10):
            store.commit([put(f"{prefix}{i}")])

    producers = [threading.Thread(target=produce, args=(p,)) for p in ("x", "y")]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    consumer.join(timeout=10)
    assert not consumer.is_alive()
    assert [e.resource_version for e in received] == [rv(n) for n in range(1, 21)]
    watch.close()


def test_close_ends_blocked_iteration(backend: Backend) -> None:
    s = backend.open()
    watch = s.watch()
    done = threading.Event()

    def consume() -> None:
        for _ in watch:
            pass
        done.set()

    t = threading.Thread(target=consume)
    t.start()
    s.close()
    assert done.wait(5)
    t.join()
    with pytest.raises(RuntimeError):
        s.get(key("a"))


def test_concurrent_commits_from_8_threads(store: ConfigStore, rv: Any) -> None:
    revisions: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                (r,) = store.commit([put(f"t{n}-{i}")])
                assert r.object is not None
                with lock:
                    revisions.append(r.object.resource_version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(revisions) == [rv(n) for n in range(1, 201)]
    assert store.revision() == rv(200)
    assert len(store.list()) == 200


def test_concurrent_conditional_updates_one_wins(store: ConfigStore, rv: Any) -> None:
    store.commit([put("a")])
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        try:
            store.commit([put("a", [f"h{n}"], expected_resource_version=rv(1))])
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
    assert store.revision() == rv(2)


def test_event_history_compaction(backend: Backend) -> None:
    rv = backend.rv
    with backend.open(event_history=5) as s:
        for i in range(10):
            s.commit([put(f"o{i}")])
        with pytest.raises(Expired):
            s.events_since(0)
        with pytest.raises(Expired):
            s.watch(since=rv(1))
        events = s.events_since(rv(5))
        assert [e.resource_version for e in events] == [rv(n) for n in (6, 7, 8, 9, 10)]
        # a multi-object revision is kept or dropped as a whole
        s.commit([put("p1"), put("p2"), put("p3")])
        kept = [e.resource_version for e in s.events_since(rv(8))]
        assert kept == [rv(n) for n in (9, 10, 11, 11, 11)]
        with pytest.raises(Expired):
            s.events_since(rv(7))
        assert len(s.list()) == 13  # objects are never compacted


def test_wal_mode_enabled(tmp_path: Path) -> None:
    import sqlite3

    SqliteStore(tmp_path / "store.db").close()

    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_committed_change_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    code = textwrap.dedent(
        f"""
        import sys, time
        from meshpilot.store import ObjectKey, Put, SqliteStore
        s = SqliteStore({str(path)!r})
        k = ObjectKey({GROUP!r}, {KIND!r}, "default", "durable")
        s.commit([Put({{"kind": {KIND!r}, "spec": {{"x": 1}}}}, k)])
        print("committed", flush=True)
        time.sleep(60)
        """
    )
    src = Path(__file__).resolve().parents[2] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "committed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with SqliteStore(path) as s:
        obj = s.get(ObjectKey(GROUP, KIND, "default", "durable"))
        assert obj is not None
        assert obj.body["spec"] == {"x": 1}
        assert obj.resource_version == 1
        assert s.revision() == 1


def test_a_bounded_watch_is_cut_off_between_commits_and_keeps_what_it_queued(
        store: ConfigStore) -> None:
    """A watch with a limit (an API client's) that falls more than ``limit`` events
    behind stops receiving; the commits queued before stay readable, and the cut falls
    between commits, so resuming after the last revision read misses nothing."""
    watch = store.watch(limit=4)
    store.commit([put("a")])
    store.commit([put("b"), put("c")])
    store.commit([put("d"), put("e")])  # 3 queued + 2 > 4: cut off before this commit
    # (etcd's watch delivers after the commit returns, SQLite's before)
    wait_for(lambda: watch.overflowed, timeout=5, message="the watch is cut off")
    read = list(watch)
    assert [e.object.key.name for e in read] == ["a", "b", "c"]
    resumed = store.watch(since=read[-1].resource_version, limit=4)
    assert [resumed.get(timeout=1).object.key.name for _ in range(2)] == ["d", "e"]
    unbounded = store.watch(since=0)
    assert len([unbounded.get(timeout=1) for _ in range(5)]) == 5 and not unbounded.overflowed
    for w in (watch, resumed, unbounded):
        w.close()

"""The API's watch cases of test_api.py, run again on a control plane
whose store is etcd (``--store etcd://...``), plus what only replicas can show: a
watch on one replica streams what is applied through another.

The cases follow the Kubernetes API's watch contract (events in resourceVersion order
after the one given, a list's resourceVersion as the start of a watch)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from tests.conftest import ControlPlane, wait_for
from tests.etcd_cluster import Cluster
from tests.integration import test_api as on_sqlite
from tests.integration.test_api import VS_PATH, _drain, _watch_in_thread, apply, vs

LEADER = "/apis/meshpilot.io/v1/leader"


@pytest.fixture
def etcd_url(etcd_server: Cluster, etcd_prefix: str) -> str:
    return etcd_server.url + etcd_prefix.rstrip("/")


@pytest.fixture
def control_plane(control_plane_factory: Callable[..., ControlPlane],
                  etcd_url: str) -> ControlPlane:
    """A config-plane control plane on etcd (the API and store; no proxies needed)."""
    return control_plane_factory("state", args=["--no-mesh", "--store", etcd_url])


test_watch_streams_added_modified_deleted_in_order = (
    on_sqlite.test_watch_streams_added_modified_deleted_in_order)
test_watch_resumes_from_an_old_resource_version = (
    on_sqlite.test_watch_resumes_from_an_old_resource_version)


def test_a_watch_on_one_replica_streams_what_another_replica_applied(
        control_plane: ControlPlane, control_plane_factory: Callable[..., ControlPlane],
        etcd_url: str) -> None:
    other = control_plane_factory("other", args=["--no-mesh", "--store", etcd_url])
    rv = control_plane.client.get(VS_PATH).json()["metadata"]["resourceVersion"]
    thread, events = _watch_in_thread(control_plane, VS_PATH, rv, count=2)
    assert other.client is not None
    assert apply(other.client, vs("from-other")).status_code == 200
    assert apply(other.client, vs("from-other", timeout="2s")).status_code == 200
    status, *lines = _drain(thread, events)
    assert status == ("status", 200)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "from-other"), ("MODIFIED", "from-other")]
    # both replicas answer reads with the same object and resourceVersion
    mine = control_plane.client.get(f"{VS_PATH}/from-other").json()["metadata"]
    theirs = other.client.get(f"{VS_PATH}/from-other").json()["metadata"]
    assert mine["resourceVersion"] == theirs["resourceVersion"] == \
        lines[1]["object"]["metadata"]["resourceVersion"]


def test_a_leader_stopped_gracefully_hands_over_at_once(
        control_plane: ControlPlane, control_plane_factory: Callable[..., ControlPlane],
        etcd_url: str) -> None:
    """``meshpilot down`` (SIGTERM) on the leader revokes its lease: the other replica
    leads within a poll or two of the leader stepping down, not once the lease's 3 s
    have lapsed (client-go's ReleaseOnCancel, etcd's Resign). Timed between the two
    processes' own log lines, so a slow shutdown on a loaded machine does not count."""
    other = control_plane_factory("other", args=["--no-mesh", "--store", etcd_url])
    assert other.client is not None
    first = control_plane.client.get(LEADER).json()
    assert first["leading"] and other.client.get(LEADER).json()["leader"] == first["identity"]
    assert control_plane.terminate() == 0
    wait_for(lambda: other.client.get(LEADER).json()["leading"], timeout=10, interval=0.05,
             message="the other replica leads")
    stepped_down = _logged_at(control_plane.log(), "is no longer the control plane's leader")
    took_over = _logged_at(other.log(), "is now the control plane's leader")
    # with an expired lease instead, at least 3 s - 0.5 s (a renewal interval) would pass
    assert 0 <= took_over - stepped_down < 1.5, (stepped_down, took_over)


def _logged_at(log: str, message: str) -> float:
    """When the last line of ``log`` holding ``message`` was written (its asctime)."""
    line = [line for line in log.splitlines() if message in line][-1]
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()

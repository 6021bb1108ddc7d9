"""Istio's counters across control-plane restarts, end to end: real Envoys, real requests,
/metrics read before and after. Prometheus' "counter" type only goes up (a decrease is
a reset), so a restart of the control plane, crash or graceful, must neither lower nor
restart any series, even one that already carries a sidecar restart's offset."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from meshpilot.statedir import StateDir
from tests.conftest import wait_for
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given, When
from tests.e2e.telemetry_helpers import Prometheus, fetch_metrics, metric_sum, send
from tests.e2e.test_telemetry import _sidecar_pid

Series = dict[tuple[tuple[str, str], ...], float]


def _counters(mesh: Mesh) -> Series:
    """Every istio_requests_total series on /metrics, by its labels."""
    return {tuple(sorted(labels.items())): value
            for name, labels, value in fetch_metrics(mesh.cp_endpoints()["metrics"])
            if name == "istio_requests_total"}


def _v1_count(mesh: Mesh) -> float:
    return metric_sum(fetch_metrics(mesh.cp_endpoints()["metrics"]), "istio_requests_total",
                      reporter="destination", destination_workload="myapp-v1")


def _none_lower(before: Series, after: Series) -> list[str]:
    return [f"{dict(k).get('pod')} {dict(k).get('reporter')}: {v} -> {after.get(k)}"
            for k, v in before.items() if after.get(k, -1.0) < v]


def test_counters_survive_control_plane_restarts(mesh: Mesh, given: Given, when: When,
                                                 tmp_path: Path) -> None:
    """Given counted requests and a sidecar restart (its series now above what its new
    Envoy reports), when the control plane is killed and started again, and later
    stopped and started gracefully, then no series on /metrics is lower than before,
    the count goes on from where it was, and a real Prometheus scraping throughout saw
    no counter reset (PromQL ``resets()``)."""
    given.applied(myapp.version("v1"), myapp.service(), myapp.subsets("v1"))
    with Prometheus(tmp_path / "prometheus", mesh.endpoints["metrics_http_sd"]) as prom:
        prom.wait_target_up()
        _restarts(mesh, when)
        query = 'sum(istio_requests_total{reporter="destination",destination_workload="myapp-v1"})'
        wait_for(lambda: prom.scalar(query) == 35, 15, interval=0.3,
                 message=f"Prometheus to hold 35 (at {prom.scalar(query)})")
        assert prom.scalar("sum(resets(istio_requests_total[5m]))") == 0


def _restarts(mesh: Mesh, when: When) -> None:
    assert send(mesh.http, URL, 20) == {200: 20}
    wait_for(lambda: _v1_count(mesh) == 20, 10, interval=0.2, message="the first requests")
    (pod,) = mesh.pods_of("myapp-v1")
    name = pod["metadata"]["name"]
    old_pid = _sidecar_pid(mesh, name)
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: _sidecar_pid(mesh, name) not in (None, old_pid), 20, interval=0.2,
             message="the sidecar restarted")
    mesh.converge()
    wait_for(lambda: send(mesh.http, URL, 1) == {200: 1}, 20, interval=0.2,
             message="traffic after the sidecar restart")
    assert send(mesh.http, URL, 9) == {200: 9}
    wait_for(lambda: _v1_count(mesh) == 30, 10, interval=0.2, message="30 counted")
    before = _counters(mesh)

    # a crash: the data plane keeps running and is adopted
    when.control_plane_killed().control_plane_started().converges()
    series_file = StateDir(Path(mesh.cp.state_dir)).telemetry_file
    assert stat.S_IMODE(series_file.stat().st_mode) == 0o600
    after_crash = wait_for(lambda: (s := _counters(mesh)) and not _none_lower(before, s) and s,
                           15, interval=0.3,
                           message=f"no series lower after the crash: "
                                   f"{_none_lower(before, _counters(mesh))}")
    assert _v1_count(mesh) == 30
    assert send(mesh.http, URL, 5) == {200: 5}
    wait_for(lambda: _v1_count(mesh) == 35, 10, interval=0.2,
             message=f"the count to go on from 30 (at {_v1_count(mesh)})")
    assert not _none_lower(after_crash, _counters(mesh))

    # a graceful restart: every pod and proxy is stopped; the series of the stopped pod
    # stay, with their values, for Prometheus' staleness window
    before_stop = _counters(mesh)
    assert mesh.cp.terminate() == 0
    when.control_plane_started().converges()
    assert not _none_lower(before_stop, _counters(mesh))
    assert _v1_count(mesh) == 35

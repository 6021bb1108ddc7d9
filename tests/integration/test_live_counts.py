"""Fail-fast's live read of a canary's sidecars, against a real Envoy's admin socket.

The judgement counts failures from a baseline taken before the canary's first request.
A sidecar that has served nothing yet has no request counters at all: that must read as
zero requests (a baseline), not as "cannot be read", or the first requests and failures
after the first weight become the baseline and are never judged (measured with
``benchmarks/rollback.py --timeline``: a first failure swallowed so, the rollback waited
for a third). A sidecar that cannot be read makes the whole read unreadable: a sum over
some of the pods would look like counters set back.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from tests.builders import sidecar_node, static_envoy_config

from meshpilot.mesh.model import MeshSnapshot
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port
from meshpilot.server.delivery_wiring import TelemetryTraffic
from meshpilot.telemetry import ProxyIdentity, Target
from meshpilot.telemetry.history import History
from meshpilot.telemetry.scraper import Scraper
from meshpilot.telemetry.store import SeriesStore

pytestmark = pytest.mark.timeout(60)


def test_a_sidecar_that_served_nothing_reads_as_zero_and_a_dead_one_as_unreadable(
        tmp_path: Path) -> None:
    node = sidecar_node("myapp-v2-abcde", "127.0.0.1", labels={"app": "myapp"},
                        workload="myapp")
    with EnvoyProcess(static_envoy_config(free_port(), upstream_port=free_port()), name="canary",
                      work_dir=tmp_path) as envoy:
        targets = [Target("canary", str(envoy.admin_socket), envoy.pid,
                          ProxyIdentity.from_node(node), node)]
        scraper = Scraper(lambda: targets, lambda: MeshSnapshot(1, {}, {}), SeriesStore(),
                          History())
        traffic = TelemetryTraffic(lambda: SimpleNamespace(scraper=scraper))  # type: ignore[arg-type,return-value]
        try:
            assert traffic.live_counts("default", "myapp") == (0, 0)
            assert traffic.live_counts("default", "other") is None  # no such sidecar
            gone = sidecar_node("myapp-v2-fghij", "127.0.0.2", labels={"app": "myapp"},
                                workload="myapp")
            targets.append(Target("gone", str(tmp_path / "no-such.sock"), 1,
                                  ProxyIdentity.from_node(gone), gone))
            assert traffic.live_counts("default", "myapp") is None
        finally:
            scraper.stop()

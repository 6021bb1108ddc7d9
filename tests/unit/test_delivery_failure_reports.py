"""The delivery loop steps a Canary as soon as its canary's sidecars report a failed
request (fail-fast judges on arrival), tick by tick: only while the Canary is hot (its
canary holds traffic under analysis), only for reports from its target workload, and the
report is only a trigger (the tick reads the counters itself)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.builders import canary as canary_body
from tests.unit.test_delivery_wiring import deployment, wait_for

from meshpilot.delivery.machine import Decision
from meshpilot.delivery.state import RolloutState
from meshpilot.server.config_service import ConfigService
from meshpilot.server.delivery_wiring import DeliveryLoop, StoreWriter, TelemetryTraffic
from meshpilot.store import SqliteStore


class Ticks:
    """The controller's ``tick``: the state each tick ends in, set by the test."""

    def __init__(self) -> None:
        self.state = RolloutState()
        self.calls: list[tuple[str, str]] = []

    def tick(self, namespace: str, name: str) -> Decision:
        self.calls.append((namespace, name))
        return Decision(self.state)

    def close(self, timeout: float) -> None:
        """Nothing queued to send."""


class Kicks:
    """The workers: which Canaries were asked for a tick."""

    def __init__(self) -> None:
        self.kicked: list[tuple[str, str]] = []

    def kick(self, namespace: str, name: str) -> None:
        self.kicked.append((namespace, name))


@pytest.fixture()
def loop(store: SqliteStore) -> Iterator[tuple[DeliveryLoop, Ticks, Kicks]]:
    StoreWriter(ConfigService(store)).apply([deployment(), canary_body(
        "myapp", port=8080, analysis={"interval": "1s", "metrics": []})])
    loop = DeliveryLoop(store, lambda: None, TelemetryTraffic(lambda: None), lambda _: None,
                        mesh_proxy="http://127.0.0.1:9", loadtester_port=0)
    ticks, kicks = Ticks(), Kicks()
    loop.controller = ticks  # type: ignore[assignment]
    loop.workers = kicks  # type: ignore[assignment]
    yield loop, ticks, kicks


def progressing(weight: int, started: bool = True) -> RolloutState:
    state = RolloutState()
    state.phase = "Progressing"
    state.analysis_started = started
    state.canary_weight = weight
    return state


def test_a_report_from_the_canary_steps_its_hot_canary_at_once(
        loop: tuple[DeliveryLoop, Ticks, Kicks]) -> None:
    delivery, ticks, kicks = loop
    delivery.failures_reported("default", "myapp", 1)  # before any tick: nothing is hot
    assert kicks.kicked == []
    ticks.state = progressing(weight=0, started=True)  # analysis started, no traffic yet
    delivery._tick_one("default", "myapp")
    delivery.failures_reported("default", "myapp", 1)
    assert kicks.kicked == []
    ticks.state = progressing(weight=10)  # its first weight: hot
    delivery._tick_one("default", "myapp")
    delivery.failures_reported("default", "myapp", 2)
    assert kicks.kicked == [("default", "myapp")]


def test_reports_from_other_workloads_step_nothing(
        loop: tuple[DeliveryLoop, Ticks, Kicks]) -> None:
    delivery, ticks, kicks = loop
    ticks.state = progressing(weight=10)
    delivery._tick_one("default", "myapp")
    for namespace, workload in (("default", "myapp-primary"), ("other", "myapp"),
                                ("default", "unrelated")):
        delivery.failures_reported(namespace, workload, 1)
    assert kicks.kicked == []


def test_once_rolled_back_reports_step_nothing(loop: tuple[DeliveryLoop, Ticks, Kicks]) -> None:
    delivery, ticks, kicks = loop
    ticks.state = progressing(weight=10)
    delivery._tick_one("default", "myapp")
    failed = RolloutState()
    failed.phase = "Failed"
    ticks.state = failed
    delivery._tick_one("default", "myapp")
    delivery.failures_reported("default", "myapp", 3)
    assert kicks.kicked == []


def test_a_canary_turning_hot_is_ticked_within_the_hot_tick_not_the_regular_one(
        store: SqliteStore) -> None:
    """The real loop: with the regular tick at 5 s, a Canary whose first tick gives its
    canary traffic is ticked again within a fraction of a second (the loop wakes every
    0.1 s to kick hot Canaries); its first weight used to wait for the next regular tick
    before fail-fast looked at it."""
    StoreWriter(ConfigService(store)).apply([deployment(), canary_body(
        "myapp", port=8080, analysis={"interval": "1s", "metrics": []})])
    delivery = DeliveryLoop(store, lambda: None, TelemetryTraffic(lambda: None),
                            lambda _: None, mesh_proxy="http://127.0.0.1:9",
                            loadtester_port=0, tick_seconds=5.0)
    ticks = Ticks()
    ticks.state = progressing(weight=10)
    delivery.controller = ticks  # type: ignore[assignment]
    delivery._thread.start()  # the loop alone: no load tester
    try:
        wait_for("three ticks", lambda: len(ticks.calls) >= 3, limit_s=2.0)
    finally:
        delivery.stop()
    assert set(ticks.calls) == {("default", "myapp")}

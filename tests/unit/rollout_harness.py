"""The rollout controller over in-memory fakes of its own ports, stepped with a fake clock
(as Flagger's scheduler tests do): what the controller, webhook and check tests drive.

The target is Flagger's podinfo (the image tag is the revision); the Canary has Flagger's
defaults for its docs: 10 s interval, threshold 2, 10% steps up to 50%, both built-in
checks over 1 m.
"""

from __future__ import annotations

from typing import Any

from tests.builders import builtin_checks
from tests.builders import canary as canary_body
from tests.builders import deployment as deployment_body
from tests.unit.delivery_fakes import (
    FakeAlertPoster,
    FakeClock,
    FakeMetrics,
    FakeWebhooks,
    InMemoryCluster,
)

from meshpilot.delivery import RolloutController, Settings

NS = "default"
NAME = "podinfo"


def deployment(version: str = "v1", replicas: int = 2) -> dict[str, Any]:
    """podinfo at image tag ``version``."""
    return deployment_body(
        NAME, labels={"app": NAME}, replicas=replicas,
        containers=[{"name": "app", "image": f"podinfo:{version}"}],
    )


def canary(analysis: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """The Canary over podinfo; ``analysis`` overrides fields of the default analysis."""
    defaults = {"interval": "10s", "threshold": 2, "maxWeight": 50, "stepWeight": 10,
                "metrics": builtin_checks("1m")}
    return canary_body(NAME, port=9898, analysis={**defaults, **(analysis or {})}, **spec)


class Harness:
    """One Canary over podinfo, its controller and the fakes it runs against."""

    def __init__(self, analysis: dict[str, Any] | None = None, **spec: Any) -> None:
        self.cluster = InMemoryCluster()
        self.clock = FakeClock()
        self.metrics = FakeMetrics()
        self.hooks = FakeWebhooks()
        self.alerts = FakeAlertPoster()
        self.cluster.put(deployment("v1"))
        self.cluster.put(canary(analysis, **spec))
        self.controller = self.new_controller()

    def new_controller(self) -> RolloutController:
        return RolloutController(self.clock, self.cluster, self.cluster, self.metrics,
                                 self.hooks, settings=Settings(drain_seconds=2.0),
                                 alerts=self.alerts)

    def tick(self, n: int = 1, dt: float = 10.0) -> None:
        for _ in range(n):
            self.clock.advance(dt)
            self.controller.tick(NS, NAME)

    def command(self, command: str) -> str | None:
        decision = self.controller.command(NS, NAME, command)
        assert decision is not None
        assert self.controller.queued_alerts.flush(5.0)  # its alerts, sent off this thread
        return decision.refused

    @property
    def status(self) -> dict[str, Any]:
        return self.cluster.status(NAME)

    @property
    def phase(self) -> str:
        return self.status.get("phase", "")

    @property
    def weights(self) -> list[dict[str, int]]:
        return self.cluster.weights(NAME)

    def canary_weight_routed(self) -> int:
        return self.weights[-1].get(f"{NAME}-canary", 0)

    def messages(self) -> list[str]:
        return [e["message"] for e in self.status.get("events", [])]

    def initialize(self) -> None:
        self.tick(2)
        assert self.phase == "Initialized", self.messages()

    def release(self, version: str = "v2", replicas: int = 2) -> None:
        self.cluster.put(deployment(version, replicas))

    def run_until(self, predicate: Any, limit: int = 60, dt: float = 10.0) -> int:
        for i in range(limit):
            if predicate():
                return i
            self.tick(dt=dt)
        raise AssertionError(f"not reached after {limit} ticks: {self.phase} {self.messages()}")

    def target_replicas(self) -> int:
        target = self.cluster.get("Deployment", NAME)
        assert target is not None, "no target Deployment"
        return target["spec"]["replicas"]

    def primary_image(self) -> str:
        primary = self.cluster.get("Deployment", f"{NAME}-primary")
        assert primary is not None, "no primary Deployment"
        return primary["spec"]["template"]["spec"]["containers"][0]["image"]

"""The rollout controller with the real metric providers (:class:`Providers`), for the
tests where a MetricTemplate's check is answered by a real Graphite or InfluxDB.

Everything else is the unit harness' fakes, stepped with a fake clock: the servers'
relative ranges are measured from real time, and the points the tests write are
there for minutes, so a rollout stepped in fake time reads the same answer each tick.
"""

from __future__ import annotations

from typing import Any

from meshpilot.delivery import RolloutController, Settings
from meshpilot.delivery.providers import Providers
from tests.unit.rollout_harness import Harness


class ProviderHarness(Harness):
    """A Canary over podinfo whose one check is ``metric``, judged by real providers."""

    def __init__(self, metric: dict[str, Any]) -> None:
        super().__init__({"metrics": [metric]})

    def new_controller(self) -> RolloutController:
        return RolloutController(self.clock, self.cluster, self.cluster, self.metrics,
                                 self.hooks, providers=Providers(),
                                 settings=Settings(drain_seconds=2.0), alerts=self.alerts)

    def rollout(self, version: str) -> dict[str, Any]:
        """Release ``version`` and step until the rollout finishes; its status."""
        self.release(version)
        self.run_until(lambda: self.phase in ("Progressing", "Failed"), limit=5)
        self.run_until(lambda: self.phase in ("Succeeded", "Failed"), limit=40)
        return self.status


def template(name: str, provider: dict[str, Any], query: str) -> dict[str, Any]:
    return {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"provider": provider, "query": query}}


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"}, "stringData": data}

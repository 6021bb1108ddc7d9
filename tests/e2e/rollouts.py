"""Progressive delivery end to end: the Deployment under rollout, its Canary, and the
rollout API that reads and drives them.

``target`` is the Deployment a Canary takes over (the demo app selected by ``app: myapp``
only, so the revision lives in the template); ``canary`` a Flagger Canary with short
intervals, so a rollout takes seconds; ``Rollout`` reads and drives one over the API and
waits for its phases.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tests.builders import builtin_checks, demo_deployment, from_yaml
from tests.builders import canary as canary_body
from tests.e2e.mesh import API, Mesh

NAME = "myapp"
# A rollout ends in one of these; it stays there until the next revision.
FINISHED = ("Succeeded", "Failed")


def target(version: str = "v1", *, replicas: int = 2, args: str = "") -> dict[str, Any]:
    """The Deployment under rollout: demo app ``version``; ``args`` e.g. --error-rate 0.3."""
    return demo_deployment(NAME, version, app=NAME, replicas=replicas, args=args,
                           select_version=False)


def canary(*, interval: str = "1s", threshold: int = 2, max_weight: int = 30,
           step_weight: int = 10, window: str = "4s", min_requests: int = 10,
           strategy: str = "", analysis: str = "", metrics: list[dict[str, Any]] | None = None,
           deadline: int = 60) -> dict[str, Any]:
    """A Canary over ``target`` checking both built-in metrics over ``window``.

    ``strategy`` (YAML) replaces the weight fields (e.g. ``iterations: 3``); ``analysis``
    (YAML) adds fields to ``spec.analysis`` (webhooks…); ``metrics`` replaces the checks.
    """
    weights: Mapping[str, Any] = (from_yaml(strategy) if strategy
                                  else {"maxWeight": max_weight, "stepWeight": step_weight})
    return canary_body(
        NAME, port=8080, target_port="http",
        annotations={"meshpilot.io/min-requests": str(min_requests)},
        progressDeadlineSeconds=deadline,
        analysis={"interval": interval, "threshold": threshold, **weights,
                  "metrics": metrics if metrics is not None else builtin_checks(window),
                  **(from_yaml(analysis) if analysis else {})},
    )


class Rollout:
    """The rollout of ``name`` over the API of one mesh."""

    def __init__(self, mesh: Mesh, name: str = NAME, namespace: str = "default") -> None:
        self.mesh = mesh
        self.name = name
        self.path = f"{API}/namespaces/{namespace}/rollouts/{name}"

    def get(self) -> dict[str, Any]:
        r = self.mesh.api.get(self.path)
        assert r.status_code == 200, r.text
        return r.json()

    def command(self, command: str, expect: int = 200) -> dict[str, Any]:
        r = self.mesh.api.post(f"{self.path}/{command}")
        assert r.status_code == expect, r.text
        return r.json()

    def events(self) -> list[str]:
        return [e["message"] for e in self.get()["events"]]

    def wait_phase(self, *phases: str, timeout: float = 60.0,
                   fail_on: tuple[str, ...] = ()) -> dict[str, Any]:
        """Until the rollout is in one of ``phases``; fails at once in one of ``fail_on``."""
        body, stopped = self._poll(lambda b: b["phase"] in phases + fail_on, timeout, 0.2)
        if stopped and body["phase"] in phases:
            return body
        raise AssertionError(
            f"rollout {self.name} not in {phases} within {timeout}s: phase "
            f"{body.get('phase')}\nevents: "
            + "\n  ".join(f"{e['time']} {e['message']}" for e in body.get("events", []))
            + f"\nchecks: {body.get('checks')}\n--- server log tail:\n"
            + self.mesh.cp.log()[-3000:])

    def wait(self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 60.0,
             what: str = "") -> dict[str, Any]:
        """Until ``predicate`` holds for the rollout's status, polled every 0.1 s."""
        body, stopped = self._poll(predicate, timeout, 0.1)
        if stopped:
            return body
        raise AssertionError(f"not within {timeout}s: {what}; last: phase {body.get('phase')} "
                             f"weight {body.get('canaryWeight')} events "
                             f"{[e['message'] for e in body.get('events', [])][-8:]}")

    def _poll(self, stop: Callable[[dict[str, Any]], Any], timeout: float,
              interval: float) -> tuple[dict[str, Any], bool]:
        """The status polled every ``interval`` until ``stop`` holds for it or ``timeout``
        is over: the last one seen, and whether ``stop`` held."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.get()
            if stop(body):
                return body, True
            time.sleep(interval)
        return body, False

"""An Argo Rollout end to end: real pods, real Envoy, real traffic, the real controller.

Shaped like Argo's ``examples/istio/istio-subset-split.yaml``: a Service, a VirtualService
whose route ``primary`` splits between the DestinationRule's subsets ``stable`` and
``canary``, and a Rollout over two replicas of the demo app; here the VirtualService has
one more route (``pinned``: requests with ``x-pin: v1`` go to the rule's own subset
``pinned``) that the Rollout must never touch, and the steps are setWeight 20, pause {},
setWeight 50, pause {duration: 15s} (long enough to measure the 50/50 split in it on
a loaded machine).

Given v1 stable, when the template becomes v2, then 20% of real requests reach v2 and the
Rollout waits, Paused; ``meshpilot rollout promote`` takes it to 50/50 and, after the 15 s
pause, to v2 as the new stable; the pinned route answers from v1 and is the same object
throughout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests import argo_builders
from tests.conftest import run_cli
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When

NAME = "myapp"
PAUSE = "15s"
"""The timed pause at 50 %: the split is measured inside it, so it outlasts a converge and
120 requests through the mesh on a loaded machine (8 s did not, at load 20)."""
WAIT_S = 60.0
"""How long a wait for a phase may take at most (pods start slowly under load)."""
PINNED = {"name": "pinned", "match": [{"headers": {"x-pin": {"exact": "v1"}}}],
          "route": [{"destination": {"host": NAME, "subset": "pinned"}}]}


def virtual_service() -> dict[str, Any]:
    return argo_builders.virtual_service(NAME, [PINNED])


def destination_rule() -> dict[str, Any]:
    return argo_builders.destination_rule(
        NAME, [{"name": "pinned", "labels": {"app": NAME, "version": "v1"}}])


def rollout(version: str) -> dict[str, Any]:
    return argo_builders.canary_rollout(NAME, version, [
        {"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": PAUSE}}])


def status(mesh: Mesh) -> dict[str, Any]:
    """The Rollout as ``meshpilot get rollout myapp -o json`` shows it."""
    shown = run_cli("get", "rollout", NAME, "-o", "json", state_dir=mesh.cp.state_dir)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout).get("status") or {}


ROLLOUT = f"/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/{NAME}"


def wait_for(mesh: Mesh, phase: str, timeout: float = WAIT_S,
             **fields: Any) -> dict[str, Any]:
    """The Rollout's status once it is in ``phase`` with ``fields``."""
    return wait_status(
        mesh, f"{phase} {fields}",
        lambda st: st.get("phase") == phase and all(st.get(k) == v for k, v in fields.items()),
        timeout)


def wait_status(mesh: Mesh, what: str, ready: Callable[[dict[str, Any]], bool],
                timeout: float = 60.0) -> dict[str, Any]:
    """The Rollout's stored status once ``ready`` holds for it (polled every 0.2 s)."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = mesh.api.get(ROLLOUT).json().get("status") or {}
        if ready(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"Rollout not {what} in {timeout}s: {st}\n" + mesh.cp.log()[-3000:])


def weights(st: dict[str, Any]) -> tuple[int, int]:
    w = st["canary"]["weights"]
    return w["stable"]["weight"], w["canary"]["weight"]


def pinned_route(mesh: Mesh) -> dict[str, Any]:
    vs = mesh.api.get(f"/apis/networking.istio.io/v1beta1/namespaces/default/"
                      f"virtualservices/{NAME}-vsvc").json()
    return vs["spec"]["http"][0]


def test_subset_split_rollout_waits_at_20_is_promoted_to_50_then_stable(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.service(), virtual_service(), destination_rule(), rollout("v1"))
    v1 = wait_for(mesh, "Healthy")["stableRS"]
    then.split_is({"v1": 10})

    # When the template becomes v2: 80/20 on real traffic, and the Rollout waits
    mesh.apply(rollout("v2"))
    st = wait_for(mesh, "Paused", currentStepIndex=1)
    assert weights(st) == (80, 20) and st["stableRS"] == v1
    v2 = st["currentPodHash"]
    mesh.converge()
    then.split_within(200, {"v1": (130, 190), "v2": (10, 70)})
    then.split_is({"v1": 10}, headers={"x-pin": "v1"})  # the other route: untouched
    assert pinned_route(mesh) == PINNED
    time.sleep(2.0)
    assert status(mesh)["phase"] == "Paused"  # pause {} waits for promote

    # When promoted: 50/50, the timed pause, then v2 is the stable revision
    promoted = run_cli("rollout", "promote", NAME, state_dir=mesh.cp.state_dir)
    assert promoted.returncode == 0, promoted.stderr
    st = wait_for(mesh, "Paused", currentStepIndex=3)
    assert weights(st) == (50, 50)
    mesh.converge()
    then.split_within(120, {"v1": (35, 85), "v2": (35, 85)})  # 60 +- 4.5 sd each
    assert status(mesh)["currentStepIndex"] == 3, "the split was measured after the pause"
    then.split_is({"v1": 10}, headers={"x-pin": "v1"})

    st = wait_for(mesh, "Healthy", stableRS=v2)
    assert weights(st) == (100, 0) and st["currentStepIndex"] == 4
    assert status(mesh)["stableRS"] == v2
    mesh.converge()
    then.split_is({"v2": 20})
    assert pinned_route(mesh) == PINNED
    dr = mesh.api.get("/apis/networking.istio.io/v1beta1/namespaces/default/"
                      f"destinationrules/{NAME}-destrule").json()
    assert {s["name"]: s["labels"] for s in dr["spec"]["subsets"]} == {
        "stable": {"app": NAME, "rollouts-pod-template-hash": v2},
        "canary": {"app": NAME, "rollouts-pod-template-hash": v2},
        "pinned": {"app": NAME, "version": "v1"}}
    assert mesh.pods_of(f"{NAME}-{v1}", terminating=False) == []
    assert len(mesh.pods_of(f"{NAME}-{v2}", terminating=False)) == 2

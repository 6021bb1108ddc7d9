"""A Rollout taking over a running Deployment (``spec.workloadRef``) end to end: real
pods, real Envoy, real traffic, the real controller.

Shaped after Argo's "Migrating to Rollouts" (``docs/migrating.md``, "Reference
Deployment From Rollout"): a Deployment ``myapp`` serves v1 behind
``examples/istio/istio-subset-split.yaml``'s VirtualService and DestinationRule; a
Rollout with ``workloadRef {apiVersion: apps/v1, kind: Deployment, name: myapp,
scaleDown: progressively}`` and no template is applied beside it.

Given v1 served by the Deployment and steady traffic, when the Rollout is applied, then
it runs the Deployment's pod template as its stable revision, the Deployment is scaled
down to zero as the Rollout's pods become ready, and no request fails; when the user then
updates the Deployment's image to v2 (the Deployment stays the source of the template),
then the Rollout runs v2 as a canary at 20 % of real requests and waits for promote; and
``rollout undo`` is refused, pointing at the Deployment.
"""

from __future__ import annotations

import time
from typing import Any

from tests.argo_builders import canary_rollout, destination_rule, virtual_service, workload_ref
from tests.builders import demo_deployment
from tests.conftest import run_cli
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When
from tests.e2e.test_argo_rollout import wait_for, weights

NAME = "myapp"
DEPLOYMENT = f"/apis/apps/v1/namespaces/default/deployments/{NAME}"


def web(version: str, replicas: int = 2) -> dict[str, Any]:
    """The user's Deployment ``myapp`` (a new version is a new template of it)."""
    return demo_deployment(NAME, version, replicas=replicas, select_version=False)


def rollout() -> dict[str, Any]:
    return canary_rollout(NAME, None, [{"setWeight": 20}, {"pause": {}}],
                          spec=workload_ref(NAME, "progressively"))


def wait_no_pods(mesh: Mesh, deployment: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while mesh.pods_of(deployment, terminating=False) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert mesh.pods_of(deployment, terminating=False) == []


def test_a_rollout_takes_over_a_deployment_with_no_failed_request_then_runs_its_updates(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.service(), virtual_service(NAME), destination_rule(NAME), web("v1"))
    then.split_is({"v1": 10})

    # When the Rollout referencing the Deployment is applied under load
    with when.traffic(rate=50, max_seconds=90) as load:
        mesh.apply(rollout())
        v1 = wait_for(mesh, "Healthy", timeout=60)["stableRS"]
        wait_no_pods(mesh, NAME)  # scaled down progressively, to zero
        mesh.converge()
        when.time_passes(1.0)
    then.no_request_failed(load, more_than=50)
    assert mesh.api.get(DEPLOYMENT).json()["spec"]["replicas"] == 0
    assert len(mesh.pods_of(f"{NAME}-{v1}", terminating=False)) == 2
    then.split_is({"v1": 10})  # now the Rollout's pods answer

    # When the Deployment's template becomes v2: a canary at 20 %, waiting for promote
    mesh.apply(web("v2", replicas=0))
    st = wait_for(mesh, "Paused", timeout=60, currentStepIndex=1)
    assert weights(st) == (80, 20) and st["stableRS"] == v1
    mesh.converge()
    then.split_within(200, {"v1": (130, 190), "v2": (10, 70)})
    undo = run_cli("rollout", "undo", NAME, state_dir=mesh.cp.state_dir)
    assert undo.returncode != 0
    assert "kubectl rollout undo deployment" in undo.stdout + undo.stderr

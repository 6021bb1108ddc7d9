"""Aborting an Argo canary under load fails no request.

Argo's ``abort`` with traffic routing sends all traffic back to stable and scales the
canary down ``abortScaleDownDelaySeconds`` (default 30) later, so requests that proxies
still send to the canary while the new split propagates are answered. Given v2 at 50%
of ``test_argo_rollout``'s subset-level objects and steady traffic, when ``meshpilot
rollout abort`` runs, then v1 answers everything and no request failed, before or after
the canary's pods go.
"""

from __future__ import annotations

import time
from typing import Any

from tests.argo_builders import canary_rollout
from tests.conftest import run_cli
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When
from tests.e2e.test_argo_rollout import destination_rule, virtual_service, wait_status

NAME = "myapp"


def rollout(version: str) -> dict[str, Any]:
    return canary_rollout(NAME, version, [{"setWeight": 50}, {"pause": {}}],
                          abortScaleDownDelaySeconds=3)



def test_abort_under_load_fails_no_request(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.service(), virtual_service(), destination_rule(), rollout("v1"))
    wait_status(mesh, "Healthy", lambda s: s.get("phase") == "Healthy")
    mesh.apply(rollout("v2"))
    v2 = wait_status(mesh, "paused at 50%", lambda s: s.get("phase") == "Paused")["currentPodHash"]
    mesh.converge()
    then.split_within(100, {"v1": (25, 75), "v2": (25, 75)})
    with when.traffic(rate=60, max_seconds=60) as load:
        when.time_passes(1.0)
        aborted = run_cli("rollout", "abort", NAME, state_dir=mesh.cp.state_dir)
        assert aborted.returncode == 0, aborted.stderr
        wait_status(mesh, "aborted", lambda s: s.get("phase") == "Degraded")
        mesh.converge()
        then.split_is({"v1": 20})
        deadline = time.monotonic() + 20
        while mesh.pods_of(f"{NAME}-{v2}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mesh.pods_of(f"{NAME}-{v2}") == []  # after the delay
        when.time_passes(1.0)
    then.no_request_failed(load, more_than=150)

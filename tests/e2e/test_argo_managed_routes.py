"""Argo's managed routes end to end: setHeaderRoute and setMirrorRoute on real traffic.

Shaped like Argo's ``examples/istio/istio-mirror.yaml`` (a ``setCanaryScale`` step, then
``setMirrorRoute`` with a GET match) plus the header-routing step of
``docs/features/traffic-management/istio.md``, over ``test_argo_rollout``'s
subset-level objects (its VirtualService has a ``pinned`` route of the user's).

Given v1 stable, when v2 reaches the pause after those steps, then every client is
answered by v1 (weight 0) while the v2 canary receives copies of the GETs (the mirror),
and requests with ``x-canary: yes`` are answered by v2 (the header route); when
promoted, the managed routes are gone and the user's routes are as written.
"""

from __future__ import annotations

import time
from typing import Any

from tests.argo_builders import canary_rollout, subset_routing
from tests.conftest import run_cli
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When
from tests.e2e.test_argo_rollout import (
    PINNED,
    destination_rule,
    virtual_service,
    wait_status,
)

NAME = "myapp"
VS = f"/apis/networking.istio.io/v1beta1/namespaces/default/virtualservices/{NAME}-vsvc"


def rollout(version: str) -> dict[str, Any]:
    routing = {"managedRoutes": [{"name": "header-route"}, {"name": "mirror-route"}],
               **subset_routing(NAME)}
    return canary_rollout(NAME, version, [
        {"setCanaryScale": {"replicas": 1}},
        {"setMirrorRoute": {"name": "mirror-route", "match": [{"method": {"exact": "GET"}}]}},
        {"setHeaderRoute": {"name": "header-route", "match": [
            {"headerName": "x-canary", "headerValue": {"exact": "yes"}}]}},
        {"pause": {}}], routing=routing)



def canary_requests(mesh: Mesh, pod_hash: str) -> float:
    rows = mesh.telemetry(namespace="default", workload=f"{NAME}-{pod_hash}",
                          window="10s")["rows"]
    return float(sum(r["requests"] for r in rows))


def test_mirror_and_header_routes_then_promotion_removes_them(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    given.applied(myapp.service(), virtual_service(), destination_rule(), rollout("v1"))
    wait_status(mesh, "Healthy", lambda s: s.get("phase") == "Healthy")
    mesh.apply(rollout("v2"))
    st = wait_status(mesh, "paused", lambda s: s.get("phase") == "Paused"
                  and s.get("currentStepIndex") == 3)
    v2 = st["currentPodHash"]
    names = [r.get("name") for r in mesh.api.get(VS).json()["spec"]["http"]]
    assert names == ["header-route", "mirror-route", "pinned", "primary"]
    mesh.converge()

    # Clients are answered by v1 only; v2 receives the mirrored copies
    then.split_is({"v1": 40})
    deadline = time.monotonic() + 15
    while canary_requests(mesh, v2) < 20 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert canary_requests(mesh, v2) >= 20
    # The header route sends x-canary: yes to v2
    then.split_is({"v2": 10}, headers={"x-canary": "yes"})
    then.split_is({"v1": 10}, headers={"x-pin": "v1"})

    promoted = run_cli("rollout", "promote", NAME, state_dir=mesh.cp.state_dir)
    assert promoted.returncode == 0, promoted.stderr
    wait_status(mesh, "promoted", lambda s: s.get("phase") == "Healthy"
             and s.get("stableRS") == v2)
    http = mesh.api.get(VS).json()["spec"]["http"]
    assert [r.get("name") for r in http] == ["pinned", "primary"] and http[0] == PINNED
    mesh.converge()
    then.split_is({"v2": 10})

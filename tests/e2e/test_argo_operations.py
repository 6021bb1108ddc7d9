"""kubectl-argo-rollouts' operations through ``meshpilot rollout`` on a running Argo
Rollout: real control plane, store, pods and Envoy.

Shaped like Argo's ``examples/istio/istio-subset-split.yaml`` (the objects of
``test_argo_rollout``). Given v1 stable and v2 paused at 20 %: ``rollout status`` prints
the plugin's fields; ``rollout pause`` sets spec.paused (stored: ``get rollout`` shows it)
and the Rollout stays Paused "manually paused" after ``promote`` would have moved it;
``resume`` clears it; ``promote --full`` takes v2 to stable past the remaining steps, and
``status --watch`` exits 0 at Healthy (the plugin's ``status --watch``); ``restart``
replaces v2's pods with new ones that serve; a v3 aborted makes
``status --watch`` exit 1 (Degraded); ``undo`` then puts v2's template back: Healthy;
``undo --to-revision 1`` (the plugin's revision numbers) brings v1 back through the steps.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run_cli
from tests.dashboard_session import signed_in
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then
from tests.e2e.test_argo_rollout import (
    NAME,
    destination_rule,
    rollout,
    status,
    virtual_service,
    wait_for,
    weights,
)


def cli(mesh: Mesh, *args: str) -> tuple[int, str, str]:
    done = run_cli("rollout", *args, state_dir=mesh.cp.state_dir)
    return done.returncode, done.stdout, done.stderr


def dashboard_card(mesh: Mesh) -> dict[str, object]:
    """The Rollout's card in the dashboard's first live event, read as a signed-in
    browser reads it."""
    browser, _ = signed_in(mesh.cp)
    try:
        with browser.stream("GET", mesh.cp.api + "/dashboard/events") as events:
            for line in events.iter_lines():
                if line.startswith("data: "):
                    state = json.loads(line[len("data: "):])
                    return next(r for r in state["rollouts"]
                                if r.get("kind") == "Rollout" and r["name"] == NAME)
    finally:
        browser.close()
    raise AssertionError("the dashboard sent no state")


def spec_paused(mesh: Mesh) -> object:
    shown = run_cli("get", "rollout", NAME, "-o", "json", state_dir=mesh.cp.state_dir)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["spec"].get("paused")


@pytest.mark.timeout(300)  # a dozen operations, each waiting for pods: slow under load
def test_status_pause_resume_promote_full_and_watch(
    mesh: Mesh, given: Given, then: Then
) -> None:
    given.applied(myapp.service(), virtual_service(), destination_rule(), rollout("v1"))
    v1 = wait_for(mesh, "Healthy")["stableRS"]
    mesh.apply(rollout("v2"))
    st = wait_for(mesh, "Paused", currentStepIndex=1)
    v2 = st["currentPodHash"]

    code, out, err = cli(mesh, "status", NAME)
    assert code == 0, err
    shown = {line.split(":")[0].strip(): line.split(":", 1)[1].strip()
             for line in out.splitlines() if ":" in line}
    assert (shown["Status"], shown["Strategy"], shown["Step"]) == ("Paused", "Canary", "1/4")
    assert (shown["SetWeight"], shown["ActualWeight"]) == ("20", "20")
    assert shown["Images"] == "container app (stable, canary)"  # the demo app has no image
    card = dashboard_card(mesh)  # the dashboard draws the same rollout
    assert (card["argoPhase"], card["canaryWeight"], card["step"], card["steps"]) == (
        "Paused", 20, 1, 4), card

    code, _, err = cli(mesh, "pause", NAME)
    assert code == 0, err
    assert spec_paused(mesh) is True
    st = wait_for(mesh, "Paused", message="manually paused")
    assert weights(st) == (80, 20) and st["currentStepIndex"] == 1
    code, _, err = cli(mesh, "pause", NAME)
    assert code == 1 and "already paused" in err
    code, _, err = cli(mesh, "resume", NAME)
    assert code == 0, err
    assert spec_paused(mesh) is False
    wait_for(mesh, "Paused", message="CanaryPauseStep")

    code, out, err = cli(mesh, "promote", "--full", NAME)
    assert code == 0, err
    code, out, err = cli(mesh, "status", NAME, "--watch", "--timeout", "30", "--refresh", "0.2")
    assert code == 0, out + err
    assert "Healthy" in out and status(mesh)["stableRS"] == v2
    mesh.converge()
    then.split_is({"v2": 10})

    before = {p["metadata"]["name"] for p in mesh.pods_of(f"{NAME}-{v2}")}
    code, _, err = cli(mesh, "restart", NAME)
    assert code == 0, err
    deadline = time.monotonic() + 30
    now: set[str] = set()
    while time.monotonic() < deadline:
        now = {p["metadata"]["name"] for p in mesh.pods_of(f"{NAME}-{v2}", terminating=False)}
        if len(now) == 2 and not now & before and status(mesh)["phase"] == "Healthy":
            break
        time.sleep(0.3)
    assert len(now) == 2 and not now & before, (before, now)
    mesh.converge()
    then.split_is({"v2": 10})  # the restarted pods serve

    mesh.apply(rollout("v3"))
    wait_for(mesh, "Paused", currentStepIndex=1)
    code, _, err = cli(mesh, "abort", NAME)
    assert code == 0, err
    started = time.monotonic()
    code, out, _ = cli(mesh, "status", NAME, "--watch", "--timeout", "30", "--refresh", "0.2")
    assert code == 1 and "Degraded" in out and time.monotonic() - started < 25

    code, _, err = cli(mesh, "undo", NAME)
    assert code == 0, err
    st = wait_for(mesh, "Healthy", currentPodHash=v2)
    assert st["stableRS"] == v2 and weights(st) == (100, 0)

    # undo --to-revision: revisions numbered as Argo numbers them (v1 1, v2 2, v3 3, and
    # v2 rolled back to is 4); an unknown number is refused, changing nothing
    code, out, err = cli(mesh, "status", NAME, "-o", "json")
    assert code == 0, err
    numbers = {r["podTemplateHash"]: r["revision"] for r in json.loads(out)["revisions"]}
    assert numbers[v1] == 1 and numbers[v2] == 4 and sorted(numbers.values()) == [1, 3, 4]
    code, _, err = cli(mesh, "undo", NAME, "--to-revision", "9")
    assert code == 1 and "unable to find revision 9" in err, err
    assert status(mesh)["currentPodHash"] == v2
    code, _, err = cli(mesh, "undo", NAME, "--to-revision", "1")
    assert code == 0, err
    st = wait_for(mesh, "Paused", currentPodHash=v1, currentStepIndex=1)
    assert st["stableRS"] == v2 and weights(st) == (80, 20)

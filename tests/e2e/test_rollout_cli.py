"""``meshpilot rollout`` end to end, and the promote / pause / resume / abort / retry
commands against a running rollout."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import _env, run_cli
from tests.e2e.conftest import Mesh
from tests.e2e.rollout_helpers import Steady, canary, given_initialized, target, versions


def test_cli_names_the_failed_check(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary())
    state = mesh.cp.state_dir

    refused = run_cli("rollout", "abort", "myapp", state_dir=state)
    assert refused.returncode == 1
    assert "no rollout to abort" in refused.stderr

    with Steady(mesh):
        mesh.apply(target("v2", args="--error-rate 0.3"))
        rollouts.wait_phase("Failed", "Succeeded", timeout=60)

    status = run_cli("rollout", "status", "myapp", state_dir=state)
    assert status.returncode == 0, status.stderr
    text = status.stdout
    assert "Failed" in text and "request-success-rate" in text and "fail" in text, text
    assert ">= 99%" in text  # the threshold beside the value
    assert "Rolling back myapp.default" in text  # the last events

    history = run_cli("rollout", "history", "myapp", state_dir=state)
    assert history.returncode == 0, history.stderr
    assert "rolled-back" in history.stdout and "request-success-rate" in history.stdout

    listing = run_cli("rollout", "list", state_dir=state)
    assert listing.returncode == 0, listing.stderr
    assert "myapp" in listing.stdout and "Failed" in listing.stdout

    # --watch on a finished rollout returns at once, exit 1 because it failed
    watched = run_cli("rollout", "status", "myapp", "--watch", "--timeout", "5",
                      state_dir=state)
    assert watched.returncode == 1


def test_watch_follows_a_rollout_to_success(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary(max_weight=20))
    env = _env()
    env["MESHPILOT_STATE_DIR"] = str(mesh.cp.state_dir)
    env["COLUMNS"] = "200"
    with Steady(mesh):
        mesh.apply(target("v2"))
        rollouts.wait(lambda b: b["phase"] == "Progressing", timeout=20, what="Progressing")
        proc = subprocess.run(
            [sys.executable, "-m", "meshpilot.cli.main", "rollout", "status", "myapp",
             "--watch", "--timeout", "70", "--refresh", "0.5"],
            capture_output=True, text=True, env=env, timeout=90)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "Succeeded" in proc.stdout
    assert "primary 100%" in proc.stdout


def test_pause_resume_promote_abort_retry(mesh: Mesh) -> None:
    rollouts = given_initialized(mesh, canary(max_weight=90, step_weight=10))
    state = mesh.cp.state_dir
    with Steady(mesh):
        mesh.apply(target("v2"))
        rollouts.wait(lambda b: b["canaryWeight"] >= 10, timeout=40, what="first step")

        # pause holds the weight
        assert run_cli("rollout", "pause", "myapp", state_dir=state).returncode == 0
        held = rollouts.get()
        assert held["paused"]
        time.sleep(2.5)
        assert rollouts.get()["canaryWeight"] == held["canaryWeight"]
        # resume continues
        assert run_cli("rollout", "resume", "myapp", state_dir=state).returncode == 0
        rollouts.wait(lambda b: b["canaryWeight"] > held["canaryWeight"], timeout=20,
                      what="the next step after resume")
        # promote skips the remaining steps
        promoted = run_cli("rollout", "promote", "myapp", state_dir=state)
        assert promoted.returncode == 0, promoted.stderr
        final = rollouts.wait_phase("Succeeded", timeout=40)
        assert final["history"][-1]["reason"] == "promoted by user"
        assert versions(mesh, 10) == {"v2": 10}

        # a new revision, aborted by hand: all traffic back on the primary (v2)
        mesh.apply(target("v3"))
        rollouts.wait(lambda b: b["canaryWeight"] >= 10, timeout=40, what="v3 first step")
        assert run_cli("rollout", "abort", "myapp", state_dir=state).returncode == 0
        aborted = rollouts.get()
        assert aborted["phase"] == "Failed" and aborted["canaryWeight"] == 0
        assert "aborted by user" in aborted["history"][-1]["reason"]
        time.sleep(1.0)
        assert versions(mesh, 10) == {"v2": 10}

        # retry runs the failed revision again
        refused = run_cli("rollout", "resume", "myapp", state_dir=state)
        assert refused.returncode == 1 and "not paused" in refused.stderr
        assert run_cli("rollout", "retry", "myapp", state_dir=state).returncode == 0
        again = rollouts.get()
        assert again["phase"] == "Progressing"
        rollouts.wait(lambda b: b["canaryWeight"] >= 10, timeout=40,
                      what="the retried rollout to take traffic")
        assert run_cli("rollout", "promote", "myapp", state_dir=state).returncode == 0
        rollouts.wait_phase("Succeeded", timeout=40)
    assert versions(mesh, 10) == {"v3": 10}

    bad = mesh.api.post("/apis/meshpilot.io/v1/namespaces/default/rollouts/myapp/explode")
    assert bad.status_code == 400
    missing = mesh.api.post("/apis/meshpilot.io/v1/namespaces/default/rollouts/nope/pause")
    assert missing.status_code == 404
    conflict = mesh.api.post("/apis/meshpilot.io/v1/namespaces/default/rollouts/myapp/pause")
    assert conflict.status_code == 409 and "no rollout to pause" in conflict.json()["message"]

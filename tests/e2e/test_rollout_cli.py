"""``meshpilot rollout`` end to end, and the promote / pause / resume / abort / retry
commands against a running rollout."""

from __future__ import annotations

from tests.conftest import run_cli
from tests.e2e.mesh import API, Mesh
from tests.e2e.rollouts import canary
from tests.e2e.scenario import Given, Then, When

ROLLOUTS = f"{API}/namespaces/default/rollouts"


def test_cli_names_the_failed_check(mesh: Mesh, given: Given, when: When, then: Then) -> None:
    given.rollout(canary())
    state = mesh.cp.state_dir

    refused = run_cli("rollout", "abort", "myapp", state_dir=state)
    assert refused.returncode == 1
    assert "no rollout to abort" in refused.stderr

    with when.traffic():
        when.release("v2", args="--error-rate 0.3")
        then.rollout_phase("Failed")

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


def test_watch_follows_a_rollout_to_success(mesh: Mesh, given: Given, when: When) -> None:
    given.rollout(canary(max_weight=20))
    with when.traffic():
        when.release("v2")
        when.rollout_reaches(lambda b: b["phase"] == "Progressing", "Progressing", timeout=20)
        proc = run_cli("rollout", "status", "myapp", "--watch", "--timeout", "70",
                       "--refresh", "0.5", state_dir=mesh.cp.state_dir, timeout=90)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "Succeeded" in proc.stdout
    assert "primary 100%" in proc.stdout


def test_pause_resume_promote_abort_retry(
    mesh: Mesh, given: Given, when: When, then: Then
) -> None:
    # 18 steps of 1 s: a CLI call on a loaded machine (seconds to start) must not find the
    # rollout already past its steps when it promotes
    given.rollout(canary(max_weight=90, step_weight=5))
    state = mesh.cp.state_dir
    with when.traffic():
        when.release("v2")
        when.rollout_reaches(lambda b: b["canaryWeight"] >= 5, "first step", timeout=40)

        # pause holds the weight
        assert run_cli("rollout", "pause", "myapp", state_dir=state).returncode == 0
        held = then.rollout()
        assert held["paused"]
        when.time_passes(2.5)
        assert then.rollout()["canaryWeight"] == held["canaryWeight"]
        # resume continues
        assert run_cli("rollout", "resume", "myapp", state_dir=state).returncode == 0
        # the step needs 10 requests in its 4 s window: a starved load generator on a
        # loaded machine may take a while to send them
        when.rollout_reaches(lambda b: b["canaryWeight"] > held["canaryWeight"],
                             "the next step after resume", timeout=45)
        # promote skips the remaining steps
        promoted = run_cli("rollout", "promote", "myapp", state_dir=state)
        assert promoted.returncode == 0, promoted.stderr
        final = then.rollout_phase("Succeeded", timeout=40)
        assert final["history"][-1]["reason"] == "promoted by user"
        then.split_is({"v2": 10})

        # a new revision, aborted by hand: all traffic back on the primary (v2)
        when.release("v3")
        when.rollout_reaches(lambda b: b["canaryWeight"] >= 5, "v3 first step", timeout=40)
        assert run_cli("rollout", "abort", "myapp", state_dir=state).returncode == 0
        aborted = then.rollout()
        assert aborted["phase"] == "Failed" and aborted["canaryWeight"] == 0
        assert "aborted by user" in aborted["history"][-1]["reason"]
        when.time_passes(1.0)
        then.split_is({"v2": 10})

        # retry runs the failed revision again
        refused = run_cli("rollout", "resume", "myapp", state_dir=state)
        assert refused.returncode == 1 and "not paused" in refused.stderr
        assert run_cli("rollout", "retry", "myapp", state_dir=state).returncode == 0
        again = then.rollout()
        assert again["phase"] == "Progressing"
        when.rollout_reaches(lambda b: b["canaryWeight"] >= 5,
                             "the retried rollout to take traffic", timeout=40)
        assert run_cli("rollout", "promote", "myapp", state_dir=state).returncode == 0
        then.rollout_phase("Succeeded", timeout=40)
    then.split_is({"v3": 10})

    bad = mesh.api.post(f"{ROLLOUTS}/myapp/explode")
    assert bad.status_code == 400
    missing = mesh.api.post(f"{ROLLOUTS}/nope/pause")
    assert missing.status_code == 404
    conflict = mesh.api.post(f"{ROLLOUTS}/myapp/pause")
    assert conflict.status_code == 409 and "no rollout to pause" in conflict.json()["message"]

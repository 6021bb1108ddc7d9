"""The built-in tester's shell commands (task types ``bash`` and ``cmd``), run for real.

Each test names the behaviour of Flagger's tester (pkg/loadtester) it follows: ``bash``
runs ``bash -c`` to completion and answers 200 on exit 0, 500 with the output otherwise
(bash.go, server.go); ``cmd`` runs ``sh -c`` in the background and skips a command that is
already running for the same Canary (task_shell.go, runner.go); ``logCmdOutput`` logs a
success's output, ``returnCmdOutput`` returns it; an unknown type is a 400.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.conftest import process_alive, wait_for

from meshpilot.delivery.loadtester import LoadTester
from meshpilot.delivery.shell_tasks import CommandRun, ShellTasks

CANARY = {"name": "podinfo", "namespace": "test"}


@pytest.fixture
def shell() -> Iterator[ShellTasks]:
    tasks = ShellTasks()
    yield tasks
    tasks.stop_all()


@pytest.fixture
def api(shell: ShellTasks) -> TestClient:
    return TestClient(LoadTester(client=None, shell=shell).app)


def task(cmd: str, kind: str | None = "bash", **metadata: str) -> dict[str, Any]:
    meta = {"cmd": cmd, **metadata} | ({"type": kind} if kind else {})
    return {**CANARY, "metadata": meta}


def test_bash_exit_0_is_200(api: TestClient) -> None:
    # server.go: 200 on success; the output only with returnCmdOutput
    quiet = api.post("/", json=task("echo hello"))
    assert quiet.status_code == 200 and quiet.text == ""
    loud = api.post("/", json=task("echo hello; echo there >&2", returnCmdOutput="true"))
    assert loud.status_code == 200 and loud.text == "hello\nthere\n"


def test_bash_non_zero_exit_is_500_with_the_output(api: TestClient) -> None:
    # bash.go: the error names the command and carries its combined output
    r = api.post("/", json=task("echo token missing >&2; exit 3"))
    assert r.status_code == 500
    assert "exit status 3" in r.text and "token missing" in r.text
    assert "echo token missing" in r.text


def test_bash_is_bash_and_runs_pipelines(api: TestClient) -> None:
    # Flagger's acceptance tests are pipelines (curl ... | grep token): a pipe's status is
    # its last command's, and bash-only syntax works
    assert api.post("/", json=task("echo a token here | grep token")).status_code == 200
    assert api.post("/", json=task("echo nothing | grep token")).status_code == 500
    assert api.post("/", json=task("[[ $BASH_VERSION ]]")).status_code == 200


def test_timeout_kills_the_command_and_what_it_started(api: TestClient, tmp_path: Path) -> None:
    # the hook's timeout (sent by the control plane as ?timeout=) bounds the command; the
    # answer comes before the caller would give up, and the whole process group is gone
    pids = tmp_path / "pids"
    began = time.monotonic()
    r = api.post("/?timeout=2s", json=task(f"sleep 60 & echo $$ $! > {pids}; wait"))
    took = time.monotonic() - began
    assert r.status_code == 500 and "timed out" in r.text
    # aimed just before the 2 s deadline; a loaded machine adds the kill's own time, so
    # the bound is the deadline's order of magnitude, far from the 60 s command
    assert 1.0 < took < 3.0, took
    shell_pid, sleep_pid = (int(p) for p in pids.read_text().split())
    wait_for(lambda: not process_alive(shell_pid) and not process_alive(sleep_pid),
             timeout=5, message="the shell and its sleep to be killed")


def test_background_job_does_not_outlive_a_finished_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    result = CommandRun(["bash", "-c", f"sleep 60 & echo $! > {pid_file}"]).wait(10)
    assert result.ok
    wait_for(lambda: not process_alive(int(pid_file.read_text())), timeout=5,
             message="the background sleep to be killed")


def test_log_cmd_output(api: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    # task_shell.go: logCmdOutput "true" logs what a successful command printed
    caplog.set_level(logging.INFO, logger="meshpilot.delivery.shell_tasks")
    # (the output, first-2, is not in the command's text, which is always logged)
    api.post("/", json=task("echo first-$((1+1))"))
    assert "first-" in caplog.text and "first-2" not in caplog.text
    api.post("/", json=task("echo second-$((1+1))", logCmdOutput="true"))
    assert "second-2" in caplog.text
    # a failure is always logged with its output
    api.post("/", json=task("echo third-$((1+1)); false"))
    assert "third-2" in caplog.text


def test_cmd_runs_in_the_background_once_per_canary(api: TestClient, tmp_path: Path) -> None:
    # task_shell.go and runner.go: answered at once; the same command for the same Canary
    # is skipped while it runs, another Canary's is not
    marker = tmp_path / "runs"
    cmd = f"echo run >> {marker}; sleep 1"
    began = time.monotonic()
    first = api.post("/", json=task(cmd, kind="cmd"))
    assert first.status_code == 202 and first.json() == {"started": True}
    assert time.monotonic() - began < 0.9
    assert api.post("/", json=task(cmd, kind="cmd")).json() == {"started": False}
    other = {**task(cmd, kind="cmd"), "name": "other"}
    assert api.post("/", json=other).json() == {"started": True}

    def finished() -> dict[str, Any]:
        commands = api.get("/status").json()["commands"]
        return commands if all("exitCode" in c for c in commands.values()) else {}

    commands = wait_for(finished, timeout=10, message="both commands to finish")
    assert {c["exitCode"] for c in commands.values()} == {0}
    assert marker.read_text() == "run\nrun\n"
    # once finished, it runs again
    assert api.post("/", json=task(cmd, kind=None)).json() == {"started": True}


def test_stop_all_kills_background_commands(shell: ShellTasks, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    assert shell.start("c.ns", f"echo $$ > {pid_file}; sleep 60")
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=5))
    shell.stop_all()
    wait_for(lambda: not process_alive(pid), timeout=5, message="the command to be killed")


def test_commands_off_are_refused_and_nothing_runs(tmp_path: Path) -> None:
    api = TestClient(LoadTester(client=None).app)
    marker = tmp_path / "ran"
    for kind in ("bash", "cmd", None):
        r = api.post("/", json=task(f"touch {marker}", kind=kind))
        assert r.status_code == 403 and "--loadtester-commands" in r.text, r.text
    assert not marker.exists()


def test_task_types_it_does_not_run_are_400(api: TestClient) -> None:
    # server.go: a type with no task is "unknown task type"; Flagger's own helm, kubectl...
    # are named as such
    helm = api.post("/", json=task("upgrade -i podinfo ./chart", kind="helmv3"))
    assert helm.status_code == 400 and "Flagger's" in helm.text
    assert api.post("/", json=task("x", kind="nope")).text == "unknown task type nope"
    assert api.post("/", json={**CANARY}).text == "metadata not found in payload"


def test_only_the_command_reaches_the_shell(api: TestClient, tmp_path: Path) -> None:
    # the Canary's name and other metadata are never part of what the shell runs
    marker = tmp_path / "injected"
    body = {**task("true", logCmdOutput=f"$(touch {marker})"),
            "name": f"x; touch {marker}", "namespace": f"`touch {marker}`"}
    assert api.post("/", json=body).status_code == 200
    assert not marker.exists()


def test_with_a_token_only_its_bearer_runs_commands(shell: ShellTasks, tmp_path: Path) -> None:
    # the tester's port is open to every local user: the control plane's calls carry the
    # token, and no one else has a command run
    api = TestClient(LoadTester(client=None, shell=shell, token="s3cret").app)
    marker = tmp_path / "ran"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = api.post("/", json=task(f"touch {marker}"), headers=headers)
        assert r.status_code == 401
    assert not marker.exists()
    assert api.post("/gate/approve", json=CANARY).status_code == 200  # gates stay open
    ok = api.post("/", json=task(f"touch {marker}"), headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and marker.exists()

"""A restarted control plane stops what its crashed predecessor left running, only that."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from meshpilot.server.leftovers import find_leftovers, stop_leftovers

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


def start(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    """Start a sleeper and wait until it runs: before its exec, /proc shows the parent's
    command line and environment, and a search would not find it yet."""
    proc = subprocess.Popen([*SLEEPER, *args], stdout=subprocess.PIPE, text=True,
                            **kwargs)  # type: ignore[call-overload]
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    return proc


def test_stops_processes_of_this_run_dir_and_no_others(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    other_dir = tmp_path / "other"
    ours = start(env={**os.environ, "MESHPILOT_RUN_DIR": str(run_dir)},
                            start_new_session=True)
    # An Envoy-like process is recognised by its command line naming the run dir.
    by_cmdline = start(str(run_dir / "sidecar.json"), start_new_session=True)
    theirs = start(env={**os.environ, "MESHPILOT_RUN_DIR": str(other_dir)},
                              start_new_session=True)
    try:
        found = set(find_leftovers(run_dir))
        assert {ours.pid, by_cmdline.pid} <= found
        assert theirs.pid not in found
        stopped = stop_leftovers(run_dir, grace=0.5)  # our own children stay zombies until reaped
        assert {ours.pid, by_cmdline.pid} <= set(stopped)
        assert ours.wait(timeout=5) is not None
        assert by_cmdline.wait(timeout=5) is not None
        assert theirs.poll() is None
    finally:
        for proc in (ours, by_cmdline, theirs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_processes_of_adopted_sessions_are_kept(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "MESHPILOT_RUN_DIR": str(run_dir)}
    adopted = start(env=env, start_new_session=True)
    # a child of the adopted process: same session, same marker, kept as well
    child = start(env=env)  # (our child here, in our session)
    stray = start(env=env, start_new_session=True)
    try:
        found = set(find_leftovers(run_dir, keep_sessions={adopted.pid, os.getsid(0)}))
        assert stray.pid in found
        assert adopted.pid not in found and child.pid not in found
        stop_leftovers(run_dir, grace=0.5, keep_sessions={adopted.pid, os.getsid(0)})
        assert stray.wait(timeout=5) is not None
        assert adopted.poll() is None and child.poll() is None
    finally:
        for proc in (adopted, child, stray):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

"""The CPU time of a pod's process group, read from /proc: every live process of the
group counts, and so does a child its parent has waited for (what the kubelet's cgroup
figures include)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import wait_for

from meshpilot.runtime.cpu import group_cpu_seconds

BURN = ("import time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.3: pass\n")


def test_a_group_counts_its_processes_and_waited_children() -> None:
    """A shell (group leader) runs a Python child that burns 0.3 s of CPU and waits for
    it, then sleeps: the group's CPU time includes the child's."""
    script = f"{sys.executable} -c '{BURN}'; sleep 5"
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        deadline = 50
        used = 0.0
        for _ in range(deadline):  # bounded: 50 x 0.1 s
            used = group_cpu_seconds([proc.pid]).get(proc.pid, 0.0)
            if used >= 0.25:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert used >= 0.25
        assert group_cpu_seconds([]) == {}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    wait_for(lambda: proc.pid not in group_cpu_seconds([proc.pid]), 5)

"""The CPU time of a pod's process group, read from /proc: every live process of the
group counts, and so does a child its parent has waited for (what the kubelet's cgroup
figures include)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import wait_for

from meshpilot.runtime.cpu import group_cpu_seconds

BURN = ("import time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.3: pass\n")


def test_a_group_counts_its_processes_and_waited_children() -> None:
    """A shell (group leader) runs a Python child that burns 0.3 s of CPU, waits for it,
    then becomes ``sleep``: once only the idle sleep is left in the group, the group's
    CPU time still holds the child's (the CPU time of waited-for children, which
    ``exec`` keeps)."""
    script = f"{sys.executable} -c '{BURN}'; exec sleep 5"
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    try:
        wait_for(lambda: cmdline.read_bytes().startswith(b"sleep"), 10)
        assert group_cpu_seconds([proc.pid]).get(proc.pid, 0.0) >= 0.25
        assert group_cpu_seconds([]) == {}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    assert proc.pid not in group_cpu_seconds([proc.pid])

"""Stop the processes a previous control plane left behind (after a crash or SIGKILL).

Pods and proxies run in their own sessions so that a crash of the control plane does
not take traffic down. A new control plane on the same state directory adopts what it
can (see :meth:`meshpilot.server.controlplane.MeshControlPlane.start`) and passes the
sessions of the adopted processes as ``keep_sessions``; everything else of the run
directory must go. Processes are recognised by the run directory: Envoy's command line
names its config file there, and every pod's environment carries ``MESHPILOT_RUN_DIR``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection
from pathlib import Path

from meshpilot.proxy.adopted import proc_stat
from meshpilot.runtime.runtime import RUN_DIR_ENV


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def find_leftovers(run_dir: Path, keep_sessions: Collection[int] = ()) -> list[int]:
    """Pids of processes that belong to ``run_dir`` (never our own, nor any process of
    a session in ``keep_sessions``)."""
    marker = str(run_dir).encode()
    env_marker = f"{RUN_DIR_ENV}={run_dir}".encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        cmdline = _read(entry / "cmdline")
        if marker in cmdline or env_marker in _read(entry / "environ").split(b"\0"):
            stat = proc_stat(int(entry.name))
            if stat is not None and (stat[2] in keep_sessions or stat[0] in "ZX"):
                continue  # adopted, or already dead (a zombie waiting for its parent)
            found.append(int(entry.name))
    return found


def stop_leftovers(run_dir: Path, grace: float = 3.0,
                   keep_sessions: Collection[int] = ()) -> list[int]:
    """SIGTERM every leftover, SIGKILL what is still there after ``grace``."""
    pids = find_leftovers(run_dir, keep_sessions)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids

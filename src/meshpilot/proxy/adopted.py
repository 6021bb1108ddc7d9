"""Processes this process did not start: the ones a crashed control plane left running.

A restarted control plane adopts the pods and proxies of its predecessor instead of
killing them (see :mod:`meshpilot.server.leftovers`). Those processes are not its
children, so ``waitpid`` cannot watch them: :class:`AdoptedProcess` offers the part of
:class:`subprocess.Popen` the runtime uses (``pid``, ``poll``, ``wait``, ``send_signal``,
``kill``) and detects the exit through a pidfd (Linux >= 5.3) or, failing that, /proc.

A pid alone proves nothing (pids are reused), so a process is only adopted when its
start time (``/proc/<pid>/stat``, in clock ticks since boot) is the one recorded when it
was started, and the caller checks its command line or environment as well.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["AdoptedProcess", "proc_cmdline", "proc_environ", "proc_stat", "start_time"]

UNKNOWN_EXIT = -1
"""The exit code of an adopted process: unknown, only its parent could reap it."""


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, process group, session, start time) of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 of proc(5): state; pgrp is 5, session 6, starttime 22
    return fields[0], int(fields[2]), int(fields[3]), int(fields[19])


def proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="surrogateescape") for a in raw.split(b"\0")[:-1]]


def proc_environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return out


def start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[3] if stat is not None else None


class AdoptedProcess:
    """A running process that is not our child, watched until it exits."""

    def __init__(self, pid: int, fd: int | None) -> None:
        self.pid = pid
        self.args = [str(pid)]
        self.returncode: int | None = None
        self._fd = fd

    @classmethod
    def attach(cls, pid: int, recorded_start: int) -> AdoptedProcess | None:
        """The process ``pid`` if it runs and started at ``recorded_start``, else None."""
        if pid <= 0 or pid == os.getpid():
            return None
        fd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            fd = os.pidfd_open(pid)  # pins the process: its pid cannot be reused now
        stat = proc_stat(pid)
        if stat is None or stat[0] in "ZX" or stat[3] != recorded_start:
            if fd is not None:
                os.close(fd)
            return None
        return cls(pid, fd)

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self._fd is not None:
            readable, _, _ = select.select([self._fd], [], [], 0)
            exited = bool(readable)  # a pidfd becomes readable when the process exits
        else:
            stat = proc_stat(self.pid)
            exited = stat is None or stat[0] in "ZX"
        if exited:
            self.returncode = UNKNOWN_EXIT
            self.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self._fd is not None:
                signal.pidfd_send_signal(self._fd, sig)
            else:
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __repr__(self) -> str:
        return f"AdoptedProcess(pid={self.pid}, returncode={self.returncode})"

"""The CPU time a pod's app processes have used, read from /proc.

Each container of a local pod runs as the leader of its own process group, so the
container's CPU time is that of every live process in the group (user + system time,
fields 14 and 15 of ``/proc/PID/stat``) plus what they collected from children they
waited for (fields 16 and 17): a shell that runs a busy child counts the child. This is
the figure the kubelet reports from a container's cgroup, without needing one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["group_cpu_seconds"]

_PROC = "/proc"


def _stat_fields(path: Path) -> list[str] | None:
    try:
        text = (path / "stat").read_text()
    except (OSError, ValueError):
        return None
    # the command name (field 2) may hold spaces and ')': split after the last ')'
    return text.rsplit(")", 1)[1].split()


def group_cpu_seconds(groups: Iterable[int]) -> dict[int, float]:
    """CPU seconds used by each process group of ``groups`` (absent: no live process)."""
    wanted = set(groups)
    if not wanted:
        return {}
    ticks = float(os.sysconf("SC_CLK_TCK"))
    out: dict[int, float] = {}
    try:
        entries = list(Path(_PROC).iterdir())
    except OSError:
        return out
    for entry in entries:
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry)
        # fields[0] is field 3 of proc(5): pgrp is field 5, utime..cstime 14-17
        if fields is None or len(fields) < 15 or int(fields[2]) not in wanted:
            continue
        used = sum(int(f) for f in fields[11:15]) / ticks
        out[int(fields[2])] = out.get(int(fields[2]), 0.0) + used
    return out

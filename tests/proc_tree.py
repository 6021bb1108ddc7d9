"""The processes descended from one, read from /proc: what a test kills with it.

A process reparented to init once its parent died is no longer found from that parent,
so the tree is read *before* anything of it is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return int(text.rsplit(")", 1)[1].split()[1])  # field 4 of proc(5): ppid


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children, theirs, ...), nearest first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(0), [])
        found += below
        todo += below
    return found


def kill_all(pids: list[int]) -> None:
    """SIGKILL each of ``pids`` that is still there."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

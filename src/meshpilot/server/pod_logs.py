"""A pod's logs as ``kubectl logs`` reads them: ``GET .../pods/{name}/log``.

``container=istio-proxy`` (Istio's name for the sidecar container) is the sidecar: its
access log (Istio's default TEXT format, one line per request; see
:mod:`meshpilot.xds.translate.access_log`) and Envoy's own output, as one stream in time
order, as Istio's ``istio-proxy`` container prints both to its stdout. Envoy stamps its own
lines in local time (``[2026-12-07 06:10:01.123][pid][warning]…``) and access log lines in
UTC (``[2026-12-07T06:10:01.123Z]``); both are read back to one clock to merge them, and a
line with no stamp of its own (a continuation) keeps the time of the line before it.
Any other container (or none) is the pod's app output.

``tailLines`` reads from the end of the files, so a 10 MB access log costs what was asked.
``follow`` keeps the response open and sends lines as they are written, across a rotation
(the file renamed and a fresh one started), until the client goes away or the pod does.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshpilot.proxy.access_log import tail_lines

PROXY_CONTAINER = "istio-proxy"
"""The container name Istio users pass to ``kubectl logs -c`` for the sidecar."""

FOLLOW_POLL_SECONDS = 0.25

_ACCESS_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\]")
_ENVOY_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\]")


@dataclass(frozen=True)
class LogSource:
    """One log as files, oldest first (a rotated file, then the live one)."""

    files: tuple[Path, ...]

    @property
    def live(self) -> Path:
        return self.files[-1]


def stamp(line: str) -> float | None:
    """The time a log line was written, seconds since the epoch, if it starts with an
    access log (UTC) or Envoy (local time) stamp."""
    found = _ACCESS_STAMP.match(line)
    if found:
        return datetime.fromisoformat(found.group(1)).replace(tzinfo=UTC).timestamp()
    found = _ENVOY_STAMP.match(line)
    if found:
        return datetime.fromisoformat(found.group(1)).astimezone().timestamp()
    return None


def _timed(lines: Iterable[str], order: int) -> list[tuple[float, int, int, str]]:
    """Lines keyed for a stable merge: (time, source order, position, line)."""
    out = []
    last = 0.0
    for i, line in enumerate(lines):
        last = stamp(line) or last
        out.append((last, order, i, line))
    return out


def read_logs(sources: Iterable[LogSource], tail: int | None) -> list[str]:
    """The last ``tail`` lines (all if None) of ``sources`` merged in time order."""
    keyed = [_timed(tail_lines(list(s.files), tail), order)
             for order, s in enumerate(sources)]
    merged = [item[3] for item in heapq.merge(*keyed)]
    return merged if tail is None else merged[-tail:] if tail else []


class _Follower:
    """New lines of one live file since it was last read, across rotations.

    The file is read through an open handle, so a rotation (the file renamed aside, a
    fresh one in its place) loses nothing: what was written to the old file before the
    rename, and what the writer still puts there until it reopens its log, is read from
    the old handle, which is kept and drained for ``RETIRE_SECONDS`` after the switch."""

    RETIRE_SECONDS = 5.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = self._open(at_end=True)
        self._retired: list[tuple[Any, float]] = []  # (old handle, when it was retired)
        self._partial = b""

    def _open(self, *, at_end: bool) -> Any:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - held across reads, closed in close()
        except OSError:
            return None
        if at_end:
            fh.seek(0, os.SEEK_END)
        return fh

    def _switch_if_rotated(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            return
        if self._fh is not None and os.fstat(self._fh.fileno()).st_ino == st.st_ino:
            if st.st_size < self._fh.tell():  # truncated in place
                self._fh.seek(0)
            return
        if self._fh is not None:
            self._retired.append((self._fh, time.monotonic()))
        self._fh = self._open(at_end=False)

    def read(self) -> list[str]:
        data = b""
        now = time.monotonic()
        for fh, _ in self._retired:
            data += fh.read()
        for fh, since in [r for r in self._retired if now - r[1] > self.RETIRE_SECONDS]:
            fh.close()
            self._retired.remove((fh, since))
        if self._fh is not None:
            data += self._fh.read()
        self._switch_if_rotated()
        if self._fh is not None and self._retired:
            data += self._fh.read()
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in complete]

    def close(self) -> None:
        for fh in [self._fh, *(r[0] for r in self._retired)]:
            if fh is not None:
                fh.close()
        self._fh, self._retired = None, []


async def follow(sources: Iterable[LogSource], tail: int | None,
                 alive: Callable[[], bool]) -> AsyncIterator[bytes]:
    """:func:`read_logs`, then every new line as it is written, while ``alive()``."""
    followers = [_Follower(s.live) for s in sources]
    try:
        for line in read_logs(sources, tail):
            yield (line + "\n").encode()
        checked = time.monotonic()
        while True:
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            lines = [line for f in followers for line in f.read()]
            if lines:
                yield "".join(line + "\n" for line in lines).encode()
            if time.monotonic() - checked > 1.0:
                checked = time.monotonic()
                if not alive():
                    return
    finally:
        for follower in followers:
            follower.close()


def parse_tail(value: str | None) -> int | None:
    """``tailLines``: a count of lines, none meaning all; a bad value raises ValueError."""
    if value is None or value == "":
        return None
    count = int(value)
    if count < 0:
        raise ValueError("tailLines must not be negative")
    return count


def proxy_sources(envoy_log: str, access_log: str) -> list[LogSource]:
    """The sidecar container's logs: Envoy's own output, and its access log (if on)."""
    out = [LogSource((Path(envoy_log),))] if envoy_log else []
    if access_log:
        path = Path(access_log)
        out.append(LogSource((path.with_name(path.name + ".1"), path)))
    return out


def exists(sources: Iterable[LogSource]) -> bool:
    return any(os.path.exists(f) for s in sources for f in s.files)

"""The access log file of one Envoy: where it lives, who may read it, how big it grows.

Envoy writes the lines (its file access logger, configured over xDS from the path the
proxy's node names); whoever runs the Envoy owns the file. The file sits next to the
proxy's bootstrap and its own log (``<run dir>/<name>.access.log``), so the runtime can
find it from the proxy's name alone.

- **Mode 0600.** Envoy creates a missing log file readable by everyone; the file is
  created here first, owner-only, and Envoy appends to what exists.
- **Bounded.** A soak must not fill the disk: once the file passes ``limit`` bytes it is
  renamed to ``<name>.access.log.1`` (replacing the previous one), a fresh 0600 file takes
  its place, and Envoy is told to reopen its access logs (``SIGUSR1``, Envoy's signal for
  log rotation). Lines Envoy writes in between land in the renamed file, so none is lost;
  at most ``2 * limit`` (plus what arrives between two checks) is kept per proxy.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

__all__ = ["DEFAULT_LIMIT_BYTES", "AccessLogFile", "access_log_path"]

DEFAULT_LIMIT_BYTES = 10 * 1024 * 1024
"""Rotate past 10 MiB: some 30,000 Istio-format lines, hours of a developer's traffic."""

CHECK_INTERVAL_SECONDS = 1.0
"""How often :meth:`AccessLogFile.upkeep` looks at the size (a ``stat``)."""


def access_log_path(run_dir: Path, name: str) -> Path:
    """Where the proxy ``name`` run from ``run_dir`` keeps its access log."""
    return Path(run_dir) / f"{name}.access.log"


class AccessLogFile:
    """One proxy's access log, kept owner-only and under ``limit`` bytes (about)."""

    def __init__(self, path: Path, limit: int = DEFAULT_LIMIT_BYTES) -> None:
        self.path = Path(path)
        self.limit = limit
        self._next_check = 0.0

    @property
    def rotated_path(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def prepare(self) -> None:
        """Create the file (0600) if missing and make an existing one 0600, before Envoy
        opens it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def upkeep(self, now: float, pid: int | None) -> bool:
        """Rotate if due and past the limit (at most one ``stat`` per check interval);
        True if it rotated. ``pid``: the Envoy to tell to reopen."""
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_INTERVAL_SECONDS
        try:
            size = self.path.stat().st_size
        except OSError:
            return False
        if size <= self.limit:
            return False
        return self.rotate(pid)

    def rotate(self, pid: int | None) -> bool:
        """Move the file aside, start a fresh one, make Envoy reopen (see the module)."""
        try:
            os.replace(self.path, self.rotated_path)
            self.prepare()
        except OSError:
            return False
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGUSR1)
        return True

    def remove(self) -> None:
        """Delete both files (the proxy is gone for good: a pod deleted takes its logs
        with it, as in Kubernetes, so pods coming and going do not add up on disk)."""
        for path in (self.path, self.rotated_path):
            path.unlink(missing_ok=True)

    def tail(self, lines: int | None) -> list[str]:
        """The last ``lines`` lines (all if None), from the rotated file too if needed."""
        return tail_lines([self.rotated_path, self.path], lines)


def tail_lines(paths: list[Path], lines: int | None, *, chunk: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of ``paths`` read as one text in order (all if None). Reads
    from the end, so a 10 MB file costs what the lines asked for, not its size."""
    out: list[str] = []
    for path in reversed(paths):
        want = None if lines is None else lines - len(out)
        if want is not None and want <= 0:
            break
        out[:0] = _file_tail(path, want, chunk)
    return out


def _file_tail(path: Path, want: int | None, chunk: int) -> list[str]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return []
    with fh:
        if want is None:
            return fh.read().decode(errors="replace").splitlines()
        end = fh.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= want:
            step = min(chunk, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
        text = data.decode(errors="replace").splitlines()
        return text[-want:] if want else []

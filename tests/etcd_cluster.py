"""Real etcd servers (Debian's etcd-server) for the tests: one member or a cluster of
three, each on its own 127.0.0.x loopback address, with a data directory under a temp
dir. A member starts in well under a second; a test session starts one per xdist worker
and gives every test its own key prefix."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.processes import stop_process

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
START_TIMEOUT = 20.0


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Member:
    name: str
    host: str
    data_dir: Path
    client_port: int = 0
    peer_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.client_port = self.client_port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def start(self, initial_cluster: str, token: str) -> None:
        log = (self.data_dir.parent / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", self.peer_url,
             "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", initial_cluster, "--initial-cluster-token", token,
             "--initial-cluster-state", "new", "--max-txn-ops", "1024",
             # fast elections: a killed member's leadership moves in a fraction of a second
             "--heartbeat-interval", "50", "--election-timeout", "500",
             "--logger", "zap", "--log-outputs", "stderr"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def healthy(self) -> bool:
        try:
            answer = httpx.get(f"{self.endpoint}/health", timeout=1.0).json()
        except (httpx.HTTPError, ValueError):
            return False
        return str(answer.get("health")) == "true"

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@dataclass
class Cluster:
    members: list[Member]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """What ``meshpilot up --store`` takes."""
        return "etcd://" + ",".join(f"{m.host}:{m.client_port}" for m in self.members)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


@contextlib.contextmanager
def running(base: Path, size: int = 1, name: str = "etcd") -> Iterator[Cluster]:
    """A fresh etcd cluster of ``size`` members on 127.0.0.1, .2, ... until the block
    ends; every member healthy (a leader elected) before it starts."""
    base.mkdir(parents=True, exist_ok=True)
    members = [Member(f"{name}{i}", f"127.0.0.{i + 1}", base / f"{name}{i}.data")
               for i in range(size)]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    cluster = Cluster(members)
    try:
        for member in members:
            member.start(initial, f"{name}-{base.name}")
        deadline = time.monotonic() + START_TIMEOUT
        while not all(m.healthy() for m in members):
            dead = [m.name for m in members if m.process and m.process.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join((base / f"{m.name}.log").read_text()[-2000:] for m in members)
                raise RuntimeError(f"etcd did not start ({dead or 'timeout'}):\n{logs}")
            time.sleep(0.05)
        yield cluster
    finally:
        cluster.stop()

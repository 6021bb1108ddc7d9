"""Other hosts for the tests, as network namespaces: a bridge in the test's own namespace
(the control plane's host) with an address of a private /24 chosen per test, and one
namespace per joined host, each on a veth pair to that bridge. Everything is removed at
the end, also when the test fails: the namespaces (their veth ends go with them), the
bridge, and every process started in them.

Needs root (CAP_NET_ADMIN) and ``ip`` (iproute2), which CI installs.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET_PREFIX = "10.77"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=10)


def _free_subnet() -> int:
    """A third octet no interface here uses (tests may run side by side)."""
    used = ip("-o", "-4", "addr").stdout
    for _ in range(50):
        third = random.randint(1, 254)
        if f"{SUBNET_PREFIX}.{third}." not in used:
            return third
    raise RuntimeError(f"no free {SUBNET_PREFIX}.X.0/24 subnet")


@dataclass
class Host:
    """A joined host: a network namespace with one address on the bridge."""

    netns: str
    address: str
    link: str  # the veth end on the bridge side (set it down to cut the host off)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside this host's namespace (output to ``log``)."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def python(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        return self.popen([sys.executable, *args], log)

    def cut_off(self) -> None:
        """The host's link goes down: it can neither reach nor be reached."""
        ip("link", "set", self.link, "down")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@dataclass
class Network:
    """The bridge (``address`` is the control plane's host on it) and the joined hosts."""

    bridge: str
    third: int
    hosts: list[Host] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.third}.1"

    def add_host(self) -> Host:
        n = len(self.hosts) + 2
        tag = secrets.token_hex(3)
        netns, outer, inner = f"mph-{tag}", f"mpv{tag}", f"mpi{tag}"
        host = Host(netns, f"{SUBNET_PREFIX}.{self.third}.{n}", outer)
        ip("netns", "add", netns)
        self.hosts.append(host)  # from here on, removed at teardown
        ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", netns)
        ip("link", "set", outer, "master", self.bridge)
        ip("link", "set", outer, "up")
        inside = ("netns", "exec", netns, "ip")
        ip(*inside, "addr", "add", f"{host.address}/24", "dev", inner)
        ip(*inside, "link", "set", inner, "up")
        ip(*inside, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.stop()
            ip("link", "delete", host.link, check=False)  # and its peer with it
            ip("netns", "delete", host.netns, check=False)
        ip("link", "delete", self.bridge, check=False)


@contextlib.contextmanager
def network() -> Iterator[Network]:
    """A bridge with this host's address on a fresh private /24; removed on exit."""
    third = _free_subnet()
    net = Network(f"mpbr{secrets.token_hex(3)}", third)
    try:
        ip("link", "add", net.bridge, "type", "bridge")
        ip("addr", "add", f"{net.address}/24", "dev", net.bridge)
        ip("link", "set", net.bridge, "up")
        yield net
    finally:
        net.close()

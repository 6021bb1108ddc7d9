"""Loopback port helpers: pick a free port, wait for one to accept connections.

``free_port`` has the usual race (another process may take the port between our close and
the caller's bind). Its worst source is the kernel itself: a port-0 bind draws from the
ephemeral range, the very range every outgoing connection's source port comes from, so on
a busy machine a chosen port was often taken by some client's connection before Envoy
bound it ("Address already in use"). So ports come from below that range, where only
listeners live, each owner of a :class:`PortWalk` (a control plane, a test session)
walking it from a random start, and are checked by binding them. Callers that cannot
tolerate the remaining race should bind port 0 themselves and read the port back.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time

__all__ = ["LISTEN_RANGE", "PortWalk", "free_port", "port_open", "wait_port"]

LISTEN_RANGE = (10000, 32767)
"""Where :func:`free_port` draws from: above the well-known and common service ports,
below Linux's default ephemeral range (32768-60999); trimmed to end below the machine's
own ephemeral range if that starts lower."""
_ATTEMPTS = 64


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class PortWalk:
    """A walk through :data:`LISTEN_RANGE`: from a random start, one port after the other.
    Random picks by several owners (a test run's control planes, each holding ports it
    chose but has not bound yet) collide often; two walks collide only where they overlap,
    and one walk never hands out the same port twice."""

    def __init__(self) -> None:
        # not the process's seeded generator: processes that seed ``random`` alike
        # (tests) must not start their walks at the same port
        self._random = random.SystemRandom()
        self._lock = threading.Lock()
        self._pid = 0
        self._next = 0

    def take(self, low: int, high: int) -> int:
        with self._lock:
            if self._pid != os.getpid() or not low <= self._next <= high:
                self._pid = os.getpid()  # a forked child walks from a start of its own
                self._next = self._random.randint(low, high)
            port = self._next
            self._next = port + 1 if port < high else low
            return port


def free_port(host: str = "127.0.0.1", walk: PortWalk | None = None) -> int:
    """A TCP port on ``host`` that was free a moment ago: the next of ``walk`` through
    :data:`LISTEN_RANGE` (below the ephemeral range) that binds, else (a machine with no
    room there) one the kernel picks. Without a walk, a random one of the range: a caller
    that picks many ports keeps a walk."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low, high = LISTEN_RANGE
    high = min(high, _ephemeral_start() - 1)
    walk = walk if walk is not None else PortWalk()
    for _ in range(_ATTEMPTS if high > low else 0):
        port = walk.take(low, high)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # taken: the next one
            return port
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll until ``host:port`` accepts a connection; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if port_open(host, port, timeout=min(0.5, max(0.05, timeout))):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)

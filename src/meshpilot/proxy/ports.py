"""Loopback port helpers: pick a free port, wait for one to accept connections.

``free_port`` has the usual race (another process may take the port between our close and
the caller's bind). Its worst source is the kernel itself: a port-0 bind draws from the
ephemeral range, the very range every outgoing connection's source port comes from, so on
a busy machine a chosen port was often taken by some client's connection before Envoy
bound it ("Address already in use"). So ports are drawn at random from below that range,
where only listeners live, and checked by binding them. Callers that cannot tolerate the
remaining race should bind port 0 themselves and read the port back (Envoy: admin port 0
with ``--admin-address-path``).
"""

from __future__ import annotations

import random
import socket
import time

__all__ = ["LISTEN_RANGE", "free_port", "port_open", "wait_port"]

_random = random.SystemRandom()  # not the process's seeded generator: forked or seeded
# processes (pytest workers, tests that seed ``random``) must not draw the same ports


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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago: drawn at random from
    :data:`LISTEN_RANGE` (below the ephemeral range) and bound to check, else (a machine
    with no room there) one the kernel picks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low, high = LISTEN_RANGE
    high = min(high, _ephemeral_start() - 1)
    for _ in range(_ATTEMPTS if high > low else 0):
        port = _random.randint(low, high)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # taken: draw again
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

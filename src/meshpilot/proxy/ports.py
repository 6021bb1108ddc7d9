"""Loopback port helpers: pick a free port, wait for one to accept connections.

``free_port`` has the usual race (another process may take the port between our close and
the caller's bind); callers that cannot tolerate it should bind port 0 themselves and read
the port back (Envoy: admin port 0 with ``--admin-address-path``).
"""

from __future__ import annotations

import socket
import time

__all__ = ["free_port", "port_open", "wait_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (bind port 0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
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

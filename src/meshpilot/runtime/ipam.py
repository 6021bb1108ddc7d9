"""Pod IPs on loopback: one address of 127.0.0.0/8 per pod.

Linux routes all of 127.0.0.0/8 to ``lo``, so every pod can have its own address and
bind the same container ports as its siblings (``127.10.0.7:8080``, ``127.10.0.8:8080``)
without any network setup.

Several runtimes can share a machine (two control planes, parallel tests). An address
is only handed out when

* an exclusive ``flock`` on ``<lock_dir>/<ip>.lock`` is ours: the kernel drops the lock
  when the holder exits, however it exits, so a crashed runtime never leaks addresses and
  two live runtimes (in one process or several) never share one; and
* every port the pod needs (its container ports and the sidecar's outbound port) can be
  bound on it right now, which skips addresses some other program is using.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO

__all__ = ["DEFAULT_IP_RANGE", "IpAllocator", "IpRangeExhausted"]

DEFAULT_IP_RANGE = "127.10.0.0/16"


class IpRangeExhausted(RuntimeError):
    """No address of the range is free (or all are held by other runtimes)."""


def _default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"meshpilot-ipam-{os.getuid()}"


def ports_bindable(ip: str, ports: Iterable[int]) -> bool:
    """Whether every TCP port in ``ports`` can be bound on ``ip`` at this moment.

    SO_REUSEADDR as servers (and Envoy) use it, so sockets in TIME_WAIT from a previous
    pod on the same address do not count as taken.
    """
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((ip, port))
            except OSError:
                return False
    return True


class IpAllocator:
    """Hands out pod IPs from ``ip_range`` (a loopback CIDR) and takes them back.

    Addresses are handed out round-robin (the cursor moves on after each allocation), so
    an address just released is not reused at once: peers that still hold the old pod's
    endpoint for a moment never reach a new, different pod.
    """

    def __init__(self, ip_range: str = DEFAULT_IP_RANGE, *, lock_dir: Path | None = None,
                 loopback: bool = True) -> None:
        """``loopback=False`` takes a range of the host's own routable addresses (a
        joined host's pods, which other hosts reach); they must be assigned to it."""
        network = ipaddress.ip_network(ip_range, strict=False)
        if not isinstance(network, ipaddress.IPv4Network) or (loopback and not network.subnet_of(
            ipaddress.IPv4Network("127.0.0.0/8")
        )):
            raise ValueError(f"pod IP range {ip_range} must lie inside 127.0.0.0/8 (loopback)")
        self.network = network
        self.lock_dir = lock_dir or _default_lock_dir()
        self._hosts = [str(h) for h in network.hosts()] or [str(network.network_address)]
        self._cursor = 0
        self._held: dict[str, IO[bytes]] = {}
        self._lock = threading.Lock()

    @property
    def allocated(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._held)

    def allocate(self, ports: Iterable[int] = ()) -> str:
        """Reserve a free address on which every port in ``ports`` can be bound."""
        needed = sorted(set(ports))
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            count = len(self._hosts)
            for step in range(count):
                ip = self._hosts[(self._cursor + step) % count]
                if ip in self._held:
                    continue
                handle = self._try_lock(ip)
                if handle is None:
                    continue
                if not ports_bindable(ip, needed):
                    handle.close()  # closing drops the flock
                    continue
                self._held[ip] = handle
                self._cursor = (self._cursor + step + 1) % count
                return ip
        raise IpRangeExhausted(
            f"no free pod IP in {self.network} for ports {needed}: every address is in use "
            "by this or another runtime; configure a larger or different ip_range"
        )

    def acquire(self, ip: str) -> bool:
        """Reserve exactly ``ip`` (an adopted pod's address, whose ports are in use by
        that pod): True if its lock is ours now, False if another runtime holds it."""
        if ipaddress.ip_address(ip) not in self.network:
            return False
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if ip in self._held:
                return False
            handle = self._try_lock(ip)
            if handle is None:
                return False
            self._held[ip] = handle
            return True

    def release(self, ip: str) -> None:
        """Give ``ip`` back (unknown addresses are ignored)."""
        with self._lock:
            handle = self._held.pop(ip, None)
        if handle is not None:
            handle.close()

    def release_all(self) -> None:
        with self._lock:
            handles = list(self._held.values())
            self._held.clear()
        for handle in handles:
            handle.close()

    def _try_lock(self, ip: str) -> IO[bytes] | None:
        path = self.lock_dir / f"{ip}.lock"
        handle = open(path, "ab")  # noqa: SIM115 - kept open while the address is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return handle

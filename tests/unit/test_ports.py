"""Ports for listeners come from below the ephemeral range, so no client connection's
source port takes one before the listener binds it."""

from __future__ import annotations

import socket
import subprocess
import sys

from meshpilot.proxy.ports import LISTEN_RANGE, PortWalk, free_port


def _ephemeral_start() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
        return int(fh.read().split()[0])


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low, high = LISTEN_RANGE
    top = min(high, _ephemeral_start() - 1)
    walk = PortWalk()
    ports = [free_port(walk=walk) for _ in range(20)]
    assert all(low <= p <= top for p in ports), ports
    assert len(set(ports)) == len(ports)  # one walk never hands out a port twice
    for port in ports[:3]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_returned() -> None:
    held = []
    try:
        for _ in range(30):
            sock = socket.socket()
            sock.bind(("127.0.0.1", free_port()))
            held.append(sock)
        taken = {s.getsockname()[1] for s in held}
        assert all(free_port() not in taken for _ in range(200))
    finally:
        for sock in held:
            sock.close()


def test_separate_processes_walk_from_separate_starts() -> None:
    code = "from meshpilot.proxy.ports import free_port; print(free_port())"
    starts = {int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(4)}
    assert len(starts) > 1  # not one fixed start every process would share

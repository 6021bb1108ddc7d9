"""What a process listens on, read from /proc (no ``ss``/``netstat`` needed).

``/proc/<pid>/fd`` links name each open socket by inode (``socket:[N]``); the kernel's
tables ``/proc/net/tcp``, ``/proc/net/tcp6`` and ``/proc/net/unix`` (proc(5)) give each
inode's state and address, for the network namespace the reader is in.
"""

from __future__ import annotations

import os
from pathlib import Path

_TCP_LISTEN = "0A"  # TCP_LISTEN in the ``st`` column of /proc/net/tcp
_SO_ACCEPTCON = 0x10000  # a listening Unix socket, in the ``Flags`` column of /proc/net/unix


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds open."""
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            out.add(int(target[len("socket:["):-1]))
    return out


def tcp_listening(pid: int) -> set[tuple[str, int]]:
    """(address in the kernel's hex, port) of every TCP socket (IPv4 and IPv6) process
    ``pid`` listens on."""
    mine = socket_inodes(pid)
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == _TCP_LISTEN and int(fields[9]) in mine:
                address, _, port = fields[1].rpartition(":")
                out.add((address, int(port, 16)))
    return out


def tcp_listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on."""
    return {port for _, port in tcp_listening(pid)}


def ipv4_of(hex_address: str) -> str:
    """``0100007F`` -> ``127.0.0.1`` (/proc/net/tcp writes IPv4 in host byte order)."""
    raw = bytes.fromhex(hex_address)
    return ".".join(str(b) for b in reversed(raw)) if len(raw) == 4 else hex_address


def unix_listening_paths(pid: int) -> set[str]:
    """The paths of the Unix sockets process ``pid`` listens on."""
    mine = socket_inodes(pid)
    paths = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Num RefCount Protocol Flags Type St Inode Path
        if len(fields) == 8 and int(fields[6]) in mine and int(fields[3], 16) & _SO_ACCEPTCON:
            paths.add(fields[7])
    return paths

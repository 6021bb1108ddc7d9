"""Writing the CA's files so that a crash never leaves a torn or over-readable key.

Each file is written to a fresh temporary name in the same directory, created with its
final mode (so a private key is never readable by others, whatever the umask), flushed
to disk, then renamed over the target: readers see the old file or the new one, whole.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``, permission bits exactly ``mode``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have cleared bits of a public file's mode
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, path)
    _sync_directory(path.parent)


def write_private(path: Path, data: bytes) -> None:
    """A secret (a private key): owner read/write only."""
    write_atomically(path, data, PRIVATE_MODE)


def write_public(path: Path, data: bytes) -> None:
    """A certificate: world-readable, owner-writable."""
    write_atomically(path, data, PUBLIC_MODE)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (where the platform lets a directory be fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Where a proxy's admin Unix socket lives, and the private directory that holds it.

A proxy run from ``work_dir`` under the name ``name`` listens for admin on
``work_dir/admin/<short name>.sock``. The directory is 0700 and owned by the user
running meshpilot, and Envoy makes the socket itself 0600 (``pipe.mode``): Envoy creates
the socket with the process's umask and only then changes its mode, and the directory
closes that window. Another local user cannot even reach the socket.

A socket's path must fit ``sockaddr_un.sun_path``: 108 bytes with the terminating NUL, so
107. A deep state directory can exceed that; the proxies of that ``work_dir`` (all of
them: the choice depends on the directory only, not on a name's length) then use a
directory of their own under ``/tmp`` (``meshpilot-<uid>-<digest of work_dir>``: the
same one again after a restart, so a restarted control plane finds the proxies it
adopts), created 0700 and refused if it is a symbolic link or belongs to another user
(someone may create the name first to capture the sockets). Whoever runs the proxies of a
``work_dir`` removes the directory once they have all stopped
(:func:`remove_socket_dir`); a crash leaves it for the next start.

The short name is the proxy's name when that is short and plain, else its beginning and a
digest of it: pod names are bounded by Kubernetes' rules, not by ``sun_path``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from pathlib import Path

__all__ = ["DIR_MODE", "SOCKET_MODE", "SUN_PATH_MAX", "UnsafeSocketDir", "admin_socket_path",
           "prepare_socket_dir", "remove_socket_dir", "socket_dir"]

SUN_PATH_MAX = 107
"""Bytes of a socket path Linux accepts: ``sun_path`` is 108 with the terminating NUL."""
SOCKET_MODE = 0o600
DIR_MODE = 0o700
FALLBACK_ROOT = Path("/tmp")
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,18}")
_LONGEST_NAME = 19 + len(".sock")  # what socket_name gives at most


class UnsafeSocketDir(RuntimeError):
    """The socket directory exists but others could reach or replace what is in it."""


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def socket_name(name: str) -> str:
    """``name.sock`` for a short plain name, else its first characters and a digest."""
    if _PLAIN.fullmatch(name):
        return f"{name}.sock"
    head = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:10]
    return f"{head}-{_digest(name, 8)}.sock"


def socket_dir(work_dir: Path) -> Path:
    """The directory of the admin sockets of the proxies run from ``work_dir``:
    ``work_dir/admin`` if any proxy's socket fits there, else the private one in /tmp."""
    preferred = Path(work_dir).absolute() / "admin"
    if len(os.fsencode(preferred)) + 1 + _LONGEST_NAME <= SUN_PATH_MAX:
        return preferred
    digest = _digest(str(Path(work_dir).absolute()), 12)
    return FALLBACK_ROOT / f"meshpilot-{os.geteuid()}-{digest}"


def admin_socket_path(work_dir: Path, name: str) -> Path:
    """The admin socket of proxy ``name`` run from ``work_dir`` (see the module)."""
    return socket_dir(work_dir) / socket_name(name)


def remove_socket_dir(work_dir: Path) -> None:
    """Remove the socket directory of ``work_dir`` if it is empty: for the owner of its
    proxies, once all have stopped (so that none is about to bind in it)."""
    with contextlib.suppress(OSError):  # not empty, or gone: nothing to do
        os.rmdir(socket_dir(work_dir))


def prepare_socket_dir(directory: Path) -> None:
    """Make ``directory`` exist as a real directory of ours with mode 0700.

    Raises :class:`UnsafeSocketDir` when it is a symbolic link or another user's: then
    sockets in it could be reached or swapped by that user, and nothing is changed.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, DIR_MODE)
    try:  # checked and tightened through one handle: no swap between the two
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UnsafeSocketDir(
            f"{directory} is not a directory (a symbolic link or a file): remove it so "
            f"meshpilot can create its admin socket directory ({exc.strerror})") from exc
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise UnsafeSocketDir(
                f"{directory} belongs to uid {info.st_uid}, not to this user "
                f"({os.geteuid()}): remove it, or use a shorter state directory so the "
                f"admin sockets stay inside it")
        if stat.S_IMODE(info.st_mode) != DIR_MODE:
            os.fchmod(fd, DIR_MODE)  # ours: tighten it (mkdir's mode is cut by the umask)
    finally:
        os.close(fd)

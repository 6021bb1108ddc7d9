"""Where a proxy's admin socket goes, and the checks on its directory.

The limit is Linux's ``sockaddr_un.sun_path`` (unix(7): 108 bytes with the terminating
NUL); the checks follow what a program must do before trusting a directory in /tmp
(unix(7) notes that connecting needs write permission on the socket and search
permission on every directory above it).
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from meshpilot.proxy.admin_socket import (
    SUN_PATH_MAX,
    UnsafeSocketDir,
    admin_socket_path,
    prepare_socket_dir,
    remove_socket_dir,
    socket_dir,
    socket_name,
)


def test_short_plain_names_are_kept_and_long_ones_shortened() -> None:
    assert socket_name("mesh-proxy") == "mesh-proxy.sock"
    assert socket_name("myapp-v1-7c9d-x2x4z") == "myapp-v1-7c9d-x2x4z.sock"
    long = "a-deployment-name-of-sixty-characters-" + "x" * 22
    other = long[:-1] + "y"
    assert len(socket_name(long)) <= 24 and socket_name(long).startswith(long[:10])
    assert socket_name(long) != socket_name(other)  # the digest tells them apart
    assert "/" not in socket_name("../../etc/passwd")


def test_the_socket_stays_in_the_work_dir_while_the_path_fits() -> None:
    work = Path("/tmp/mp-state/run")  # a path, nothing is created
    assert admin_socket_path(work, "mesh-proxy") == work / "admin" / "mesh-proxy.sock"
    assert socket_dir(work) == work / "admin"


def test_a_path_too_long_for_sun_path_moves_to_a_private_tmp_dir(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["x" * 50] * 3)
    path = admin_socket_path(deep, "mesh-proxy")
    assert len(os.fsencode(deep / "admin" / "mesh-proxy.sock")) > SUN_PATH_MAX
    assert len(os.fsencode(path)) <= SUN_PATH_MAX
    assert path.parent.parent == Path("/tmp") and path.name == "mesh-proxy.sock"
    assert path.parent.name.startswith(f"meshpilot-{os.geteuid()}-")
    # stable for one work dir, distinct for another
    assert admin_socket_path(deep, "mesh-proxy") == path
    assert admin_socket_path(deep.parent / ("y" * 50), "mesh-proxy").parent != path.parent


def test_one_work_dir_puts_all_its_sockets_in_one_directory(tmp_path: Path) -> None:
    """The choice depends on the directory, not on a name: a work dir where a short name
    would still fit but the longest would not sends every proxy to /tmp."""
    base = len(os.fsencode(tmp_path.absolute() / "admin")) + 1
    work = tmp_path / ("w" * (SUN_PATH_MAX - base - 20))
    assert len(os.fsencode(work / "admin" / "a.sock")) <= SUN_PATH_MAX
    short, long = admin_socket_path(work, "a"), admin_socket_path(work, "b" * 19)
    assert short.parent == long.parent == socket_dir(work) != work / "admin"
    assert len(os.fsencode(long)) <= SUN_PATH_MAX


def test_the_owner_removes_the_directory_only_when_empty(tmp_path: Path) -> None:
    folder = socket_dir(tmp_path)
    prepare_socket_dir(folder)
    (folder / "left.sock").write_text("")
    remove_socket_dir(tmp_path)
    assert folder.is_dir()  # a proxy still has its socket there
    (folder / "left.sock").unlink()
    remove_socket_dir(tmp_path)
    assert not folder.exists()
    remove_socket_dir(tmp_path)  # gone already: nothing to do


def test_the_directory_is_made_0700_and_an_existing_one_tightened(tmp_path: Path) -> None:
    fresh = tmp_path / "admin"
    prepare_socket_dir(fresh)
    assert stat.S_IMODE(os.lstat(fresh).st_mode) == 0o700
    fresh.chmod(0o755)
    prepare_socket_dir(fresh)
    assert stat.S_IMODE(os.lstat(fresh).st_mode) == 0o700


def test_a_symlink_or_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "open"
    target.mkdir()
    target.chmod(0o777)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeSocketDir, match="symbolic link"):
        prepare_socket_dir(tmp_path / "link")
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o777  # untouched
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafeSocketDir, match="not a directory"):
        prepare_socket_dir(tmp_path / "file")


def test_another_users_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    """Someone who created the name first (in /tmp anyone can) must not get our
    sockets: refused, naming the owner."""
    taken = tmp_path / "taken"
    taken.mkdir(mode=0o777)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(taken, nobody, -1)
    before = os.lstat(taken).st_mode
    with pytest.raises(UnsafeSocketDir, match=f"belongs to uid {nobody}"):
        prepare_socket_dir(taken)
    assert os.lstat(taken).st_mode == before

"""A real Envoy's admin is a Unix socket only its user can reach, with no TCP port.

Envoy's admin has no authentication: whoever connects can stop the proxy
(``/quitquitquit``), drain it or change its runtime. Envoy lets the admin listen on a
``pipe`` address (a Unix socket) with a file ``mode`` (Envoy's API reference,
``config.core.v3.Pipe``); the kernel then checks the connecting user against the socket's
and its directory's permissions, which a loopback TCP port never does.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.builders import sidecar_node, static_envoy_config
from tests.proc_sockets import tcp_listening_ports, unix_listening_paths

from meshpilot.mesh.model import MeshSnapshot
from meshpilot.proxy.admin import AdminClient
from meshpilot.proxy.admin_socket import SUN_PATH_MAX, remove_socket_dir
from meshpilot.proxy.bootstrap import bootstrap
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.telemetry import ProxyIdentity, Target
from meshpilot.telemetry.history import History
from meshpilot.telemetry.scraper import Scraper
from meshpilot.telemetry.store import SeriesStore

pytestmark = pytest.mark.timeout(60)

def connect_as_nobody(path: Path) -> str:
    """What a connection attempt to ``path`` by the user ``nobody`` (group ``nogroup``,
    no supplementary groups) gives: a forked child drops to that user and tries."""
    nobody = pwd.getpwnam("nobody")
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        gid = nobody.pw_gid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        result = b"?"
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(nobody.pw_uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                sock.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                result = b"connected " + sock.recv(64).split(b"\r\n")[0]
        except OSError as exc:
            result = type(exc).__name__.encode()
        finally:
            os.write(write_end, result)
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            return pipe.read().decode()
    finally:
        os.waitpid(pid, 0)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A work directory every user may enter (tmp_path's parents are root's alone), so
    only the admin socket's own directory and mode keep ``nobody`` out."""
    path = Path(tempfile.mkdtemp(prefix="mp-admin-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def upstream_port() -> int:
    return free_port()


def test_admin_has_no_tcp_port_and_answers_on_its_socket(tmp_path: Path,
                                                         upstream_port: int) -> None:
    """The only TCP listener is the configured one; stats, ready and config_dump come
    through the socket (0600, in a 0700 directory)."""
    listen = free_port()
    with EnvoyProcess(static_envoy_config(listen, upstream_port=upstream_port),
                      name="private", work_dir=tmp_path) as envoy:
        assert envoy.wait_live(timeout=10) and wait_port("127.0.0.1", listen, timeout=5)
        assert envoy.pid is not None
        assert tcp_listening_ports(envoy.pid) == {listen}
        assert unix_listening_paths(envoy.pid) == {str(envoy.admin_socket)}
        assert "--admin-address-path" not in envoy.command()

        info = os.lstat(envoy.admin_socket)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        parent = os.lstat(envoy.admin_socket.parent)
        assert stat.S_IMODE(parent.st_mode) == 0o700 and parent.st_uid == os.geteuid()

        with AdminClient(envoy.admin_socket) as admin:
            assert admin.ready()
            assert "cluster.backend.upstream_cx_total" in admin.stats_dict(r"^cluster\.backend")
            dump = admin.config_dump("static_clusters")
            assert [c["cluster"]["name"] for c in dump["configs"]] == ["backend"]
            assert admin.server_info()["command_line_options"]["config_path"] == \
                str(envoy.config_path)


def test_another_user_cannot_connect_to_the_admin(open_dir: Path) -> None:
    """``nobody`` is refused by the 0700 directory and, were it opened, by the 0600
    socket; the same attempt with the socket made 0666 connects, so the refusals are the
    permissions at work and not a broken probe."""
    node = sidecar_node("demo-v1-abcde", "127.0.0.1", labels={"app": "demo"})
    doc = bootstrap(node, xds_host="127.0.0.1", xds_port=free_port())
    with EnvoyProcess(doc, name="demo", work_dir=open_dir) as envoy:
        path = envoy.admin_socket
        assert path.parent == open_dir / "admin"
        assert connect_as_nobody(path) == "PermissionError"
        path.parent.chmod(0o711)  # the directory passable: the socket's mode decides
        assert connect_as_nobody(path) == "PermissionError"
        path.chmod(0o666)
        # /ready answered (503: the proxy still waits for its configuration)
        assert connect_as_nobody(path) == "connected HTTP/1.1 503 Service Unavailable"
        assert envoy.running  # a quit from nobody would have been possible only now
        path.chmod(0o600)
        path.parent.chmod(0o700)
        assert envoy.admin.state() == "PRE_INITIALIZING"


def test_a_deep_work_dir_puts_the_socket_in_a_private_tmp_dir(tmp_path: Path) -> None:
    """A work directory too deep for ``sun_path`` (108 bytes): the socket goes to a 0700
    directory of this user under /tmp, the same one for the same work directory (a
    restarted control plane finds the proxies it adopts), and it works."""
    deep = tmp_path.joinpath(*["a-long-state-directory-name"] * 4)
    assert len(os.fsencode(deep / "admin" / "deep.sock")) > SUN_PATH_MAX
    doc = bootstrap(sidecar_node("deep-v1-abcde", "127.0.0.1", labels={}), xds_host="127.0.0.1",
                    xds_port=free_port())
    envoy = EnvoyProcess(doc, name="deep", work_dir=deep)
    path = envoy.admin_socket
    try:
        assert path.parent.parent == Path("/tmp")
        assert path.parent.name.startswith(f"meshpilot-{os.geteuid()}-")
        assert len(os.fsencode(path)) <= SUN_PATH_MAX
        assert EnvoyProcess(doc, name="deep", work_dir=deep).admin_socket == path
        with envoy:
            assert envoy.admin.state() == "PRE_INITIALIZING"
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
            info = os.lstat(path.parent)
            assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
        assert not path.exists()
        remove_socket_dir(deep)  # what the owner of the proxies does once all stopped
        assert not path.parent.exists()
    finally:
        envoy.stop(grace=1.0)
        shutil.rmtree(path.parent, ignore_errors=True)


def test_the_scraper_reads_stats_through_the_socket(tmp_path: Path,
                                                    upstream_port: int) -> None:
    """The telemetry scraper reads the proxy through its admin socket, keeps one client
    per proxy while it is a target, and closes it when the proxy goes away."""
    listen = free_port()
    node = sidecar_node("scraped-v1-abcde", "127.0.0.1", labels={})
    with EnvoyProcess(static_envoy_config(listen, upstream_port=upstream_port),
                      name="scraped", work_dir=tmp_path) as envoy:
        targets = [Target("scraped", str(envoy.admin_socket), envoy.pid,
                          ProxyIdentity.from_node(node), node)]
        scraper = Scraper(lambda: targets, lambda: MeshSnapshot(1, {}, {}), SeriesStore(),
                          History())
        try:
            scraper.scrape_once()
            scraper.scrape_once()
            cost = scraper.cost()
            assert (cost.proxies_read, cost.errors) == (2, 0)
            assert cost.bytes_read > 0
            assert list(scraper._admins) == [str(envoy.admin_socket)]
            targets.clear()
            scraper.scrape_once()
            assert scraper._admins == {}
        finally:
            scraper.stop()

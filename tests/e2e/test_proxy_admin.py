"""A running mesh: no proxy has an admin TCP port; each admin is a private Unix socket.

Envoy's admin has no authentication, so whoever reaches it can stop or reconfigure the
proxy. Each Envoy the control plane runs (the mesh proxy, the ingress gateway, every
sidecar) listens for admin on a Unix socket (Envoy's ``pipe`` address with ``mode``,
``config.core.v3.Pipe`` in Envoy's API reference), 0600 in a 0700 directory; users read
a proxy's config through the authenticated API (``proxy-config``), as Istio's
``istioctl proxy-config`` goes through istiod rather than to a port of the pod.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx

from meshpilot.proxy.admin import AdminClient
from tests.conftest import run_cli
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.proc_sockets import ipv4_of, tcp_listening, unix_listening_paths


def envoys_of(state_dir: Path) -> list[int]:
    """The pids of the Envoys whose bootstrap lies in ``state_dir``."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = [a.decode(errors="replace")
                    for a in (proc / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if args and args[0].endswith("envoy") and "-c" in args:
            config = args[args.index("-c") + 1]
            if config.startswith(str(state_dir) + os.sep):
                out.append(int(proc.name))
    return out


def answers_as_envoy_admin(host: str, port: int) -> bool:
    """Whether ``host:port`` answers ``/server_info`` as Envoy's admin does."""
    try:
        r = httpx.get(f"http://{host}:{port}/server_info", trust_env=False, timeout=5.0)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and "command_line_options" in r.text


def test_every_proxy_admin_is_a_private_socket_and_no_tcp_port(mesh: Mesh,
                                                                given: Given) -> None:
    given.applied(myapp.version("v1"), myapp.service())
    mesh.converge()
    (pod,) = mesh.pods_of("myapp-v1")
    sidecar_socket = pod["status"]["sidecarAdminSocket"]
    assert "sidecarAdmin" not in pod["status"]

    pids = envoys_of(Path(mesh.cp.state_dir))
    assert len(pids) >= 3, pids  # mesh proxy, ingress gateway, the sidecar
    sockets = set()
    for pid in pids:
        (path,) = unix_listening_paths(pid)  # the admin, and nothing else
        sockets.add(path)
        info, folder = os.lstat(path), os.lstat(Path(path).parent)
        assert stat.S_IMODE(info.st_mode) == 0o600, path
        assert stat.S_IMODE(folder.st_mode) == 0o700 and folder.st_uid == os.geteuid()
        for address, port in tcp_listening(pid):
            assert not answers_as_envoy_admin(ipv4_of(address), port), (pid, port)
    assert sidecar_socket in sockets

    with AdminClient(sidecar_socket) as admin:
        assert admin.ready()
        assert admin.stats_dict(r"^server\.live$") == {"server.live": 1}

    # what users run: through the control plane's authenticated API
    name = pod["metadata"]["name"]
    table = run_cli("proxy-config", "clusters", name, state_dir=mesh.cp.state_dir)
    assert table.returncode == 0, table.stderr
    assert "myapp.default.svc.cluster.local" in table.stdout

"""The control-plane process: ``python -m meshpilot.server --state-dir DIR``.

Binds the API to loopback (a free port unless one is given; HTTPS with ``--tls``, see
:mod:`meshpilot.server.api_tls`), writes ``endpoints.json`` only once the socket is
listening, and holds a lock on the state directory so two control planes never share one
store. What the process runs is made and wired in
:mod:`meshpilot.server.compose`; this module is the process around it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn

from meshpilot.api.base import parse_duration
from meshpilot.api.mesh_config import MeshConfig
from meshpilot.delivery import shell_tasks
from meshpilot.security import DEFAULT_TRUST_DOMAIN, DEFAULT_WORKLOAD_TTL
from meshpilot.security.options import SecurityOptions
from meshpilot.security.root_store import ROTATION_DIR, RootStore
from meshpilot.server import compose
from meshpilot.server.api import WATCH_BACKLOG_LIMIT
from meshpilot.server.api_tls import ApiTls
from meshpilot.server.autoscaling_wiring import SYNC_SECONDS
from meshpilot.server.body_limit import DEFAULT_MAX_BODY_BYTES
from meshpilot.server.dashboard.gate import PREFIX as DASHBOARD_PREFIX
from meshpilot.server.host_registry import HostHealth
from meshpilot.server.kubeconfig import kubeconfig, write_kubeconfig
from meshpilot.server.mesh_config_file import FLAG_HELP, load_mesh_config, own_network
from meshpilot.statedir import AlreadyRunning, StateDir
from meshpilot.store import Corrupt, Unavailable
from meshpilot.store.factory import open_store
from meshpilot.store.url import StoreSpec, parse_store_url
from meshpilot.validation.mesh_config import MeshConfigError
from meshpilot.validation.mesh_networks import network_name_problem

log = logging.getLogger("meshpilot.server")
DASHBOARD_PATH = DASHBOARD_PREFIX + "/"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


LISTEN_PORT_FILE = "listen-port"
"""The API port chosen for ``--listen`` (no ``--port``), reused by the next start: the
hosts that joined call it by that address."""


def bind_listen(state: StateDir, host: str, port: int) -> socket.socket:
    """Bind the API for other hosts: ``port`` if given, else the one the previous control
    plane on this state directory used (a fresh one if it is taken), recorded."""
    path = state.root / LISTEN_PORT_FILE
    if port == 0:
        try:
            return bind(host, int(path.read_text()))
        except (OSError, ValueError):
            pass
    sock = bind(host, port)
    path.write_text(str(sock.getsockname()[1]))
    return sock


def _url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


KUBE_HOST = "127.0.0.1"
"""Where the HTTPS listener for kubectl binds beside a plain-HTTP API: loopback only."""


class KubeListener:
    """The API served a second time, over HTTPS on a loopback port, in a thread of its
    own: what a kubeconfig points kubectl at when the API itself is plain HTTP (kubectl
    will not send a bearer token over HTTP). Same app, token and validation."""

    def __init__(self, app: Any, tls: ApiTls) -> None:
        self._tls = tls
        self._sock = bind(KUBE_HOST, 0)
        self._server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2,
            ssl_context_factory=lambda _config, _default: tls.context))
        original = self._server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original(sockets=sockets)
            self._renewal = asyncio.get_running_loop().create_task(tls.renew_forever())

        self._server.startup = startup  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]},
                                        name="kubectl-https", daemon=True)

    def start(self) -> str:
        """Serve; the URL a kubeconfig names."""
        self._thread.start()
        return _url(KUBE_HOST, self._sock.getsockname()[1], "https")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()


def _api_tls(state: StateDir, host: str, components: compose.Components,
             security: SecurityOptions) -> ApiTls:
    """The API's TLS, from the CA the mesh issues workload certificates from, followed
    through a root rotation (the same CA, loaded from its files, for a config plane
    without a mesh)."""
    mesh = components.mesh
    if mesh is not None:
        return ApiTls(mesh.certificates.ca, state, host, ttl=security.cert_ttl,
                      follow=lambda: mesh.certificates.ca)
    saved = RootStore(state.root / ROTATION_DIR).load(trust_domain=security.trust_domain)
    ca = saved.issuing if saved is not None else security.certificate_authority(state.root)
    return ApiTls(ca, state, host, ttl=security.cert_ttl)


def serve(
    state: StateDir, host: str, port: int, *, with_mesh: bool = True, envoy_concurrency: int = 1,
    security: SecurityOptions | None = None, tls: bool = False, access_log: bool = True,
    loadtester_commands: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    watch_limit: int = WATCH_BACKLOG_LIMIT, listen: str | None = None,
    host_health: HostHealth | None = None, store_spec: StoreSpec | None = None,
    hpa_sync_seconds: float = SYNC_SECONDS, mesh_config: MeshConfig | None = None,
    network: str = "",
) -> int:
    if listen:  # reachable from other hosts: the API there, and only over TLS
        host, tls = listen, True
    state.create()
    try:
        lock = state.acquire_lock()
    except AlreadyRunning as exc:
        print(f"meshpilot: {exc}", file=sys.stderr)
        return 3
    token = state.ensure_token()
    try:
        store = open_store(store_spec or StoreSpec(), state.database)
    except (Corrupt, Unavailable) as exc:
        lock.close()
        print(f"meshpilot: {exc}", file=sys.stderr)
        return 5
    sock = bind_listen(state, host, port) if listen else bind(host, port)
    api_port = sock.getsockname()[1]
    info: dict[str, Any] = {
        "stateDir": str(state.root),
        "pid": os.getpid(),
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    endpoints: dict[str, Any] = {
        "api": _url(host, api_port), "dashboard": _url(host, api_port) + DASHBOARD_PATH,
        "pid": os.getpid(), "stateDir": str(state.root)}
    local = own_network(mesh_config, network)
    if local:  # where this host's pods are, as `meshpilot status` shows it
        info["network"] = endpoints["network"] = local
    started = threading.Event()

    def publish(extra: dict[str, Any]) -> None:
        """Merge ``extra`` into endpoints.json (once the API is listening)."""
        endpoints.update(extra)
        if started.is_set():
            state.write_endpoints(endpoints)

    options = security if security is not None else SecurityOptions()
    try:
        components = compose.start(state, store, publish, with_mesh=with_mesh,
                                   envoy_concurrency=envoy_concurrency, security=options,
                                   access_log=access_log,
                                   loadtester_commands=loadtester_commands,
                                   api_token=token, listen=listen,
                                   host_health=host_health,
                                   hpa_sync_seconds=hpa_sync_seconds,
                                   api_url=_url(host, api_port, "https" if tls else "http"),
                                   mesh_config=mesh_config)
    except Exception as exc:
        store.close()
        lock.close()
        print(f"meshpilot: the mesh did not start: {exc}", file=sys.stderr)
        return 4
    try:
        api_tls = _api_tls(state, host, components, options) if tls else None
        # kubectl sends a kubeconfig's token over HTTPS only: beside a plain-HTTP API, the
        # same API is also served over HTTPS on a loopback port of its own, for kubectl
        kube_tls = _api_tls(state, KUBE_HOST, components, options) if not tls else None
    except Exception as exc:
        components.stop()
        store.close()
        lock.close()
        print(f"meshpilot: the API's TLS certificate could not be made: {exc}", file=sys.stderr)
        return 4
    if api_tls is not None:
        endpoints.update(api=_url(host, api_port, "https"), api_ca=str(state.api_ca_file),
                         dashboard=_url(host, api_port, "https") + DASHBOARD_PATH)
    # the server is made below; the dashboard's streams read should_exit once it runs
    app = components.app(token, info, max_body_bytes, watch_limit,
                         stopping=lambda: server.should_exit)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5,
        ssl_context_factory=(lambda _config, _default: api_tls.context) if api_tls else None)
    server = uvicorn.Server(config)
    kube = KubeListener(app, kube_tls) if kube_tls is not None else None

    original_startup = server.startup
    renewal: list[asyncio.Task[None]] = []  # held, so the task is not collected

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        if api_tls is not None:
            renewal.append(asyncio.get_running_loop().create_task(api_tls.renew_forever()))
        started.set()
        https_api = endpoints["api"] if api_tls is not None else None
        if kube is not None:
            https_api = endpoints["kube_api"] = kube.start()
        if https_api is not None:
            write_kubeconfig(state.kubeconfig_file,
                             kubeconfig(https_api, token, state.api_ca_file))
            endpoints["kubeconfig"] = str(state.kubeconfig_file)
        state.write_endpoints(endpoints)
        log.warning("meshpilot control plane listening on %s", endpoints["api"])

    server.startup = startup  # type: ignore[method-assign]

    # uvicorn re-raises the SIGTERM/SIGINT it caught once it has shut down; with the
    # default handlers that would kill the process before the cleanup below runs (stale
    # endpoints.json, exit code -15). These handlers make that re-raise a no-op, and
    # still stop the server if a signal arrives before uvicorn installs its own.
    def _stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.run(sockets=[sock])
    finally:
        if kube is not None:
            kube.stop()
        state.clear_endpoints()
        components.stop()
        store.close()
        lock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshpilot-server")
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-mesh", action="store_true",
                        help="config plane only: no xDS, proxies or local runtime")
    parser.add_argument("--envoy-concurrency", type=int, default=1,
                        help="Envoy worker threads per proxy")
    parser.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN,
                        help="SPIFFE trust domain of the workloads' identities")
    parser.add_argument("--ca-dir", default=None,
                        help="a plugged-in CA (ca-cert.pem, ca-key.pem, root-cert.pem, "
                             "cert-chain.pem); default: a root made in the state directory")
    parser.add_argument("--cert-ttl", type=_duration, default=DEFAULT_WORKLOAD_TTL,
                        help="workload (and API) certificate lifetime, e.g. 24h, 1h, 30s")
    parser.add_argument("--tls", action="store_true",
                        help="serve the API over HTTPS with a certificate from the mesh's CA "
                             "(its roots written to api-ca.pem in the state directory)")
    parser.add_argument("--access-log", choices=("on", "off"), default="on",
                        help="proxies write Istio-format access logs to files in the run "
                             "directory (`meshpilot logs POD --proxy`); on by default")
    parser.add_argument("--loadtester-commands", action="store_true",
                        help="the built-in load tester runs webhook commands (metadata type "
                             "bash and cmd) on this host, as this process's user")
    parser.add_argument("--max-body-bytes", type=_positive, default=DEFAULT_MAX_BODY_BYTES,
                        help="largest request body the API reads; larger ones get 413 "
                             f"(default {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--watch-backlog", type=_positive, default=WATCH_BACKLOG_LIMIT,
                        help="events one API watch may have queued unread before it is "
                             f"closed with 410 Gone (default {WATCH_BACKLOG_LIMIT})")
    parser.add_argument("--listen", default=None,
                        help="serve the API (HTTPS) and xDS (mutual TLS) at this address "
                             "for hosts that join; implies --tls")
    parser.add_argument("--host-timeout", type=_duration, default=None,
                        help="a joined host that has not reported for this long leaves "
                             "the endpoints (default 10s)")
    parser.add_argument("--host-grace", type=_duration, default=None,
                        help="... and its WorkloadEntry is deleted after this long "
                             "(default 5m)")
    parser.add_argument("--store", type=_store, default=StoreSpec(),
                        help="where the config lives: the SQLite file in the state "
                             "directory (default), or etcd://HOST:PORT,HOST:PORT/PREFIX (one or "
                             "more members, prefix optional) for replicas sharing one etcd")
    parser.add_argument("--hpa-sync-period", type=_duration,
                        default=timedelta(seconds=SYNC_SECONDS),
                        help="how often HorizontalPodAutoscalers are synced, as Kubernetes' "
                             "--horizontal-pod-autoscaler-sync-period (default 15s)")
    parser.add_argument("--mesh-config", default=None, help=FLAG_HELP)
    parser.add_argument("--network", default="",
                        help="the control-plane host's network (Istio's meshNetworks name; "
                             "default: the one listing fromRegistry: Kubernetes)")
    args = parser.parse_args(argv)
    if args.network and (problem := network_name_problem(args.network)):
        parser.error(f"--network: {problem}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # what the webhook commands did is what their authors asked to see
    logging.getLogger(shell_tasks.__name__).setLevel(logging.INFO)
    if os.environ.get("MESHPILOT_TIMELINE") == "1":  # stage times, for benchmarks
        logging.getLogger("meshpilot.timeline").setLevel(logging.DEBUG)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    security = SecurityOptions(trust_domain=args.trust_domain,
                               ca_dir=Path(args.ca_dir) if args.ca_dir else None,
                               cert_ttl=args.cert_ttl)
    state = StateDir.resolve(args.state_dir)
    try:
        mesh_config = load_mesh_config(state, args.mesh_config, args.network)
    except MeshConfigError as exc:
        print(f"meshpilot: mesh config refused:\n{exc}", file=sys.stderr)
        return 2
    return serve(state, args.host, args.port, mesh_config=mesh_config, network=args.network,
                 with_mesh=not args.no_mesh, envoy_concurrency=args.envoy_concurrency,
                 security=security, tls=args.tls, access_log=args.access_log == "on",
                 loadtester_commands=args.loadtester_commands,
                 max_body_bytes=args.max_body_bytes, watch_limit=args.watch_backlog,
                 listen=args.listen, host_health=HostHealth.of(args.host_timeout,
                                                               args.host_grace),
                 store_spec=args.store,
                 hpa_sync_seconds=max(0.1, args.hpa_sync_period.total_seconds()))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of bytes")
    return value


def _store(text: str) -> StoreSpec:
    try:
        return parse_store_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    raise SystemExit(main())

"""The composition root: the one place where the control-plane process's components are
made and connected.

Each component is handed the ports it uses, never another component: the delivery loop
gets the store, a view of the runtime's pods, the telemetry's counts and a way to publish
its endpoint, not the mesh control plane, so neither imports the other. Components start
in dependency order (the mesh, whose runtime and telemetry the rollouts read, before the
rollouts) and stop in the reverse one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.routing import BaseRoute

from meshpilot.api.argo import Rollout
from meshpilot.api.identity import ObjectKey
from meshpilot.api.mesh_config import MeshConfig
from meshpilot.delivery.argo.controller import ArgoController
from meshpilot.delivery.argo.summary import summarize as argo_summary
from meshpilot.runtime import Pod
from meshpilot.security.options import SecurityOptions
from meshpilot.server import envoy_filter_check
from meshpilot.server.api import WATCH_BACKLOG_LIMIT, create_app
from meshpilot.server.autoscaling_wiring import SYNC_SECONDS, AutoscalerLoop
from meshpilot.server.body_limit import DEFAULT_MAX_BODY_BYTES
from meshpilot.server.ca_api import CaAPI
from meshpilot.server.config_service import ConfigService
from meshpilot.server.controlplane import MeshControlPlane
from meshpilot.server.dashboard import views
from meshpilot.server.dashboard.auth import DashboardAuth
from meshpilot.server.dashboard.events import never
from meshpilot.server.dashboard.routes import Dashboard
from meshpilot.server.delivery_wiring import DeliveryLoop, Publish, TelemetryTraffic
from meshpilot.server.host_pods import HostPods
from meshpilot.server.host_pods_api import HostPodsAPI
from meshpilot.server.host_registry import HostHealth, HostRegistry
from meshpilot.server.host_watch import HostWatch
from meshpilot.server.hosts_api import HostRoutesGate, HostsAPI
from meshpilot.server.leader_api import LeaderAPI
from meshpilot.server.mesh_api import MeshAPI, proxy_statuses
from meshpilot.server.replica_wiring import ReplicaState
from meshpilot.server.rollout_api import RolloutAPI
from meshpilot.server.shared_pod_credentials import SharedPodCredentials
from meshpilot.server.telemetry_api import TelemetryAPI
from meshpilot.statedir import StateDir
from meshpilot.store import ConfigStore
from meshpilot.store.election import AlwaysLeader, Election
from meshpilot.store.factory import leadership
from meshpilot.store.mirror import StoreMirror
from meshpilot.telemetry import ProxyIdentity, Target
from meshpilot.telemetry.failure_reports import ReportedCounts
from meshpilot.validation.network_names import check_network_names

MESH_HOST = "127.0.0.1"
"""Where xDS and the metrics endpoint listen: loopback, never the API's --host."""


@dataclass
class Components:
    """What one control-plane process runs. The mesh and the rollouts are absent for a
    config-plane-only process (``--no-mesh``)."""

    store: ConfigStore
    config: ConfigService
    mesh: MeshControlPlane | None = None
    delivery: DeliveryLoop | None = None
    hosts: HostsAPI | None = None
    leader: AlwaysLeader | Election = field(default_factory=AlwaysLeader)
    """Whether this replica runs what must run once (pods, rollouts): always with
    SQLite; the elected one of the replicas on an etcd."""
    autoscaler: AutoscalerLoop | None = None
    replicas: ReplicaState = field(default_factory=ReplicaState)
    """What replicas on one etcd share (proxy-token key, hosts) and who is alive."""

    def app(self, token: str, info: dict[str, Any],
            max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
            watch_limit: int = WATCH_BACKLOG_LIMIT,
            stopping: Callable[[], bool] = never) -> Any:
        """The API: the config routes, plus the mesh's and the rollouts' when they run,
        and the dashboard; ``stopping`` says when the server is shutting down."""
        routes: list[BaseRoute] = []
        mesh = self.mesh
        rows = None
        if mesh is not None:
            rows = partial(_edge_rows, mesh)
            routes += MeshAPI(self.mesh).routes() + TelemetryAPI(self.mesh).routes()
            routes += CaAPI(self.mesh.ca_rotation).routes()
        if self.delivery is not None:
            routes += RolloutAPI(self.store, self.delivery.controller,
                                 self.delivery.argo).routes()
        routes += LeaderAPI(self.leader).routes()
        auth = DashboardAuth()
        proxies = partial(proxy_statuses, mesh) if mesh is not None else list
        argo = (partial(_argo_views, self.store, self.delivery.argo)
                if self.delivery is not None else None)
        routes += Dashboard(self.store, auth, partial(_pods, mesh), rows, proxies,
                            stopping, argo).routes()
        if self.hosts is not None:
            routes += self.hosts.routes()
        app = create_app(self.config, token, info, routes, max_body_bytes, dashboard=auth,
                         live_status=self._deployment_status, watch_limit=watch_limit)
        return app if self.hosts is None else HostRoutesGate(app, self.hosts.public_app(stopping))

    def _deployment_status(self, key: ObjectKey) -> dict[str, Any] | None:
        """A Deployment's pod counts from the runtime (what kubectl get shows as READY);
        None for other kinds, or when no mesh runs pods."""
        runtime = self.mesh.runtime if self.mesh is not None else None
        if runtime is None or key.kind != "Deployment" or key.group != "apps":
            return None
        return runtime.deployment_status(key.namespace, key.name)

    def stop(self) -> None:
        """The rollouts and the autoscalers stop writing before the mesh they write to
        goes; leadership is given up once they stopped (so no two replicas ever step the
        same rollout)."""
        if self.autoscaler is not None:
            self.autoscaler.stop()
        if self.delivery is not None:
            self.delivery.stop()
        if self.hosts is not None:
            self.hosts.registry.stop()
        self.leader.stop()
        self.replicas.stop()
        if self.mesh is not None:
            self.mesh.stop()


def _identity(state: StateDir) -> str:
    """How this replica names itself in the election: host, process and state directory."""
    return f"{socket.gethostname()}/{os.getpid()}/{state.root}"


def _pods(mesh: MeshControlPlane | None) -> list[Pod]:
    runtime = mesh.runtime if mesh is not None else None
    return runtime.pods() if runtime is not None else []


def _argo_views(store: ConfigStore, argo: ArgoController) -> list[dict[str, Any]]:
    """Every Argo Rollout as ``meshpilot rollout status`` shows it, for the dashboard."""
    views = []
    for obj in store.list(group="argoproj.io", kind="Rollout"):
        try:
            rollout = Rollout.model_validate(obj.body)
        except ValueError:
            continue  # not one the controller runs: the API says why
        views.append(argo_summary(rollout, argo.reader))
    return views


def _edge_rows(mesh: MeshControlPlane) -> list[dict[str, Any]]:
    """The dashboard's edges: the last minute's traffic per caller and callee version."""
    telemetry = mesh.telemetry
    if telemetry is None:
        return []
    return [dict(row) for row in telemetry.query.summary(
        views.EDGE_MATCHERS, views.EDGE_LABELS, views.WINDOW_SECONDS, (0.99,))]


def _hosts(state: StateDir, store: ConfigStore, config: ConfigService, mesh: MeshControlPlane,
           security: SecurityOptions | None, health: HostHealth,
           leading: Callable[[], bool], replicas: ReplicaState) -> HostsAPI:
    """Joined hosts: their tokens, registrations and health, and their sidecars'
    credentials fed to the mesh's SDS."""
    tokens = replicas.join_tokens(state)
    if replicas.shared is not None:  # a pod sidecar's xDS may be at any replica
        mesh.host_pods.shared = SharedPodCredentials(replicas.shared)
    registry = HostRegistry(
        store, config, tokens, mesh.proxy_tokens, lambda: mesh.certificates.ca,
        (security or SecurityOptions()).cert_ttl, lambda: mesh.xds_tls_address,
        changed=mesh.wake, timeout=health.timeout, grace=health.grace,
        members_file=state.root / "secrets" / "hosts.json", leading=leading,
        shared=replicas.shared, replicas=replicas.directory.replicas,
        sync_also=mesh.host_pods.sync_shared)
    mesh.host_pods.timeout, mesh.host_pods.grace = health.timeout, health.grace
    mesh.remote_credentials = partial(_host_credentials, registry, mesh.host_pods)
    mesh.remote_targets = partial(_host_targets, registry, mesh.host_pods)
    mesh.remote_gateways = registry.gateways
    def placing() -> bool:  # a replica that does not place would have hosts run nothing
        return leading() and mesh.runtime is not None and mesh.runtime.placing

    return HostsAPI(registry, tokens,
                    HostPodsAPI(mesh.host_pods, registry.member, placing).routes(),
                    HostWatch(registry, mesh.host_pods.version_of))


def _host_credentials(registry: HostRegistry, pods: HostPods) -> Mapping[str, Any]:
    """The joined hosts' sidecars and their pods' sidecars: keys named by their files
    on those hosts."""
    return {**registry.credentials(), **pods.credentials()}


def _leadership_changed(mesh: MeshControlPlane, replicas: ReplicaState, leading: bool) -> None:
    """The pods start (or stop) at once, and the other replicas and the hosts learn who
    leads (a host sends its reports, and so its sidecar's counters, to the leader)."""
    mesh.leadership_changed(leading)
    replicas.directory.update(leading=leading)


def _host_targets(registry: HostRegistry, pods: HostPods) -> list[Target]:
    """The joined hosts' sidecars and their pods' as telemetry targets, read from their
    agents' reports (a pod's workload is its Deployment, as for the pods here)."""
    return [Target(node.name, "", epoch, ProxyIdentity.from_node(node), node,
                   read=partial(bytes, stats))
            for node, epoch, stats in registry.sidecar_stats()] + [
            Target(pod.name, "", epoch, ProxyIdentity.from_node(pod.proxy_node(),
                                                                 pod.deployment),
                   pod.proxy_node(), read=partial(bytes, stats))
            for pod, epoch, stats in pods.sidecar_stats()]


def start(state: StateDir, store: ConfigStore, publish: Publish, *,
          with_mesh: bool, envoy_concurrency: int,
          security: SecurityOptions | None = None, access_log: bool = True,
          loadtester_commands: bool = False, api_token: str | None = None,
          listen: str | None = None, host_health: HostHealth | None = None,
          hpa_sync_seconds: float = SYNC_SECONDS, api_url: str = "",
          mesh_config: MeshConfig | None = None) -> Components:
    """Make, connect and start every component; ``publish`` merges entries into
    endpoints.json; ``loadtester_commands`` lets the load tester run shell commands. If
    one fails to start, those already started are stopped and the error is raised.
    ``api_url`` is where other hosts reach this replica's API (named to them with the
    other replicas)."""
    # one mirror of the state for every apply's validation (see ConfigService)
    components = Components(store, ConfigService(store, StoreMirror(store)),
                            leader=leadership(store, _identity(state)),
                            replicas=ReplicaState.of(store, _identity(state)))
    components.replicas.share_ca(state, security or SecurityOptions())
    if not with_mesh:
        components.leader.start(lambda leading: None)
        return components
    try:
        # The mesh's own listeners (xDS, metrics) serve local proxies and a local
        # Prometheus only, so they stay on loopback whatever the API binds to (up
        # --host): metrics need no token to be read
        mesh = components.mesh = MeshControlPlane(
            state, store, host=MESH_HOST, envoy_concurrency=envoy_concurrency,
            publish=publish, security=security, access_log=access_log, listen=listen,
            leading=components.leader.leading,
            proxy_tokens=components.replicas.proxy_tokens(state), mesh_config=mesh_config)
        components.config.change_check = envoy_filter_check.for_mesh(mesh)
        if mesh_config is not None and mesh_config.networks:
            components.config.more_findings = partial(check_network_names,
                                                      networks=mesh_config.networks)
        components.hosts = _hosts(state, store, components.config, mesh, security,
                                  host_health or HostHealth(), components.leader.leading,
                                  components.replicas)
        endpoints = mesh.start()
        components.hosts.registry.start()
        publish(endpoints)
        components.replicas.announce(mesh, api_url, publish)
        traffic = TelemetryTraffic(lambda: mesh.telemetry)
        delivery = DeliveryLoop(
            store, lambda: mesh.runtime, traffic, publish,
            mesh_proxy=endpoints["mesh_proxy"], loadtester_port=mesh.ports.get("loadtester"),
            loadtester_commands=loadtester_commands,
            live=ReportedCounts(mesh.failure_reports, traffic), api_token=api_token,
            service=components.config, leading=components.leader.leading)
        delivery.start()
        components.delivery = delivery  # only once started: stop() joins its thread
        mesh.failure_reports.subscribe(delivery.failures_reported)
        autoscaler = AutoscalerLoop(components.config, partial(_pods, mesh),
                                    lambda: mesh.telemetry, hpa_sync_seconds,
                                    leading=components.leader.leading)
        autoscaler.start()
        components.autoscaler = autoscaler
        components.leader.start(partial(_leadership_changed, mesh, components.replicas))
    except BaseException:
        components.stop()
        raise
    return components

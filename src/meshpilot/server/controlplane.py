"""The data-plane half of the control-plane process: mesh view, xDS, runtime, proxies.

Data flow (see DESIGN.md): store watch (into an in-memory mirror) → debounced rebuild →
MeshSnapshot → xDS push;
the runtime's pods feed the same rebuild (a pod is an endpoint only while ready), and
before a pod is stopped the rebuild that removes it must be ACKed by every proxy, so no
request is sent to a process that is going away.

Crash and restart: a control plane that dies (SIGKILL, OOM, a bug) leaves its pods and
proxies running in their own sessions, serving their last config. The next one on the
same state directory adopts them (see :meth:`MeshControlPlane.start`): same xDS port,
same pods, names and addresses, the same Envoys, and a snapshot identical to the one
they hold, so traffic never stops. A graceful stop (SIGTERM, ``meshpilot down``) stops
every pod and proxy.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from meshpilot.api.config import ConfigMap
from meshpilot.api.credentials import Secret
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kubernetes import Deployment
from meshpilot.api.mesh_config import MeshConfig
from meshpilot.api.mesh_networks import EAST_WEST_SERVICE
from meshpilot.gc_policy import QuietCollector
from meshpilot.jsonfile import write_json_atomic
from meshpilot.mesh import networks
from meshpilot.mesh.builder import SnapshotBuilder, same_stored_body
from meshpilot.mesh.model import MeshSnapshot, ProxyNode, WorkloadInstance
from meshpilot.mesh.sources import GATEWAY_SERVICE_ACCOUNT
from meshpilot.mesh.tcp_outbound import tcp_targets
from meshpilot.proxy.access_log import AccessLogFile, access_log_path
from meshpilot.proxy.admin_socket import remove_socket_dir
from meshpilot.proxy.adopted import proc_stat
from meshpilot.proxy.bootstrap import bootstrap, node_id
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import PortWalk, free_port
from meshpilot.runtime import ImageMap, LocalRuntime, Pod
from meshpilot.runtime.ipam import ports_bindable
from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.options import SecurityOptions
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.security.rotation import renew_at
from meshpilot.security.workload_certs import CredentialSubject
from meshpilot.server import host_gateways
from meshpilot.server.api_tls import ServerCertificate, issue_server_certificate, subject_names
from meshpilot.server.ca_rotation import CaRotation
from meshpilot.server.east_west import PROXY_NAME as EAST_WEST_PROXY
from meshpilot.server.east_west import EastWestGateway
from meshpilot.server.host_pods import HostPods
from meshpilot.server.leftovers import stop_leftovers
from meshpilot.server.mesh_changes import MeshChanges
from meshpilot.server.pacing import RebuildPacer
from meshpilot.server.placed_runtime import PlacedRuntime
from meshpilot.statedir import StateDir
from meshpilot.store import ConfigStore
from meshpilot.store.mirror import StoreMirror
from meshpilot.telemetry import MeshTelemetry, ProxyIdentity, Target
from meshpilot.telemetry.failure_reports import FailureReports, report_verifier
from meshpilot.xds import ProxyConfigBuilder, XdsServer, XdsSnapshot
from meshpilot.xds.auth import refusals_exposition, token_authenticator
from meshpilot.xds.server import SecurePort

log = logging.getLogger(__name__)
timeline = logging.getLogger("meshpilot.timeline")
"""Stage times of a mesh rebuild (``time.monotonic``), at DEBUG for benchmarks."""

DEBOUNCE_SECONDS = 0.05
GATEWAY_LABELS = MappingProxyType({"istio": "ingressgateway", "app": "istio-ingressgateway"})


class PortBook:
    """Ports that must stay the same across restarts (mesh proxy, ingress, xDS), on disk."""

    def __init__(self, path: Path, walk: PortWalk) -> None:
        self.path = path
        self.walk = walk
        try:
            self.ports: dict[str, int] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            self.ports = {}

    def get(self, name: str, host: str = "127.0.0.1") -> int:
        if name not in self.ports:
            self.ports[name] = free_port(host, self.walk)
            write_json_atomic(self.path, self.ports)
        return self.ports[name]

    def bindable(self, name: str, host: str = "127.0.0.1") -> int:
        """The port ``name`` if it can be bound now, else a new one (recorded)."""
        port = self.get(name, host)
        if not ports_bindable(host, [port]):
            self.ports.pop(name)
            port = self.get(name, host)
        return port


class XdsServerCertificate:
    """The mutual-TLS xDS port's certificate: re-issued at about half its life, and at
    once when the mesh issues from another CA (a root rotation), with the CA's current
    trust bundle as the roots clients are verified against."""

    def __init__(self, ca: Callable[[], CertificateAuthority],
                 names: tuple[list[str], list[str]], ttl: timedelta) -> None:
        self._ca, self._names, self._ttl = ca, names, ttl
        self._lock = threading.Lock()
        self._held: tuple[CertificateAuthority, ServerCertificate,
                          tuple[bytes, bytes, bytes]] | None = None

    def current(self) -> tuple[bytes, bytes, bytes]:
        """(chain, key, roots), the same tuple while nothing is due."""
        ca = self._ca()
        with self._lock:
            held = self._held
            due = held is None or held[0] is not ca or \
                datetime.now(UTC) >= renew_at(held[1].certificate)
            if due:
                issued = issue_server_certificate(ca, *self._names, ttl=self._ttl)
                held = self._held = (ca, issued, (issued.chain_pem, issued.key_pem,
                                                  ca.trust_bundle.pem))
            assert held is not None
            return held[2]


def pod_workload(pod: Pod) -> WorkloadInstance:
    return WorkloadInstance(
        name=pod.name, namespace=pod.namespace, ip=pod.ip, labels=dict(pod.labels),
        ports=tuple(pod.inbound), ready=pod.ready, has_sidecar=True, workload=pod.deployment,
        service_account=pod.service_account, host_entry=pod.host_entry,
    )


class MeshControlPlane:
    def __init__(
        self,
        state: StateDir,
        store: ConfigStore,
        *,
        host: str = "127.0.0.1",
        envoy_concurrency: int = 1,
        api_type: str = "DELTA_GRPC",
        publish: Callable[[dict[str, Any]], None] = lambda extra: None,
        security: SecurityOptions | None = None,
        access_log: bool = True,
        listen: str | None = None,
        leading: Callable[[], bool] = lambda: True,
        proxy_tokens: ProxyTokens | None = None,
        mesh_config: MeshConfig | None = None,
    ) -> None:
        self.state = state
        self.listen = listen
        """Where proxies on other hosts reach xDS, over mutual TLS (``up --listen``)."""
        self.east_west = EastWestGateway(listen) if listen else None
        """The gateway through which joined hosts reach this host's pods (with --listen)."""
        self.leading = leading
        """Whether this replica runs the local runtime's pods (the elected leader among
        replicas on one etcd; always, with SQLite)."""
        self.store = store
        self.host = host
        self.access_log = access_log
        """Whether every proxy writes Istio-format access logs (``up --access-log``)."""
        self.envoy_concurrency = envoy_concurrency
        self.api_type = api_type
        self.publish = publish
        self._published_gateway_ports: dict[str, int] = {}
        self.work_dir = state.root / "run"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port_walk = PortWalk()  # every port this control plane picks comes from it
        self.ports = PortBook(state.root / "ports.json", self.port_walk)
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._version = 0
        self.snapshot = MeshSnapshot(version=0, services={}, endpoints={})
        self.built_from_revision = -1
        self._shared_workloads: list[WorkloadInstance] = []  # the pods of that build
        """The store revision the snapshot holds every change up to (-1: none built)."""
        options = security if security is not None else SecurityOptions()
        # unchanged objects keep their identity
        self._snapshots = SnapshotBuilder(trust_domain=options.trust_domain,
                                          mesh_config=networks.gateway_named(mesh_config, listen))
        self._joined_base = self._snapshots.mesh_config
        """The mesh config before the joined hosts' gateways are added to it."""
        self._configs = ProxyConfigBuilder()  # one build per proxy class and change
        # The same xDS port as the previous control plane on this state directory, so the
        # proxies it left running reconnect by themselves (a new port only if it is taken)
        self.xds_port = self.ports.bindable("xds", host)
        # every proxy proves its node id, and the identity given it, with a token the
        # runtime writes into its bootstrap (replicas on one etcd share the key: see
        # meshpilot.server.replica_wiring)
        self.proxy_tokens = proxy_tokens or ProxyTokens.in_directory(state.root / "secrets")
        self.ca_rotation = CaRotation.open(state.root, options, self.converge,
                                           wake=self._dirty.set)
        """The CA (resumed mid-rotation after a restart) and its root rotation steps."""
        self.certificates = self.ca_rotation.certificates
        """Every proxy's credential (keys in memory), renewed at half their life."""
        self.failure_reports = FailureReports(report_verifier(
            lambda node: self.proxy_tokens.for_proxy(node)))
        """Canary sidecars' failed requests as they happen (served beside xDS), from
        streams that prove their node by its report credential."""
        self.xds = XdsServer(host=host, port=self.xds_port,
                             authenticate=token_authenticator(self.proxy_tokens.verify_proxy),
                             secure=self._secure_xds(listen, options),
                             services=(self.failure_reports.handler(),))
        self.remote_credentials: Callable[[], Mapping[str, Any]] = dict
        """node id -> the credential of a proxy on a joined host (its key stays there)."""
        self.remote_workloads: Callable[[], list[WorkloadInstance]] = list
        """The pods other replicas run (the leader's), as endpoints for this one's proxies."""
        self.share_workloads: Callable[[list[WorkloadInstance], int], None] = \
            lambda workloads, revision: None
        """Tells the other replicas the pods this one runs as of a store revision (no I/O
        on the caller's thread)."""
        self.remote_behind: Callable[[int], bool] = lambda revision: False
        """Whether a rebuild at a store revision waits for the leader's pods as of it."""
        self.remote_gateways: Callable[[], host_gateways.Joined] = dict
        """The east-west gateways joined hosts run (:mod:`.host_gateways`): configured
        here, and the gateways of their networks in ``meshNetworks``."""
        self._joined_networks: tuple[dict[str, tuple[str, ...]], MeshConfig] = (
            {}, self._snapshots.mesh_config)
        self.remote_targets: Callable[[], list[Target]] = list
        """Proxies on joined hosts whose counters their agents report, for telemetry."""
        self.runtime: PlacedRuntime | None = None
        self.host_pods = HostPods(self.proxy_tokens, lambda: self.certificates.ca,
                                  options.cert_ttl, changed=self._dirty.set)
        """The Deployments placed on joined hosts, and the pods those hosts report."""
        self.proxies: dict[str, EnvoyProcess] = {}
        self._proxy_nodes: dict[str, ProxyNode] = {}
        self.telemetry: MeshTelemetry | None = None
        self._threads: list[threading.Thread] = []
        self._collector: QuietCollector | None = None  # full GCs only between pushes
        self._mirror: StoreMirror | None = None  # the stored objects, kept current
        self._parsed_deployments: dict[ObjectKey, tuple[dict[str, Any], Deployment]] = {}
        self._parsed_configs: dict[ObjectKey, tuple[dict[str, Any], dict[str, bytes]]] = {}
        self._workloads: dict[str, tuple[Any, WorkloadInstance]] = {}  # pod name -> instance

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Start xDS, the mesh proxy, the ingress gateway and the runtime.

        If a previous control plane on this state directory crashed, its pods and
        proxies still run: the runtime adopts every pod whose processes all live with the
        same configuration (pod records, see :mod:`meshpilot.runtime.runtime`) and the
        mesh proxy and ingress gateway are attached to (:meth:`EnvoyProcess.attach`).
        Whatever is not adopted (half-dead pods, proxies started for another xDS port)
        is stopped as a leftover and started afresh. The first snapshot is built with
        the adopted pods before xDS serves, so reconnecting proxies are told nothing new.

        Returns the endpoints to publish in endpoints.json.
        """
        self.runtime = PlacedRuntime(LocalRuntime(
            self.work_dir, xds_host=self.host, xds_port=self.xds_port,
            on_change=self._dirty.set, envoy_concurrency=self.envoy_concurrency,
            before_stop=self._wait_removed, images=ImageMap.default(self.state.root),
            port_walk=self.port_walk, proxy_token=self.proxy_tokens.for_proxy,
            access_log=self.access_log,
        ), self.host_pods)
        mesh_proxy_port = self.ports.get("mesh_proxy")
        ingress_port = self.ports.get("ingress.80")
        self._proxy("mesh-proxy", ProxyNode(
            id=node_id("client", "127.0.0.1", "mesh-proxy", "default"), kind="client",
            namespace="default", ip="127.0.0.1", workload="mesh-proxy", name="mesh-proxy",
            labels={"app": "mesh-client"}, outbound_port=mesh_proxy_port,
        ))
        self._proxy("ingressgateway", ProxyNode(
            id=node_id("router", "127.0.0.1", "istio-ingressgateway", "istio-system"),
            kind="gateway", namespace="istio-system", ip="127.0.0.1",
            workload="istio-ingressgateway", name="istio-ingressgateway", labels=GATEWAY_LABELS,
            service_account=GATEWAY_SERVICE_ACCOUNT,
            gateway_ports={80: ingress_port},
        ))
        if self.east_west is not None:
            self._proxy(EAST_WEST_PROXY, self.east_west.node)
        adopted = [name for name, proxy in self.proxies.items() if proxy.running]
        keep = self.runtime.sessions() | {
            stat[2] for proxy in self.proxies.values()
            if proxy.pid and (stat := proc_stat(proxy.pid)) is not None}
        stale = stop_leftovers(self.work_dir, keep_sessions=keep)
        if stale:
            log.warning("stopped %d process(es) left by a previous control plane", len(stale))
        if adopted or self.runtime.adopted:
            log.warning("adopted from a previous control plane: %s",
                        ", ".join([*adopted, *self.runtime.adopted]))
        self._mirror = StoreMirror(self.store)  # watched from here on: no change missed
        self._rebuild()  # with the adopted pods, before any proxy can reconnect
        port = self.xds.start()
        assert port == self.xds_port, (port, self.xds_port)
        for proxy in self.proxies.values():
            if not proxy.running:
                proxy.start()
        for target in (self._watch_store, self._rebuild_loop, self._proxy_upkeep):
            thread = threading.Thread(target=target, name=target.__name__, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._dirty.set()
        self.telemetry = MeshTelemetry(self._telemetry_targets, lambda: self.snapshot,
                                       host=self.host, port=self.ports.get("metrics"),
                                       state_file=self.state.telemetry_file,
                                       own_metrics=self._own_metrics)
        metrics = self.telemetry.start()
        self._collector = QuietCollector(self.xds.idle_seconds).start()
        remote = {"xds_tls": self.xds_tls_address} if self.listen else {}
        if self.east_west is not None:
            remote["east_west"] = self.east_west.endpoint
        return {
            **metrics,
            **remote,
            "xds": f"{self.host}:{self.xds_port}",
            "mesh_proxy": f"http://127.0.0.1:{mesh_proxy_port}",
            "ingress": f"http://127.0.0.1:{ingress_port}",
            "ingress_ports": self.gateway_ports(),
        }

    def _own_metrics(self) -> str:
        """The control plane's own series on the telemetry's /metrics: refused failure
        report streams and reports, refused xDS streams."""
        return self.failure_reports.exposition() + refusals_exposition(
            self.xds.refused_streams)

    def _secure_xds(self, listen: str | None, options: SecurityOptions) -> SecurePort | None:
        """The mutual-TLS xDS port at ``listen`` (none without it), with a server
        certificate from the mesh's CA for that address (see :class:`XdsServerCertificate`);
        clients must present a workload certificate from the same roots."""
        if not listen:
            return None
        held = XdsServerCertificate(lambda: self.certificates.ca, subject_names(listen),
                                    options.cert_ttl)
        return SecurePort(listen, self.ports.bindable("xds_tls", listen), held.current)

    @property
    def xds_tls_address(self) -> str:
        """host:port of the mutual-TLS xDS port ("" without ``listen``)."""
        if not self.listen:
            return ""
        host = f"[{self.listen}]" if ":" in self.listen else self.listen
        return f"{host}:{self.xds.secure_port or self.ports.get('xds_tls', self.listen)}"

    def stop(self) -> None:
        """Graceful stop: every pod (drained first) and every proxy is stopped. Only a
        crash leaves them running, for the next control plane to adopt."""
        self._stopping.set()
        self._dirty.set()
        if self._collector is not None:
            self._collector.stop()
        if self.telemetry is not None:
            self.telemetry.stop()
        if self.runtime is not None:
            self.runtime.stop()
        for proxy in self.proxies.values():
            proxy.stop(grace=2.0)
        remove_socket_dir(self.work_dir)  # the built-in proxies' admin sockets
        self.xds.stop()

    def _proxy(self, name: str, node: ProxyNode) -> None:
        """The proxy ``name``: the running one adopted if it has this very config, else
        one to start (once the leftovers are gone)."""
        access_log = (AccessLogFile(access_log_path(self.work_dir, name))
                      if self.access_log else None)
        node = replace(node, access_log=str(access_log.path) if access_log else "")
        doc = bootstrap(node, xds_host=self.host, xds_port=self.xds_port,
                        api_type=self.api_type,  # type: ignore[arg-type]
                        xds_token=self.proxy_tokens.for_proxy(node))
        proxy = EnvoyProcess(doc, name=name, work_dir=self.work_dir,
                             concurrency=self.envoy_concurrency, access_log=access_log)
        proxy.attach()
        self.proxies[name] = proxy
        self._proxy_nodes[name] = node

    def _telemetry_targets(self) -> list[Target]:
        """Every proxy whose admin answers: the built-in proxies and the pods' sidecars."""
        out = []
        for name, proxy in list(self.proxies.items()):
            node = self._proxy_nodes.get(name)
            if node is not None and proxy.running:
                out.append(Target(node.name or name, str(proxy.admin_socket), proxy.pid,
                                  ProxyIdentity.from_node(node), node))
        for pod in self.runtime.pods() if self.runtime is not None else []:
            if pod.admin_socket and pod.sidecar_pid:
                node = pod.proxy_node()
                out.append(Target(pod.name, pod.admin_socket, pod.sidecar_pid,
                                  ProxyIdentity.from_node(node, pod.deployment), node))
        return out + self.remote_targets()

    # --- the mesh view -------------------------------------------------------------
    def gateway_ports(self) -> dict[str, int]:
        """Gateway server port → the real loopback port the ingress gateway uses."""
        wanted = {80}
        for gw in self.snapshot.gateways:
            for server in gw.obj.spec.servers:
                wanted.add(server.port.number)
        return {str(p): self.ports.get(f"ingress.{p}") for p in sorted(wanted)}

    def _with_joined_gateways(self) -> MeshConfig:
        """The mesh config with the joined hosts' gateways on their networks (by the
        last snapshot's entry networks); the same object while they do not change."""
        held, config = self._joined_networks
        joined = host_gateways.by_network(self.remote_gateways(), self.snapshot)
        if joined != held:
            base = self._joined_base
            config = replace(base, networks=base.networks.with_joined(EAST_WEST_SERVICE,
                                                                      joined))
            self._joined_networks = (joined, config)
        return config

    def _xds_snapshot(self, snapshot: MeshSnapshot, gateway_ports: dict[str, int],
                      pods: list[Pod]) -> XdsSnapshot:
        """What the proxies are told at ``snapshot``: a gateway listens on the ports
        recorded for its servers' port numbers, and every proxy of this control plane
        gets its own credential (both fixed at this version, like the rest)."""
        ports = {int(k): v for k, v in gateway_ports.items()}
        configs = self._configs
        remote = self.remote_credentials()
        credentials = {**self.certificates.current(self._proxy_identities(pods)), **remote}

        joined = self.remote_gateways()

        def config_for(node: ProxyNode) -> dict[str, Any]:
            held = joined.get(node.id)
            if held is not None:  # a joined host's east-west gateway
                return host_gateways.config(snapshot, node, *held)
            if node.kind == "gateway":
                node = replace(node, gateway_ports=ports)
            node = networks.on_network(snapshot, node)
            return configs.config_for(snapshot, node, credentials.get(node.id))

        if self.east_west is not None:
            return XdsSnapshot(snapshot.version,
                               self.east_west.wrap(snapshot, remote, config_for))
        return XdsSnapshot(snapshot.version, config_for)

    def _proxy_identities(self, pods: list[Pod]) -> list[CredentialSubject]:
        """The proxies this control plane runs: the built-in ones and every pod's."""
        out = [CredentialSubject(n.id, n.namespace, n.service_account)
               for n in self._proxy_nodes.values()]
        out += [CredentialSubject(p.node_id, p.namespace, p.service_account) for p in pods
                if not p.node]  # a joined host's pods have theirs from their CSR
        return out

    def deployments(self, *, from_store: bool = False) -> list[tuple[str, str, Deployment]]:
        """The stored Deployments, each version parsed once (a rebuild's cost follows what
        changed, not how many Deployments there are; ``benchmarks/apply_to_ack.py``). From
        the store mirror once started (what the snapshot is built from), or with
        ``from_store`` from the store itself (an API answer right after an apply)."""
        mirror = None if from_store else self._mirror
        if mirror is None:
            bodies = [(o.key, o.body) for o in self.store.list(group="apps", kind="Deployment")]
        else:
            bodies = [(key, body) for key, body in mirror.objects()
                      if key.kind == "Deployment" and key.group == "apps"]
        held = self._parsed_deployments
        parsed: dict[ObjectKey, tuple[dict[str, Any], Deployment]] = {}
        out = []
        for key, body in bodies:
            known = held.get(key)
            if known is not None and same_stored_body(known[0], body):
                dep = known[1]
            else:
                try:
                    dep = Deployment.model_validate(body)
                except ValueError as exc:
                    log.warning("skipping %s: %s", key, exc)
                    continue
            parsed[key] = (body, dep)
            out.append((key.namespace, key.name, dep))
        self._parsed_deployments = parsed  # swapped whole: a concurrent caller sees either
        return out

    def config_data(self) -> dict[tuple[str, str, str], dict[str, bytes]]:
        """The stored ConfigMaps and Secrets, decoded, for the pods that read them:
        (kind, namespace, name) -> key -> value. Each stored version is decoded once."""
        mirror = self._mirror
        if mirror is None:
            bodies = [(o.key, o.body) for o in self.store.list(group="")
                      if o.key.kind in ("ConfigMap", "Secret")]
        else:
            bodies = [(key, body) for key, body in mirror.objects()
                      if key.group == "" and key.kind in ("ConfigMap", "Secret")]
        held = self._parsed_configs
        parsed: dict[ObjectKey, tuple[dict[str, Any], dict[str, bytes]]] = {}
        for key, body in bodies:
            known = held.get(key)
            if known is not None and same_stored_body(known[0], body):
                parsed[key] = known
                continue
            model = ConfigMap if key.kind == "ConfigMap" else Secret
            try:
                parsed[key] = (body, model.model_validate(body).decoded())
            except ValueError:
                log.warning("skipping %s: it does not parse", key)  # never its values
        self._parsed_configs = parsed
        return {(k.kind, k.namespace, k.name): v[1] for k, v in parsed.items()}

    def _workload(self, pod: Pod) -> WorkloadInstance:
        """The pod's workload instance: the same object while the pod does not change, as
        the identity contract of :mod:`meshpilot.xds` asks of every builder's input."""
        key = (pod.namespace, pod.ip, pod.ready, tuple(pod.inbound), tuple(pod.labels.items()),
               pod.service_account)
        held = self._workloads.get(pod.name)
        if held is not None and held[0] == key:
            return held[1]
        instance = pod_workload(pod)
        self._workloads[pod.name] = (key, instance)
        return instance

    def _rebuild(self) -> int:
        """Recompute the snapshot and push it; returns the new mesh version."""
        with self._lock:
            if self._mirror is None:  # before start: the store itself
                revision = self.store.revision()
                objects = [(o.key, o.body) for o in self.store.list()]
            else:
                revision, objects = self._mirror.held()
            pods = self.runtime.pods() if self.runtime is not None else []
            self._version += 1
            workloads = [self._workload(p) for p in pods if p.ip]
            self._workloads = {w.name: self._workloads[w.name] for w in workloads}
            self._snapshots.mesh_config = self._with_joined_gateways()
            self.snapshot = snapshot = self._snapshots.build(
                self._version, objects, workloads + self.remote_workloads())
            self.built_from_revision = revision
            self._shared_workloads = workloads
            version = self._version
        self.share_workloads(workloads, revision)
        ports = self.gateway_ports()
        if ports != self._published_gateway_ports:
            self._published_gateway_ports = ports
            self.publish({"ingress_ports": ports})
        built = time.monotonic()
        self.xds.publish(self._xds_snapshot(snapshot, ports, pods))
        if timeline.isEnabledFor(logging.DEBUG):
            timeline.debug("%.4f published version=%d built=%.4f", time.monotonic(),
                           version, built)
        return version

    def _proxy_upkeep(self) -> None:
        """The built-in proxies' periodic care (their access logs kept under the limit);
        the pods' sidecars get theirs from their pod's supervisor."""
        while not self._stopping.wait(1.0):
            for proxy in list(self.proxies.values()):
                try:
                    proxy.upkeep(time.monotonic())
                except Exception:  # a full disk must not stop the loop for good
                    log.exception("upkeep of proxy %s failed", proxy.name)

    def _rebuild_loop(self) -> None:
        """Rebuild on change, at most once per ``DEBOUNCE_SECONDS`` on average: a change
        after a quiet spell goes out at once (leading edge), and so does a second one right
        after it (see :mod:`.pacing`); a longer burst of changes is coalesced."""
        pacer = RebuildPacer(DEBOUNCE_SECONDS, burst=2)
        while not self._stopping.is_set():
            self._dirty.wait(self._until_renewal())  # a change, or certificates to renew
            if self._stopping.is_set():
                return
            wait = pacer.wait(time.monotonic())
            if wait > 0:
                self._stopping.wait(wait)
            self._dirty.clear()
            last = time.monotonic()
            pacer.take(last)
            try:
                mirror = self._mirror
                if mirror is not None and self.remote_behind(mirror.revision()):
                    self._dirty.set()  # again when the leader's record comes (or soon)
                    self._stopping.wait(DEBOUNCE_SECONDS)
                    continue
                synced = time.monotonic()  # pods are synced after the snapshot (below)
                try:
                    version = self._rebuild()
                finally:  # pods start after the snapshot: they see its Services' TCP ports
                    if self.runtime is not None:
                        # a replica that does not lead runs no pods (the leader runs them)
                        leads = self.leading()
                        self.runtime.sync(self.deployments() if leads else [],
                                          self.config_data() if leads else {},
                                          tcp_targets(self.snapshot), placing_here=leads)
                if timeline.isEnabledFor(logging.DEBUG):
                    timeline.debug("%.4f rebuild version=%d start=%.4f synced=%.4f",
                                   time.monotonic(), version, last, synced)
            except Exception:  # keep serving the last good snapshot
                log.exception("mesh rebuild failed")

    def leadership_changed(self, leading: bool) -> None:
        """Start (or stop) the pods at once when this replica gains (or loses) the lead."""
        self._dirty.set()

    def _until_renewal(self) -> float | None:
        """Seconds until the earliest proxy certificate is due for renewal (None: none)."""
        due = self.certificates.next_renewal()
        if due is None:
            return None
        return max(0.05, (due - datetime.now(UTC)).total_seconds())

    def _watch_store(self) -> None:
        """Rebuild on every store change the mesh is built from; one that only touches a
        Canary's status (see :mod:`.mesh_changes`) counts as held by the mesh at once."""
        mirror = self._mirror
        assert mirror is not None
        changes = MeshChanges()
        mirror.follow(changes)
        try:
            while not self._stopping.is_set():
                before = mirror.revision()
                if not mirror.poll(timeout=0.5):
                    continue
                relevant = changes.take()
                if timeline.isEnabledFor(logging.DEBUG):
                    timeline.debug("%.4f store-change revision=%s rebuild=%s", time.monotonic(),
                                   mirror.revision(), relevant)
                if relevant:
                    self._dirty.set()
                else:
                    self._held_without_rebuild(before, mirror.revision())
        finally:
            mirror.close()

    def _held_without_rebuild(self, before: int, after: int) -> None:
        """Changes from ``before`` to ``after`` need no rebuild: when the snapshot holds
        every change up to ``before``, it holds every one up to ``after`` (readiness
        compares this with the store's revision). Otherwise a rebuild is still due, and
        reads them anyway."""
        with self._lock:
            if before <= self.built_from_revision < after:
                self.built_from_revision = after
                workloads = self._shared_workloads
            else:
                return
        # the other replicas wait for this revision before their own rebuilds
        self.share_workloads(workloads, after)

    def _wait_removed(self, pod: Pod) -> None:
        """Before a pod stops: every proxy has ACKed a mesh without it (bounded wait)."""
        version = self._rebuild()
        if not self.xds.wait_acked(version, timeout=5.0):
            log.warning("not every proxy ACKed mesh version %d before stopping %s",
                        version, pod.name)

    def wake(self) -> None:
        """Rebuild soon (something outside the store changed: a host joined or left)."""
        self._dirty.set()

    def converge(self, timeout: float = 10.0) -> bool:
        """Rebuild now and wait until every connected proxy has ACKed it."""
        return self.xds.wait_acked(self._rebuild(), timeout=timeout)

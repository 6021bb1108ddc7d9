"""The local runtime: runs Deployments as local pods and keeps them converged.

``sync()`` records the desired Deployments; a background thread reconciles the pods
towards them (create, scale, delete, rolling update) and each pod's own supervisor
thread keeps its processes alive (see :mod:`meshpilot.runtime.pod`).

Rollouts follow Kubernetes' defaults for a local machine:

* ``RollingUpdate`` (the default) with maxSurge 1 and maxUnavailable 0, whatever the
  manifest says: start one new pod, wait until it is ready, stop one old pod, repeat. The
  ready count never drops below ``replicas``, so proxies that follow the endpoints never
  send a request to a pod that is going away. Old pods that are not ready serve nothing
  and are stopped at once.
* ``Recreate``: stop every old pod, wait until they are gone, then start the new ones.

A Deployment that cannot run (a container without a command whose image is not in the
image map, a probe naming an unknown port, no free pod IP) gets an error in
``deployment_status()``; its existing pods are left alone and other Deployments are not
affected.

Adoption: every pod keeps a record in ``work_dir/pods/<pod>.json``. A runtime started on
a work directory that holds records (its predecessor crashed) adopts the pods whose
processes all still run, with the same configuration (names, addresses, restarts and
readiness unchanged), and supervises them as its own; the others are forgotten (their
remains are for :mod:`meshpilot.server.leftovers`). Adopted pods are left alone until
the first ``sync()``, then reconciled like any other (an outdated template is rolled).
``stop()`` stops every pod, adopted or not.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshpilot.api.kubernetes import Container, Deployment, EnvVar, PodSpec
from meshpilot.api.placement import LOCAL_NODE
from meshpilot.mesh.model import OUTBOUND_PROXY_PORT, InboundPort, ProxyNode, TcpOutbound
from meshpilot.mesh.protocols import port_protocol
from meshpilot.mesh.tcp_outbound import LAST_PORT, TcpTarget, allocate, service_env
from meshpilot.proxy.access_log import AccessLogFile, access_log_path
from meshpilot.proxy.admin_socket import remove_socket_dir
from meshpilot.proxy.adopted import proc_stat
from meshpilot.proxy.bootstrap import bootstrap, node_id
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import PortWalk, free_port
from meshpilot.runtime.images import ImageMap, ImageMapError, NoCommand, resolve_command
from meshpilot.runtime.ipam import DEFAULT_IP_RANGE, IpAllocator, IpRangeExhausted
from meshpilot.runtime.pod import (
    MAX_GRACE_SECONDS,
    ContainerPlan,
    Pod,
    PodWorker,
    expand_vars,
    pod_name,
    port_env_name,
    template_hash,
)
from meshpilot.runtime.pod_config import (
    POD_ROOT_ENV,
    ConfigData,
    config_digest,
    config_env,
    env_value,
    missing_config,
    remove_pod_dir,
    write_volumes,
)
from meshpilot.runtime.probes import probe_spec

__all__ = ["LocalRuntime"]

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, deployment name)

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
               "http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class _Template:
    """A Deployment's pod template, checked and ready to instantiate."""

    hash: str
    labels: Mapping[str, str]
    containers: tuple[Container, ...]
    argvs: tuple[tuple[str, ...], ...]
    container_ports: tuple[int, ...]  # every TCP container port of the pod
    grace: float
    service_account: str = "default"  # the pods' identity (serviceAccountName)
    spec: PodSpec | None = None
    spec_hash: str = ""  # of the template alone; ``hash`` also covers what it reads
    blocked: str = ""  # why its containers cannot start (a ConfigMap or Secret missing)


def _stop_all(workers: Iterable[PodWorker]) -> None:
    for w in workers:
        w.request_stop()


def _by_revision(workers: list[PodWorker],
                 current: str) -> tuple[list[PodWorker], list[PodWorker]]:
    """(pods of the ``current`` template, pods of any other)."""
    return ([w for w in workers if w.template_hash == current],
            [w for w in workers if w.template_hash != current])


def _rolling_step(replicas: int, *, new: int, old: int, ready: int) -> tuple[int, int]:
    """How many old pods to stop and new pods to create in one RollingUpdate step.

    ``old`` pods are all ready (the rest are stopped beforehand) and ``ready`` counts
    ready pods of both revisions. Old pods go only while ``replicas`` others stay ready
    (maxUnavailable 0), and at most one pod beyond ``replicas`` runs (maxSurge 1).
    """
    stop_old = min(old, max(0, ready - replicas))
    remaining = new + old - stop_old
    create = min(replicas - new, replicas + 1 - remaining)
    return stop_old, create


def _var_value(var: EnvVar, declared: Mapping[str, str], ours: Mapping[str, str],
               field_values: Mapping[str, str], namespace: str,
               configs: ConfigData) -> str | None:
    """One ``env`` entry's value, or None when it sets nothing (an unknown fieldPath,
    an optional key that is missing)."""
    if var.value is not None:
        return expand_vars(var.value, {**declared, **ours})
    vf = var.value_from
    if vf is None:
        return ""
    if vf.field_ref is not None:
        return field_values.get(vf.field_ref.field_path)
    return env_value(var, namespace, configs)


@dataclass(frozen=True)
class HostSide:
    """The node a runtime's pods run on: its name and address (what ``spec.nodeName``
    and ``status.hostIP`` read), and, on a joined host, how each sidecar's bootstrap is
    finished (its xDS over mutual TLS, with the credential the control plane issued for
    that pod) before it starts. None: the control plane's own host, xDS on loopback."""

    node: str = LOCAL_NODE
    address: str = "127.0.0.1"
    bootstrap: Callable[[ProxyNode, dict[str, Any]], dict[str, Any]] | None = None

    def outbound_address(self, pod_ip: str) -> str:
        """Where a pod's sidecar takes its app's calls to the mesh: the pod's own address
        here (a loopback one); on a joined host, where pods have routable addresses, a
        loopback address made from the pod's (``10.77.5.17`` -> ``127.77.5.17``), so no
        other host can call the mesh through a pod's sidecar as that pod."""
        if self.bootstrap is None:
            return pod_ip
        _, b, c, d = ipaddress.IPv4Address(pod_ip).packed
        return f"127.{b or 254}.{c}.{d}"  # never 127.0.0.x, the host's own loopback

    def app_address(self, pod_ip: str) -> str:
        """Where a pod's app listens (its ``POD_IP``, its probes, its sidecar's inbound
        clusters): the pod's own address here; on a joined host the same loopback twin
        as :meth:`outbound_address`, so other hosts reach the app only through its
        sidecar, over mutual TLS and behind its authorization policies, never in
        plaintext on the pod's routable address."""
        return self.outbound_address(pod_ip)


RUN_DIR_ENV = "MESHPILOT_RUN_DIR"
"""Set in every pod's environment: the run directory of the runtime that started it."""


class LocalRuntime:
    """Runs Deployments as local pods (app processes + Envoy sidecars) on loopback IPs.

    ``on_change`` is called (from runtime threads, never under a runtime lock) whenever a
    pod appears, disappears, or changes readiness or phase; a pod is an endpoint only
    while ``ready``. ``before_stop`` is called with a pod already marked Terminating and
    not ready, before any of its processes is signalled.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        xds_host: str,
        xds_port: int,
        on_change: Callable[[], None],
        envoy_concurrency: int = 1,
        images: ImageMap | None = None,
        ip_range: str = DEFAULT_IP_RANGE,
        drain_seconds: float = 1.0,
        before_stop: Callable[[Pod], None] | None = None,
        ip_lock_dir: Path | None = None,
        adopt: bool = True,
        port_walk: PortWalk | None = None,
        proxy_token: Callable[[ProxyNode], str] | None = None,
        access_log: bool = True,
        host: HostSide | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.host = host if host is not None else HostSide()
        """The node this runtime runs pods on (a joined host's agent gives its own)."""
        self.access_log = access_log
        """Whether sidecars write Istio-format access logs (next to their bootstrap, see
        :mod:`meshpilot.proxy.access_log`); set before adoption, which compares the
        bootstrap (a sidecar started with the other setting is restarted, not adopted)."""
        self.xds_host = xds_host
        self.xds_port = xds_port
        self.envoy_concurrency = envoy_concurrency
        self.images = images if images is not None else ImageMap.default()
        self.drain_seconds = drain_seconds
        self.ipam = IpAllocator(ip_range, lock_dir=ip_lock_dir,
                                loopback=self.host.bootstrap is None)
        self._port_walk = port_walk if port_walk is not None else PortWalk()
        """Where the apps' ports come from (the control plane shares its own)."""
        self._proxy_token = proxy_token
        """a sidecar's node -> the credential it presents to the xDS server (bound to
        the node's id and identity)."""
        self._on_change = on_change
        self._before_stop = before_stop
        self._lock = threading.RLock()
        self._desired: dict[Key, Deployment] = {}
        self._errors: dict[Key, str] = {}
        self._hashes: dict[Key, str] = {}
        self._spec_hashes: dict[Key, str] = {}
        self._configs: ConfigData = {}
        self._tcp_targets: tuple[TcpTarget, ...] = ()
        """The TCP and TLS Service ports a new pod's sidecar listens for (those of its
        namespace), announced to its app in Kubernetes' service variables."""
        self._workers: dict[str, PodWorker] = {}
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._synced = False  # adopted pods wait for the desired state before reconciling
        self.adopted: list[str] = []
        if adopt:
            self._adopt_all()
        self._thread = threading.Thread(target=self._loop, name="runtime-reconcile",
                                        daemon=True)
        self._thread.start()
        for name in self.adopted:
            self._workers[name].start()

    # --- public API ---------------------------------------------------------------------
    def sync(self, deployments: Iterable[tuple[str, str, Deployment]],
             configs: ConfigData | None = None,
             tcp_targets: Iterable[TcpTarget] | None = None) -> None:
        """Set the desired state: exactly these Deployments (namespace, name, model), and
        the ConfigMaps and Secrets their pods read (``configs``, decoded). A change in
        what a Deployment's pods read is a new revision of it, rolled out as a changed
        template would be. ``tcp_targets``: the Services' TCP and TLS ports, which pods
        started from now on reach through their sidecar (:mod:`meshpilot.mesh.tcp_outbound`;
        like Kubernetes' service variables, a running pod keeps what it started with)."""
        desired = {(ns, name): dep for ns, name, dep in deployments}
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("the runtime is stopped")
            self._desired = desired
            if configs is not None:
                self._configs = configs
            if tcp_targets is not None:
                self._tcp_targets = tuple(tcp_targets)
            self._synced = True
        self._wake.set()

    def pods(self) -> list[Pod]:
        """Every pod, including Terminating ones, sorted by namespace and name."""
        with self._lock:
            workers = list(self._workers.values())
        return sorted((w.snapshot() for w in workers), key=lambda p: (p.namespace, p.name))

    def refresh_sidecar(self, node_id: str, bootstrap: dict[str, Any]) -> bool:
        """Restart the sidecar of the pod whose proxy is ``node_id`` with ``bootstrap``
        (its xDS credential was issued again, different); False if no pod has it."""
        with self._lock:
            worker = next((w for w in self._workers.values() if w.node_id == node_id), None)
        if worker is None:
            return False
        worker.refresh_sidecar(bootstrap)
        return True

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any]:
        """Kubernetes-like status counts plus ``error`` (None when the Deployment runs).

        ``replicas`` counts pods not terminating, ``updatedReplicas`` those of the current
        template, ``readyReplicas`` (= ``availableReplicas``) the ready ones.
        ``templateHash`` names the current revision (the template and the ConfigMap and
        Secret values it reads), ``specHash`` the template alone (:func:`template_hash`).
        """
        key = (namespace, name)
        with self._lock:
            workers = [w for w in self._workers.values()
                       if (w.namespace, w.deployment) == key]
            error = self._errors.get(key)
            current = self._hashes.get(key)
            spec_hash = self._spec_hashes.get(key)
            dep = self._desired.get(key)
        live = [w for w in workers if not w.stopping]
        ready = sum(1 for w in live if w.ready)
        return {
            "desiredReplicas": dep.spec.replicas if dep is not None else 0,
            "replicas": len(live),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "updatedReplicas": sum(1 for w in live if w.template_hash == current),
            "terminatingReplicas": len(workers) - len(live),
            "templateHash": current,
            "specHash": spec_hash,
            "error": error,
            # the generation of the Deployment the runtime was last given (kubectl
            # rollout status waits for it to reach the stored one)
            "observedGeneration": dep.metadata.generation if dep is not None else None,
        }

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every pod gracefully, all in parallel; returns when all are gone."""
        with self._lock:
            self._closed.set()
            self._desired = {}
            workers = list(self._workers.values())
        self._wake.set()
        self._thread.join(timeout=10)
        for w in workers:
            w.request_stop()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.join(timeout=max(0.1, deadline - time.monotonic()))
        self.ipam.release_all()
        remove_socket_dir(self.work_dir / "sidecars")  # the sidecars' admin sockets

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- reconcile ----------------------------------------------------------------------
    def _notify(self) -> None:
        self._wake.set()
        try:
            self._on_change()
        except Exception:
            log.exception("runtime on_change callback failed")

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self._reconcile()
            except Exception:
                log.exception("runtime reconcile failed")

    def _reconcile(self) -> None:
        with self._lock:
            if not self._synced:
                return
            desired = dict(self._desired)
            keys = set(desired) | {(w.namespace, w.deployment) for w in self._workers.values()}
        for key in sorted(keys):
            dep = desired.get(key)
            try:
                self._reconcile_one(key, dep)
            except Exception as exc:  # one bad Deployment must not stop the others
                log.exception("reconcile of %s/%s failed", *key)
                with self._lock:
                    self._errors[key] = f"internal error: {exc}"

    def _reconcile_one(self, key: Key, dep: Deployment | None) -> None:
        with self._lock:
            workers = [w for w in self._workers.values() if (w.namespace, w.deployment) == key]
        live = [w for w in workers if not w.stopping]
        if dep is None:
            self._remove_deployment(key, live)
            return
        template = self._checked_template(key, dep)
        if template is None:
            return  # existing pods are left alone while the template cannot run
        replicas = dep.spec.replicas
        new, old = _by_revision(live, template.hash)
        strategy = dep.spec.strategy.type if dep.spec.strategy else "RollingUpdate"
        if strategy == "Recreate" and any(w.template_hash != template.hash for w in workers):
            _stop_all(old)
            return  # start the new revision once every old pod is gone
        if old:
            self._roll(key, template, new, old, replicas)
        else:
            self._scale(key, template, new, replicas)

    def _remove_deployment(self, key: Key, live: list[PodWorker]) -> None:
        _stop_all(live)
        with self._lock:
            self._errors.pop(key, None)
            self._hashes.pop(key, None)
            self._spec_hashes.pop(key, None)

    def _checked_template(self, key: Key, dep: Deployment) -> _Template | None:
        """The Deployment's template, or None once the reason it cannot run is recorded.

        A pending "no free pod IP" error outlives a good template: only ``_create`` knows
        when an address is free again.
        """
        try:
            template = self._template(dep, key[0])
        except (NoCommand, ImageMapError, ValueError) as exc:
            with self._lock:
                self._errors[key] = str(exc)
            return None
        with self._lock:
            self._hashes[key] = template.hash
            self._spec_hashes[key] = template.spec_hash
            if template.blocked:  # its pods are created, and wait (as Kubernetes' do)
                self._errors[key] = f"CreateContainerConfigError: {template.blocked}"
            elif not self._errors.get(key, "").startswith("no free pod IP"):
                self._errors.pop(key, None)
        return template

    def _scale(self, key: Key, template: _Template, pods: list[PodWorker],
               replicas: int) -> None:
        if len(pods) < replicas:
            self._create(key, template, replicas - len(pods))
        elif len(pods) > replicas:
            _stop_all(self._pick_victims(pods, len(pods) - replicas))

    def _roll(self, key: Key, template: _Template, new: list[PodWorker],
              old: list[PodWorker], replicas: int) -> None:
        """One step of a RollingUpdate (maxSurge 1, maxUnavailable 0); the next wake-up,
        when a new pod turns ready or an old one is gone, takes the next."""
        _stop_all([w for w in old if not w.ready])  # serves nothing: no reason to keep it
        old = [w for w in old if w.ready]
        if len(new) > replicas:
            _stop_all(self._pick_victims(new, len(new) - replicas))
            new = [w for w in new if not w.stopping]
        ready = sum(1 for w in new + old if w.ready)
        stop_old, create = _rolling_step(replicas, new=len(new), old=len(old), ready=ready)
        _stop_all(old[:stop_old])
        if create > 0:
            self._create(key, template, create)

    @staticmethod
    def _pick_victims(workers: list[PodWorker], count: int) -> list[PodWorker]:
        """Not-ready pods first, then the youngest (as Kubernetes' ReplicaSet does)."""
        ranked = sorted(workers, key=lambda w: (w.ready, -w.created_mono))
        return ranked[:count]

    # --- building pods --------------------------------------------------------------------
    def _template(self, dep: Deployment, namespace: str) -> _Template:
        spec = dep.spec.template.spec
        argvs = []
        ports: list[int] = []
        for c in spec.containers:
            argv = resolve_command(c.image, c.command, c.args, self.images)
            argvs.append(tuple(argv))
            names = {p.name: p.container_port for p in c.ports or () if p.name}
            ports += [p.container_port for p in c.ports or () if p.protocol == "TCP"]
            # Resolve the probe now, with placeholder addresses, to report bad port names
            # as a Deployment error rather than as a crash-looping pod.
            probe_spec(c.readiness_probe, ip="127.0.0.1", ports_by_name=names, app_ports={},
                       first_app_port=None)
        if len(set(ports)) != len(ports):
            raise ValueError(f"container port used twice in the pod: {sorted(ports)}")
        if OUTBOUND_PROXY_PORT in ports:
            raise ValueError(f"container port {OUTBOUND_PROXY_PORT} is reserved for the "
                             "sidecar's outbound proxy listener")
        grace = spec.termination_grace_period_seconds
        with self._lock:
            configs = self._configs
        spec_hash = template_hash(dep)
        digest = config_digest(spec, namespace, configs)
        revision = spec_hash if not digest else hashlib.sha256(
            f"{spec_hash}:{digest}".encode()).hexdigest()[:10]
        return _Template(
            hash=revision, spec=spec, spec_hash=spec_hash,
            blocked=missing_config(spec, namespace, configs),
            labels=dict(dep.spec.template.metadata.labels),
            containers=tuple(spec.containers), argvs=tuple(argvs),
            container_ports=tuple(ports),
            grace=min(float(30 if grace is None else grace), MAX_GRACE_SECONDS),
            service_account=spec.service_account_name or spec.service_account or "default",
        )

    def _create(self, key: Key, template: _Template, count: int) -> None:
        namespace, deployment = key
        with self._lock:
            targets = self._tcp_targets
        outbound = allocate(targets, namespace, [*template.container_ports, OUTBOUND_PROXY_PORT])
        wanted = sum(1 for t in targets if t.reaches(namespace))
        if len(outbound) < wanted:
            log.warning("%s/%s: %d of the namespace's %d TCP/TLS Service ports get no local "
                        "port (the range ends at %d); its pods cannot reach the others",
                        namespace, deployment, wanted - len(outbound), wanted, LAST_PORT)
        for _ in range(count):
            try:
                ip = self.ipam.allocate([*template.container_ports, OUTBOUND_PROXY_PORT,
                                         *(o.local_port for o in outbound)])
            except IpRangeExhausted as exc:
                with self._lock:
                    self._errors[key] = str(exc)
                return
            with self._lock:
                if self._errors.get(key, "").startswith("no free pod IP"):
                    self._errors.pop(key, None)
            try:
                worker = self._build(namespace, deployment, template, ip,
                                     (targets, outbound))
            except Exception:
                self.ipam.release(ip)
                raise
            with self._lock:
                if self._closed.is_set():
                    self.ipam.release(ip)
                    return
                self._workers[worker.name] = worker
            worker.start()
        self._notify()

    def _build(self, namespace: str, deployment: str, template: _Template,
               ip: str, tcp: tuple[tuple[TcpTarget, ...], tuple[TcpOutbound, ...]] = ((), ())
               ) -> PodWorker:
        with self._lock:
            taken = set(self._workers)
        name = pod_name(deployment, template.hash)
        while name in taken:
            name = pod_name(deployment, template.hash)
        targets, outbound = tcp
        reserved = {*template.container_ports, OUTBOUND_PROXY_PORT,
                    *(o.local_port for o in outbound)}
        inbound: list[InboundPort] = []
        per_container: list[tuple[dict[str, int], dict[int, int]]] = []
        app_ip = self.host.app_address(ip)
        for c in template.containers:
            names: dict[str, int] = {}
            app_ports: dict[int, int] = {}
            for p in c.ports or ():
                if p.name:
                    names[p.name] = p.container_port
                if p.protocol != "TCP":
                    continue
                app_port = free_port(app_ip, self._port_walk)
                while app_port in reserved:
                    app_port = free_port(app_ip, self._port_walk)
                reserved.add(app_port)
                app_ports[p.container_port] = app_port
                inbound.append(InboundPort(container_port=p.container_port, app_port=app_port,
                                           name=p.name or "", protocol=port_protocol(p.name or "")))
            per_container.append((names, app_ports))

        nid = node_id("sidecar", ip, name, namespace)
        with self._lock:
            configs = self._configs
        pod_dir = self.work_dir / "pods" / f"{name}.d"
        roots = {}
        if template.spec is not None and not template.blocked:
            roots = write_volumes(template.spec, namespace, configs, pod_dir)
        plans = []
        for c, argv, (names, app_ports) in zip(
            template.containers, template.argvs, per_container, strict=True
        ):
            env = self._env(c, ip=ip, pod=name, namespace=namespace, names=names,
                            app_ports=app_ports, labels=template.labels, configs=configs,
                            host=self.host)
            env[RUN_DIR_ENV] = str(self.work_dir)  # lets a restarted control plane find it
            for var, value in service_env(targets, outbound,
                                          self.host.outbound_address(ip)).items():
                env.setdefault(var, value)  # the manifest's own variable wins, as in Kubernetes
            if c.name in roots:
                env[POD_ROOT_ENV] = str(roots[c.name])
            first = next(iter(app_ports.values()), None)
            probe = probe_spec(c.readiness_probe, ip=app_ip, ports_by_name=names,
                               app_ports=app_ports, first_app_port=first)
            plans.append(ContainerPlan(
                name=c.name, argv=tuple(expand_vars(a, env) for a in argv), env=env,
                probe=probe, cwd=c.working_dir, blocked=template.blocked,
            ))

        return self._worker(name=name, namespace=namespace, deployment=deployment,
                            labels=template.labels, template_hash=template.hash, ip=ip,
                            inbound=inbound, plans=plans, node_id=nid,
                            grace_seconds=template.grace,
                            service_account=template.service_account, tcp_outbound=outbound)

    def _worker(self, *, name: str, namespace: str, deployment: str,
                labels: Mapping[str, str], template_hash: str, ip: str,
                inbound: list[InboundPort], plans: list[ContainerPlan], node_id: str,
                grace_seconds: float, service_account: str,
                tcp_outbound: tuple[TcpOutbound, ...] = ()) -> PodWorker:
        sidecars = self.work_dir / "sidecars"
        access_log = AccessLogFile(access_log_path(sidecars, name)) if self.access_log else None
        outbound_ip, app_ip = self.host.outbound_address(ip), self.host.app_address(ip)
        node = ProxyNode(id=node_id, kind="sidecar", namespace=namespace, ip=ip,
                         outbound_ip="" if outbound_ip == ip else outbound_ip,
                         app_ip="" if app_ip == ip else app_ip,
                         workload=deployment, name=name, labels=dict(labels),
                         inbound=tuple(inbound), service_account=service_account,
                         access_log=str(access_log.path) if access_log else "",
                         tcp_outbound=tcp_outbound)
        token = self._proxy_token(node) if self._proxy_token is not None else None
        boot = bootstrap(node, xds_host=self.xds_host, xds_port=self.xds_port, xds_token=token)
        if self.host.bootstrap is not None:
            boot = self.host.bootstrap(node, boot)
        envoy = EnvoyProcess(boot, name=name, work_dir=sidecars,
                             concurrency=self.envoy_concurrency, access_log=access_log)
        return PodWorker(
            name=name, namespace=namespace, deployment=deployment, labels=labels,
            template_hash=template_hash, ip=ip, inbound=inbound, containers=plans,
            node_id=node_id, service_account=service_account, sidecar=envoy,
            log_path=self.work_dir / "pods" / f"{name}.log",
            grace_seconds=grace_seconds, drain_seconds=self.drain_seconds,
            notify=self._notify, before_stop=self._before_stop, on_exit=self._on_exit,
            record_path=self.work_dir / "pods" / f"{name}.json",
            pod_dir=self.work_dir / "pods" / f"{name}.d", tcp_outbound=tcp_outbound,
        )

    # --- adoption -------------------------------------------------------------------------
    def _adopt_all(self) -> None:
        """Adopt the pods a crashed predecessor left running (see the module docstring)."""
        def check(path: Path) -> PodWorker | None:
            try:
                return self._adoptable(json.loads(path.read_text()), path.stem)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("pod record %s unreadable: %s", path, exc)
                return None

        paths = sorted((self.work_dir / "pods").glob("*.json"))
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="adopt") as pool:
            workers = list(pool.map(check, paths))
        for path, worker in zip(paths, workers, strict=True):
            if worker is None:
                path.unlink(missing_ok=True)
                continue
            self._workers[worker.name] = worker
            self.adopted.append(worker.name)
            log.warning("adopted pod %s/%s (%s)", worker.namespace, worker.name, worker.ip)
        for pod_dir in (self.work_dir / "pods").glob("*.d"):
            if pod_dir.name.removesuffix(".d") not in self._workers:
                remove_pod_dir(pod_dir)  # volumes of a pod that is gone: Secret files too

    def _adoptable(self, record: dict[str, Any], file_name: str) -> PodWorker | None:
        name, ip = str(record["name"]), str(record["ip"])
        if name != file_name or not self.ipam.acquire(ip):
            return None
        worker = self._worker(
            name=name, namespace=str(record["namespace"]),
            deployment=str(record["deployment"]), labels=dict(record["labels"]),
            template_hash=str(record["template_hash"]), ip=ip,
            inbound=[InboundPort(**p) for p in record["inbound"]],
            plans=[ContainerPlan.from_json(c) for c in record["containers"]],
            node_id=str(record["node_id"]), grace_seconds=float(record["grace_seconds"]),
            service_account=str(record.get("service_account") or "default"),
            tcp_outbound=tuple(TcpOutbound(**t) for t in record.get("tcp_outbound") or ()),
        )
        if not worker.adopt(record, self.work_dir):
            self.ipam.release(ip)
            return None
        return worker

    def sessions(self) -> set[int]:
        """Session ids of every process the runtime's pods run (apps and sidecars lead
        their own sessions), so that nothing of them is mistaken for a leftover."""
        out = set()
        for pod in self.pods():
            for pid in (*pod.pids, pod.sidecar_pid):
                stat = proc_stat(pid) if pid else None
                if stat is not None:
                    out.add(stat[2])
        return out

    @staticmethod
    def _env(c: Container, *, ip: str, pod: str, namespace: str, names: Mapping[str, int],
             app_ports: Mapping[int, int], labels: Mapping[str, str],
             configs: ConfigData | None = None, host: HostSide | None = None
             ) -> dict[str, str]:
        """The app's environment.

        The host environment (minus proxy settings) is inherited so local commands find
        their interpreter; the venv's bin directory comes first on PATH. The container's
        ``env`` is applied next, then meshpilot's own variables, which always win: a
        manifest's ``PORT: "8080"`` would make the app bind the sidecar's inbound port.
        ``HTTP_PROXY`` and ``HTTPS_PROXY`` name the sidecar; ``NO_PROXY`` covers the pod's
        own address and loopback names, so the app reaches its own endpoints directly and
        every other service, and every host outside the mesh, through the sidecar.
        ``envFrom`` comes before ``env`` (which wins), as in Kubernetes.
        """
        env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([venv_bin, *(p for p in env.get("PATH", "").split(
            os.pathsep) if p and p != venv_bin)])
        env.setdefault("PYTHONUNBUFFERED", "1")
        host = host if host is not None else HostSide()
        proxy = f"http://{host.outbound_address(ip)}:{OUTBOUND_PROXY_PORT}"
        bind = host.app_address(ip)
        direct = ",".join(dict.fromkeys([bind, ip, "localhost", "127.0.0.1"]))
        ours: dict[str, str] = {
            "POD_IP": bind,
            "POD_NAME": pod,
            "POD_NAMESPACE": namespace,
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
            # HTTPS too (CONNECT through the sidecar): the egress policy judges it
            "HTTPS_PROXY": proxy,
            "https_proxy": proxy,
            "NO_PROXY": direct,
            "no_proxy": direct,
        }
        first = next(iter(app_ports.values()), None)
        if first is not None:
            ours["PORT"] = str(first)
        for port_name, container_port in names.items():
            if container_port in app_ports:
                ours[port_env_name(port_name)] = str(app_ports[container_port])
        field_values = {"metadata.name": pod, "metadata.namespace": namespace,
                        "status.podIP": ip, "status.hostIP": host.address,
                        "spec.nodeName": host.node}
        field_values |= {f"metadata.labels['{k}']": v for k, v in labels.items()}
        configs = configs or {}
        declared = config_env(c, namespace, configs)
        for var in c.env or ():
            value = _var_value(var, declared, ours, field_values, namespace, configs)
            if value is not None:
                declared[var.name] = value
        env.update(declared)
        env.update(ours)
        return env

    def _on_exit(self, worker: PodWorker) -> None:
        with self._lock:
            self._workers.pop(worker.name, None)
        self.ipam.release(worker.ip)
        self._notify()

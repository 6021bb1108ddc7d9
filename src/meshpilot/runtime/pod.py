"""One local pod: its app process(es) and an Envoy sidecar, supervised by one thread.

The worker thread owns every process of its pod. It starts them, restarts whatever dies
(exponential back-off), runs the readiness probes, and on request performs the graceful
stop sequence. The pod is ready once every container's probe passes and its sidecar is
LIVE (has its listeners), as a Kubernetes pod is Ready only when all its containers are,
the istio-proxy one included. Readers never touch it directly: they get :class:`Pod`, a
frozen snapshot.

Stop sequence, in this order, so that no request is lost:

1. mark the pod Terminating and not ready, and call ``on_change`` (the control plane
   removes it from the endpoints it sends);
2. ``before_stop(pod)`` (the control plane waits there until every proxy ACKed
   endpoints without this pod);
3. wait ``drain_seconds`` for requests already in flight;
4. SIGTERM the app's process group; SIGKILL after the grace period
   (``terminationGracePeriodSeconds``, default 30 s, capped at :data:`MAX_GRACE_SECONDS`);
5. stop the sidecar.

The worker keeps a record of its pod in ``record_path`` (JSON, replaced atomically
whenever something in it changes): identity, address, ports, container plans, process
ids with their start times, the sidecar, restarts and readiness. A control plane that
crashed leaves its pods running and their records on disk; the next one builds workers
from them with :meth:`PodWorker.adopt` (see :meth:`LocalRuntime.__init__`) and carries on
supervising the same processes. The record is deleted when the stop sequence begins, so
a pod that was being stopped is never adopted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from meshpilot.api.kubernetes import Deployment
from meshpilot.jsonfile import write_json_atomic
from meshpilot.mesh.model import InboundPort, ProxyNode, TcpOutbound
from meshpilot.proxy.adopted import AdoptedProcess, proc_environ, proc_stat, start_time
from meshpilot.proxy.envoy import EnvoyError, EnvoyProcess
from meshpilot.runtime.pod_config import remove_pod_dir
from meshpilot.runtime.probes import ProbeSpec, ReadinessTracker, run_probe

__all__ = [
    "BACKOFF_MAX_SECONDS",
    "BACKOFF_RESET_SECONDS",
    "MAX_GRACE_SECONDS",
    "ContainerPlan",
    "Pod",
    "PodPhase",
    "PodWorker",
    "pod_name",
    "template_hash",
]

log = logging.getLogger(__name__)

PodPhase = Literal["Pending", "Running", "Terminating", "Failed"]

BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
BACKOFF_RESET_SECONDS = 60.0
"""A process that ran this long before dying restarts after the initial back-off again."""
MAX_GRACE_SECONDS = 10.0
"""Cap on terminationGracePeriodSeconds (Kubernetes' default of 30 s is long locally)."""
SIDECAR_NOT_LIVE = "sidecar not ready: waiting for its configuration from the control plane"
"""Why a pod whose containers are ready is not (its sidecar is not LIVE yet)."""

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' random-suffix alphabet


def template_hash(deployment: Deployment) -> str:
    """10 hex chars identifying the pod template; a change means a new revision."""
    doc = deployment.spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def pod_name(deployment: str, hash_: str) -> str:
    """``<deployment>-<template hash>-<5 random chars>``, as Kubernetes names them."""
    suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
    return f"{deployment}-{hash_}-{suffix}"


@dataclass(frozen=True)
class Pod:
    """A snapshot of one pod, for readers (endpoints, CLI, telemetry)."""

    name: str
    namespace: str
    deployment: str
    labels: Mapping[str, str]
    ip: str
    inbound: tuple[InboundPort, ...]
    phase: PodPhase
    ready: bool
    restarts: int
    message: str
    template_hash: str
    started_at: float | None  # time.time() when the pod's processes were first started
    admin_socket: str  # the sidecar's admin Unix socket ("" until it answers there)
    node_id: str
    pids: tuple[int, ...] = ()  # running app processes (one per container)
    sidecar_pid: int | None = None
    log_path: str = ""
    service_account: str = "default"
    reason: str = ""  # why a Pending pod waits, in Kubernetes' words (CreateContainerConfigError)
    sidecar_log_path: str = ""  # the sidecar Envoy's own stdout and stderr
    access_log_path: str = ""  # its access log ("" when access logging is off)
    tcp_outbound: tuple[TcpOutbound, ...] = ()  # the service ports its sidecar listens for
    node: str = ""  # the joined host it runs on ("" for the control plane's own host)
    host_entry: tuple[str, str] | None = None
    """(namespace, name) of the WorkloadEntry of the joined host it runs on: the pod is on
    that host's network (:mod:`meshpilot.mesh.networks`)."""

    def proxy_node(self) -> ProxyNode:
        """The sidecar as the control plane sees it."""
        return ProxyNode(id=self.node_id, kind="sidecar", namespace=self.namespace, ip=self.ip,
                         workload=self.deployment, name=self.name, labels=dict(self.labels),
                         inbound=self.inbound, service_account=self.service_account,
                         access_log=self.access_log_path, tcp_outbound=self.tcp_outbound)


@dataclass(frozen=True)
class ContainerPlan:
    """Everything needed to (re)start one container of a pod."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    probe: ProbeSpec
    cwd: str | None = None
    blocked: str = ""
    """Why the container may not start (a ConfigMap or Secret it reads is missing):
    Kubernetes' CreateContainerConfigError. It waits for a new revision instead."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "argv": list(self.argv), "env": dict(self.env),
                "cwd": self.cwd, "probe": asdict(self.probe), "blocked": self.blocked}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ContainerPlan:
        probe = dict(doc["probe"])
        probe["headers"] = tuple(tuple(h) for h in probe.get("headers", ()))
        probe["command"] = tuple(probe.get("command", ()))
        return cls(name=doc["name"], argv=tuple(doc["argv"]), env=dict(doc["env"]),
                   probe=ProbeSpec(**probe), cwd=doc.get("cwd"),
                   blocked=str(doc.get("blocked") or ""))


Process = subprocess.Popen[bytes] | AdoptedProcess


@dataclass
class _Backoff:
    """Crash-loop back-off of one process: each failure doubles the wait before the next
    attempt, up to BACKOFF_MAX_SECONDS; a process that ran for BACKOFF_RESET_SECONDS
    before exiting was not crash-looping, so its wait starts over."""

    delay: float = BACKOFF_INITIAL_SECONDS
    """The wait before the next attempt."""

    def after_exit(self, ran_for: float) -> float:
        if ran_for >= BACKOFF_RESET_SECONDS:
            self.delay = BACKOFF_INITIAL_SECONDS
        return self.after_failed_start()

    def after_failed_start(self) -> float:
        delay = self.delay
        self.delay = min(delay * 2, BACKOFF_MAX_SECONDS)
        return delay


@dataclass
class _Container:
    plan: ContainerPlan
    tracker: ReadinessTracker
    proc: Process | None = None
    start_time: int | None = None  # of proc, from /proc (identifies it across restarts)
    started_mono: float = 0.0
    next_start: float = 0.0
    backoff: _Backoff = field(default_factory=_Backoff)
    failed_to_start: bool = False
    message: str = ""


@dataclass
class _Sidecar:
    envoy: EnvoyProcess
    started_mono: float = 0.0
    next_start: float = 0.0
    backoff: _Backoff = field(default_factory=_Backoff)
    started: bool = False
    admin_socket: str = ""  # set once its admin answers
    live: bool = False
    """Envoy's server state reached LIVE since it last started: it has its listeners from
    the control plane and accepts on them. Until then the pod is not ready, as Istio's
    istio-proxy readiness probe keeps a Kubernetes pod out of the endpoints: an app that
    answers its probe before its sidecar has its inbound listener would otherwise be an
    endpoint that refuses every connection."""
    message: str = ""
    rebootstrap: dict[str, Any] | None = None
    """A bootstrap to restart the sidecar with, taken by the supervisor's next tick (its
    xDS credential changed: the one it started with would be refused from now on)."""


def _signal_group(proc: Process, sig: int) -> None:
    """Signal the process group the container leads (its children too)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class PodWorker:
    """Owns and supervises one pod's processes (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        deployment: str,
        labels: Mapping[str, str],
        template_hash: str,
        ip: str,
        inbound: Sequence[InboundPort],
        containers: Sequence[ContainerPlan],
        node_id: str,
        sidecar: EnvoyProcess,
        service_account: str = "default",
        log_path: Path,
        grace_seconds: float,
        drain_seconds: float,
        notify: Callable[[], None],
        before_stop: Callable[[Pod], None] | None,
        on_exit: Callable[[PodWorker], None],
        record_path: Path | None = None,
        pod_dir: Path | None = None,
        tcp_outbound: Sequence[TcpOutbound] = (),
    ) -> None:
        self.name = name
        self.tcp_outbound = tuple(tcp_outbound)
        self.namespace = namespace
        self.deployment = deployment
        self.labels = dict(labels)
        self.template_hash = template_hash
        self.ip = ip
        self.inbound = tuple(inbound)
        self.node_id = node_id
        self.service_account = service_account
        self.log_path = log_path
        self.grace_seconds = min(grace_seconds, MAX_GRACE_SECONDS)
        self.drain_seconds = drain_seconds
        self._notify = notify
        self._before_stop = before_stop
        self._on_exit = on_exit
        self._containers = [_Container(plan=c, tracker=ReadinessTracker(c.probe))
                            for c in containers]
        self._sidecar = _Sidecar(envoy=sidecar)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._phase: PodPhase = "Pending"
        self._ready = False
        self._restarts = 0
        self._started_at: float | None = None
        self._log: IO[bytes] | None = None
        self.created_mono = time.monotonic()
        self.record_path = record_path
        self.pod_dir = pod_dir
        """The pod's volumes and container roots (:mod:`meshpilot.runtime.pod_config`),
        deleted when the pod is gone."""
        self._recorded: dict[str, Any] | None = None
        self.adopted = False
        self._thread = threading.Thread(target=self._run, name=f"pod-{name}", daemon=True)

    # --- adoption -------------------------------------------------------------------------
    def adopt(self, record: Mapping[str, Any], run_dir: Path) -> bool:
        """Take over the running processes ``record`` describes (before :meth:`start`).

        Every app process must still run with the recorded start time, process group and
        pod environment, and the sidecar must attach (same command line and bootstrap,
        see :meth:`EnvoyProcess.attach`). Otherwise nothing is adopted and False is
        returned: the pod is half dead and its remains are the caller's to clean up.
        """
        procs: list[AdoptedProcess] = []

        def give_up() -> bool:
            for proc in procs:
                proc.close()
            return False

        entries = record.get("containers", [])
        if len(entries) != len(self._containers):
            return False
        marker = str(run_dir)
        for c, entry in zip(self._containers, entries, strict=True):
            pid, started = entry.get("pid"), entry.get("start_time")
            if not isinstance(pid, int) or not isinstance(started, int):
                return give_up()
            proc = AdoptedProcess.attach(pid, started)
            if proc is None:
                return give_up()
            procs.append(proc)
            stat, env = proc_stat(pid), proc_environ(pid) or {}
            if (stat is None or stat[1] != pid or env.get("POD_NAME") != self.name
                    or env.get("MESHPILOT_RUN_DIR") != marker):
                return give_up()
            c.start_time = started
        if not self._sidecar.envoy.attach():
            return give_up()
        now = time.monotonic()
        ready = bool(record.get("ready"))
        for c, proc in zip(self._containers, procs, strict=True):
            c.proc = proc
            c.started_mono = now
            # keep the pod's readiness as it was: the probes resume at once and take it
            # out of the endpoints only after failureThreshold failures, as they would have
            c.tracker.ready = ready
            c.tracker.message = "" if ready else c.tracker.message
            c.tracker.next_at = now
        sc = self._sidecar
        sc.started, sc.started_mono, sc.admin_socket = True, now, str(sc.envoy.admin_socket)
        sc.live = ready  # as the probes: a ready pod's sidecar was LIVE, and stays so
        self._restarts = int(record.get("restarts", 0))
        started_at = record.get("started_at")
        self._started_at = float(started_at) if started_at is not None else None
        if self._started_at is not None:  # keep its age (scale-down picks the youngest)
            self.created_mono = now - max(0.0, time.time() - self._started_at)
        self._phase = "Running"
        self._ready = ready
        self.adopted = True
        return True

    def _record(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.name, "namespace": self.namespace,
                "deployment": self.deployment, "labels": dict(self.labels),
                "template_hash": self.template_hash, "ip": self.ip,
                "inbound": [asdict(p) for p in self.inbound], "node_id": self.node_id,
                "tcp_outbound": [asdict(t) for t in self.tcp_outbound],
                "service_account": self.service_account,
                "grace_seconds": self.grace_seconds, "restarts": self._restarts,
                "started_at": self._started_at, "ready": self._ready,
                "containers": [
                    {**c.plan.to_json(),
                     "pid": c.proc.pid if c.proc is not None else None,
                     "pgid": c.proc.pid if c.proc is not None else None,
                     "start_time": c.start_time if c.proc is not None else None}
                    for c in self._containers],
                "sidecar": {"name": self._sidecar.envoy.name,
                            "pid": self._sidecar.envoy.pid if self._sidecar.started else None,
                            "admin_socket": self._sidecar.admin_socket},
            }

    def _persist(self) -> None:
        """Rewrite the pod's record if it changed (atomically: write, then rename)."""
        if self.record_path is None:
            return
        record = self._record()
        if record == self._recorded:
            return
        try:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.record_path, record, mode=0o600, indent=1, sort_keys=True)
        except OSError:
            log.exception("pod %s: cannot write %s", self.name, self.record_path)
            return
        self._recorded = record

    def _forget(self) -> None:
        if self.record_path is not None:
            self.record_path.unlink(missing_ok=True)

    # --- control ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Begin the graceful stop sequence (idempotent, returns at once)."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def ready(self) -> bool:
        return self._ready and not self._stop.is_set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _status_message(self, blocked: str) -> str:
        """Why the pod is as it is (held under the lock): a container's own word, else
        what keeps it from starting (said at once, before the supervisor's first look at
        it), else a readiness probe's, else the sidecar's."""
        message = next((c.message for c in self._containers if c.message), "")
        if not message and blocked:
            message = f"CreateContainerConfigError: {blocked}"
        if not message and not self._ready and self._phase == "Running":
            message = next((c.tracker.message for c in self._containers
                            if not c.tracker.ready), "")
        return message or self._sidecar.message

    def snapshot(self) -> Pod:
        stopping = self._stop.is_set()
        with self._lock:
            blocked = next((c.plan.blocked for c in self._containers if c.plan.blocked), "")
            message = self._status_message(blocked)
            return Pod(
                name=self.name, namespace=self.namespace, deployment=self.deployment,
                labels=dict(self.labels), ip=self.ip, inbound=self.inbound,
                phase="Terminating" if stopping else self._phase,
                ready=self._ready and not stopping, restarts=self._restarts, message=message,
                template_hash=self.template_hash, started_at=self._started_at,
                admin_socket=self._sidecar.admin_socket, node_id=self.node_id,
                pids=tuple(c.proc.pid for c in self._containers
                           if c.proc is not None and c.proc.poll() is None),
                sidecar_pid=self._sidecar.envoy.pid if self._sidecar.envoy.running else None,
                log_path=str(self.log_path), service_account=self.service_account,
                sidecar_log_path=str(self._sidecar.envoy.log_path),
                access_log_path=str(self._sidecar.envoy.access_log.path)
                if self._sidecar.envoy.access_log else "",
                reason="CreateContainerConfigError" if blocked else "",
                tcp_outbound=self.tcp_outbound,
            )

    # --- the supervisor loop ------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed at the end of _run
            with self._lock:
                if self._started_at is None:
                    self._started_at = time.time()
            while not self._stop.is_set():
                self._tick()
                if not self._stop.is_set():
                    self._persist()
                self._stop.wait(0.05)
            self._terminate()
        except Exception:  # never leave processes behind because of a bug here
            log.exception("pod %s: supervisor failed", self.name)
            self._kill_everything()
        finally:
            self._forget()
            if self.pod_dir is not None:
                remove_pod_dir(self.pod_dir)
            if self._sidecar.envoy.access_log is not None:  # gone with its pod, as in k8s
                self._sidecar.envoy.access_log.remove()
            if self._log is not None:
                self._log.close()
            try:
                self._on_exit(self)
            except Exception:
                log.exception("pod %s: on_exit failed", self.name)

    def _tick(self) -> None:
        now = time.monotonic()
        self._tick_sidecar(now)
        for c in self._containers:
            self._tick_container(c, now)
        with self._lock:
            if self._stop.is_set():
                return  # _terminate owns phase and readiness from here on
            failed = any(c.failed_to_start for c in self._containers)
            started = self._sidecar.started and all(c.proc is not None for c in self._containers)
            phase: PodPhase = "Failed" if failed else "Running" if started else (
                "Pending" if self._phase == "Failed" else self._phase)
            ready = self._sidecar.envoy.running and self._sidecar.live and all(
                c.proc is not None and c.tracker.ready for c in self._containers)
            changed = ready != self._ready or phase != self._phase
            self._ready, self._phase = ready, phase
        if changed:
            self._notify()

    def _write_log(self, text: str) -> None:
        if self._log is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            self._log.write(f"--- meshpilot {stamp} {text}\n".encode())
            self._log.flush()

    def refresh_sidecar(self, bootstrap: dict[str, Any]) -> None:
        """Restart the sidecar with ``bootstrap`` (a new xDS credential), soon, from the
        supervisor's thread; the apps keep running, and the pod is not ready until the
        new sidecar is LIVE."""
        with self._lock:
            self._sidecar.rebootstrap = bootstrap

    def _rebootstrap(self, now: float) -> None:
        sc = self._sidecar
        with self._lock:
            boot, sc.rebootstrap = sc.rebootstrap, None
            if boot is None:
                return
            was_ready, self._ready = self._ready, False  # out of the endpoints meanwhile
            sc.live = False
        if sc.started:
            sc.envoy.stop(grace=1.0)
        sc.envoy.use_bootstrap(boot)
        with self._lock:
            sc.started, sc.admin_socket, sc.next_start = False, "", now
            sc.message = "sidecar restarting with a new xDS credential"
        self._write_log(sc.message)
        if was_ready:
            self._notify()

    def _tick_sidecar(self, now: float) -> None:
        sc = self._sidecar
        if sc.rebootstrap is not None:
            self._rebootstrap(now)
        if sc.started and not sc.envoy.running:
            code = sc.envoy.stop(grace=0.0)  # reap
            delay = sc.backoff.after_exit(ran_for=now - sc.started_mono)
            with self._lock:
                sc.started = False
                sc.live = False
                sc.next_start = now + delay
                sc.message = (f"sidecar exited with code {code}; restarting in {delay:g}s "
                              f"(see {sc.envoy.log_path})")
                self._restarts += 1
            self._write_log(sc.message)
            return
        if not sc.started and now >= sc.next_start:
            try:
                sc.envoy.start(wait=False)
            except EnvoyError as exc:
                delay = sc.backoff.after_failed_start()
                with self._lock:
                    sc.next_start = now + delay
                    sc.message = f"sidecar failed to start: {exc}"
                return
            with self._lock:
                sc.started = True
                sc.started_mono = now
                sc.admin_socket = ""
        if sc.started and not sc.admin_socket and sc.envoy.wait_admin(timeout=0):
            with self._lock:
                sc.admin_socket = str(sc.envoy.admin_socket)
                sc.message = ""
        if sc.started and sc.admin_socket and not sc.live:
            live = sc.envoy.admin.ready()
            with self._lock:
                sc.live = live
                sc.message = "" if live else SIDECAR_NOT_LIVE
        if sc.started:
            sc.envoy.upkeep(now)

    def _tick_container(self, c: _Container, now: float) -> None:
        if c.proc is not None:
            code = c.proc.poll()
            if code is not None:
                _signal_group(c.proc, signal.SIGKILL)  # orphans of the dead container
                delay = c.backoff.after_exit(ran_for=now - c.started_mono)
                with self._lock:
                    c.proc = None
                    c.next_start = now + delay
                    c.tracker.reset(now)
                    c.message = (f"container {c.plan.name} exited with code {code}; "
                                 f"back-off {delay:g}s before restarting")
                    self._restarts += 1
                self._write_log(c.message)
                return
        if c.proc is None and c.plan.blocked:
            if not c.message:
                with self._lock:
                    c.message = f"CreateContainerConfigError: {c.plan.blocked}"
                self._write_log(c.message)
            return
        if c.proc is None:
            if now < c.next_start:
                return
            self._write_log(f"starting container {c.plan.name}: {list(c.plan.argv)}")
            try:
                proc = subprocess.Popen(
                    list(c.plan.argv), env=dict(c.plan.env), cwd=c.plan.cwd,
                    stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                delay = c.backoff.after_failed_start()
                with self._lock:
                    c.failed_to_start = True
                    c.next_start = now + delay
                    c.message = (f"container {c.plan.name} cannot start "
                                 f"{list(c.plan.argv)}: {exc}; retrying in {delay:g}s")
                self._write_log(c.message)
                return
            with self._lock:
                c.proc = proc
                c.start_time = start_time(proc.pid)
                c.failed_to_start = False
                c.started_mono = now
                c.message = ""
                c.tracker.reset(now)
            return
        if c.tracker.due(now):
            ok, message = run_probe(c.plan.probe, env=c.plan.env, cwd=c.plan.cwd)
            with self._lock:
                c.tracker.record(ok, message, time.monotonic())

    # --- stopping -----------------------------------------------------------------------
    def _terminate(self) -> None:
        self._forget()  # a pod being stopped is never adopted
        with self._lock:
            self._phase = "Terminating"
            self._ready = False
        self._notify()
        if self._before_stop is not None:
            try:
                self._before_stop(self.snapshot())
            except Exception:
                log.exception("pod %s: before_stop failed", self.name)
        if self.drain_seconds > 0:
            time.sleep(self.drain_seconds)
        procs = [c.proc for c in self._containers if c.proc is not None]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._write_log(f"pid {proc.pid} ignored SIGTERM for "
                                f"{self.grace_seconds:g}s; killing it")
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._sidecar.envoy.stop(grace=5.0)
        with self._lock:
            for c in self._containers:
                c.proc = None
        self._write_log("pod stopped")

    def _kill_everything(self) -> None:
        for c in self._containers:
            if c.proc is not None:
                _signal_group(c.proc, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    c.proc.wait(timeout=5)
        with contextlib.suppress(Exception):
            self._sidecar.envoy.stop(grace=1.0)


# --- building a pod's containers ----------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command, args and env values (``$$`` escapes)."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(repl, text)


def port_env_name(name: str) -> str:
    return "PORT_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()

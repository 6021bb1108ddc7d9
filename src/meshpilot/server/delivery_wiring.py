"""Progressive delivery wired into the control plane: the delivery core's ports made real.

- :class:`StoreWriter`: the controller writes like any user, through ``ConfigService``
  (load → validate → store), so ``meshpilot get`` shows what the rollout is doing.
- :class:`ClusterView`: the stored Canary / Deployment / MetricTemplate / AlertProvider
  bodies, plus the local runtime's pods, reported per pod template so "ready" means "the
  new template is serving".
- :class:`TelemetryTraffic`: the embedded telemetry's counts, from which the delivery
  core's built-in provider answers Flagger's two built-in metrics.
- :class:`DeliveryLoop`: ticks every Canary on a timer, on store changes and, while its
  canary holds traffic, on its canary sidecars' failure reports, each Canary on its own
  worker thread; serves the built-in load tester on a loopback port
  (``endpoints.json`` key ``loadtester``), which runs shell commands only when the
  control plane was started with ``--loadtester-commands``.

Webhook URLs whose host is ``flagger-loadtester`` (any namespace suffix, e.g. Flagger's
``http://flagger-loadtester.test/``) or ``meshpilot-loadtester`` are sent to the built-in
load tester, so Canaries written for Flagger work unchanged; the hook's timeout goes with
them (``?timeout=``), so a command the tester runs ends before the call gives up.
"""

from __future__ import annotations

import getpass
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from pydantic import BaseModel

from meshpilot.api import flagger_tester
from meshpilot.api.argo import Rollout
from meshpilot.api.base import parse_duration
from meshpilot.api.credentials import Secret
from meshpilot.api.flagger import Canary, CanaryWebhook, MetricTemplate
from meshpilot.api.flagger_alerts import AlertProvider
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import by_kind
from meshpilot.api.kubernetes import Deployment
from meshpilot.delivery import (
    BuiltinMetrics,
    HttpAlertPoster,
    HttpWebhookCaller,
    Providers,
    RolloutController,
    Settings,
    TrafficSource,
    WebhookCaller,
    WebhookResult,
    WorkloadStatus,
    WorkloadTraffic,
    WriteError,
    spec_hash,
)
from meshpilot.delivery.argo import ArgoController
from meshpilot.delivery.argo.analysis import COMPLETED as ANALYSIS_COMPLETED
from meshpilot.delivery.argo.fail_fast import ArgoFailFast, canary_workload
from meshpilot.delivery.argo.metric_providers import HttpMeasurer
from meshpilot.delivery.argo.runner import AnalysisRunner
from meshpilot.delivery.loadtester import LoadTester
from meshpilot.delivery.ports import LiveCounts
from meshpilot.delivery.shell_tasks import ShellTasks, command_env
from meshpilot.delivery.state import ANALYSIS_PHASES
from meshpilot.delivery.webhooks import DEFAULT_TIMEOUT_S
from meshpilot.delivery.workers import CanaryWorkers
from meshpilot.runtime.pod import template_hash
from meshpilot.server.config_service import ConfigService
from meshpilot.store import ConfigStore, NotFound, PutStatus, Watch, WatchEvent
from meshpilot.telemetry import Matcher
from meshpilot.telemetry.istio import REQUESTS_TOTAL
from meshpilot.validation import Generated

if TYPE_CHECKING:
    from meshpilot.runtime import Pod
    from meshpilot.telemetry import MeshTelemetry

log = logging.getLogger(__name__)
timeline = logging.getLogger("meshpilot.timeline")
"""Stage times of live reads (``time.monotonic``), at DEBUG for benchmarks."""

WRITER_SOURCE = "<delivery-controller>"
TICK_SECONDS = 0.5
"""Every Canary is stepped at least this often (pod readiness is not a store event)."""
HOT_TICK_SECONDS = 0.1
"""How often a Canary whose canary holds traffic under analysis is stepped (fail-fast)."""
EVENT_DEBOUNCE_SECONDS = 0.05
STOP_SECONDS = 15.0
FOLLOWER_POLL_SECONDS = 0.2  # how soon a replica notices it took the lead
"""How long stopping waits in all for ticks still running (a webhook in flight)."""
FORGET_SECONDS = 30.0
"""How often the controller's write cache is dropped, so a generated object someone
edited or deleted by hand is put back."""


Publish = Callable[[dict[str, Any]], None]
"""Merges entries into the process's endpoints.json."""


class RuntimeView(Protocol):
    """What delivery reads of the local runtime: its pods, and the pod template each
    Deployment runs or converges to."""

    def pods(self) -> Sequence[Pod]: ...

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any]: ...


def _key(kind: str, namespace: str, name: str) -> ObjectKey:
    return ObjectKey(by_kind(kind).group, kind, namespace, name)


# --- the writer -------------------------------------------------------------------------


class StoreWriter:
    """ObjectWriter over the one config path."""

    def __init__(self, service: ConfigService, source: str = WRITER_SOURCE) -> None:
        self.service = service
        self.store: ConfigStore = service.store
        self.source = source

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        if not objects:
            return
        self._apply(objects, ())

    def apply_with_status(self, objects: Sequence[dict[str, Any]], namespace: str, name: str,
                          status: dict[str, Any]) -> None:
        """``objects`` and the Canary's status in one store commit."""
        self._apply(objects, (PutStatus(_key("Canary", namespace, name), status),))

    def _apply(self, objects: Sequence[dict[str, Any]], statuses: Sequence[PutStatus]) -> None:
        # typed objects, not text: validated as a person's file is, without the parse
        # that finds every field's line (a rollback's route waits for the write)
        generated = Generated(self.source, tuple(objects))
        outcome = self.service.apply([generated], statuses=statuses)
        if outcome.status != 200:
            detail = "; ".join(d.format() for d in outcome.diagnostics) or "no diagnostics"
            raise WriteError(f"HTTP {outcome.status}: {detail}")

    def delete(self, namespace: str, refs: Sequence[tuple[str, str]]) -> None:
        keys = [_key(kind, namespace, name) for kind, name in refs]
        outcome = self.service.delete(keys, ignore_missing=True)
        if outcome.status != 200:
            detail = "; ".join(d.format() for d in outcome.diagnostics)
            raise WriteError(f"HTTP {outcome.status}: {detail}")

    def put_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.store.commit([PutStatus(_key("Canary", namespace, name), status)])
        except NotFound:
            log.info("Canary %s/%s was deleted; its status is not written", namespace, name)

    def put_rollout_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.store.commit([PutStatus(_key("Rollout", namespace, name), status)])
        except NotFound:
            log.info("Rollout %s/%s was deleted; its status is not written", namespace, name)

    def put_analysis_run_status(self, namespace: str, name: str,
                                status: dict[str, Any]) -> None:
        try:
            self.store.commit([PutStatus(_key("AnalysisRun", namespace, name), status)])
        except NotFound:
            log.info("AnalysisRun %s/%s was deleted; its status is not written",
                     namespace, name)


ModelT = TypeVar("ModelT", bound=BaseModel)


# --- the reader -------------------------------------------------------------------------


class ClusterView:
    """ClusterReader over the store and the local runtime."""

    def __init__(self, store: ConfigStore,
                 runtime: Callable[[], RuntimeView | None]) -> None:
        self.store = store
        self._runtime = runtime

    def _model(self, model: type[ModelT], kind: str, namespace: str, name: str, *,
               warn: bool = False) -> ModelT | None:
        """The stored object as ``model``; None when absent or when it does not parse
        (logged with ``warn``: the objects a controller steps on)."""
        obj = self.store.get(_key(kind, namespace, name))
        if obj is None:
            return None
        try:
            return model.model_validate(obj.body)
        except ValueError as exc:
            if warn:
                log.warning("%s %s/%s does not parse: %s", kind, namespace, name, exc)
            return None

    def canary(self, namespace: str, name: str) -> Canary | None:
        return self._model(Canary, "Canary", namespace, name, warn=True)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.store.get(_key("Deployment", namespace, name))
        return obj.body if obj is not None else None

    def rollout(self, namespace: str, name: str) -> Rollout | None:
        return self._model(Rollout, "Rollout", namespace, name, warn=True)

    def routing_object(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        """The stored VirtualService or DestinationRule, with its resourceVersion."""
        obj = self.store.get(_key(kind, namespace, name))
        return obj.body if obj is not None else None

    def rollouts(self) -> list[tuple[str, str]]:
        return [(o.key.namespace, o.key.name) for o in self.store.list(kind="Rollout")]

    def analysis_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.routing_object(namespace, "AnalysisRun", name)

    def analysis_runs(self) -> list[tuple[str, str]]:
        """The AnalysisRuns still to measure (not yet completed)."""
        return [(o.key.namespace, o.key.name) for o in self.store.list(kind="AnalysisRun")
                if (o.body.get("status") or {}).get("phase") not in ANALYSIS_COMPLETED]

    def workload(self, namespace: str, name: str) -> WorkloadStatus:
        """The pods of the template the runtime is converging to, counted when ready.

        The runtime names templates by its own hash (of the parsed model); the delivery
        core by ``spec_hash`` of the raw template. They are matched through the stored
        body: when the runtime already acts on the stored template, that template's
        ``spec_hash`` is reported; otherwise (the runtime has not caught up yet) a hash
        that matches nothing, so the workload reads "not ready with that template".
        """
        body = self.deployment(namespace, name)
        if body is None:
            return WorkloadStatus()
        spec = body.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        runtime = self._runtime()
        if runtime is None:
            return WorkloadStatus(True, None, desired, 0)
        status = runtime.deployment_status(namespace, name)
        current, applied = status.get("templateHash"), status.get("specHash")
        try:
            stored = template_hash(Deployment.model_validate(body))
        except ValueError:
            stored = None
        if current is None or applied != stored:
            return WorkloadStatus(True, f"runtime:{current}", desired, 0)
        ready = sum(
            1 for p in runtime.pods()
            if p.namespace == namespace and p.deployment == name
            and p.template_hash == current and p.ready and p.phase != "Terminating"
        )
        return WorkloadStatus(True, spec_hash(spec.get("template")), desired, ready)

    def metric_template(self, namespace: str, name: str) -> MetricTemplate | None:
        return self._model(MetricTemplate, "MetricTemplate", namespace, name)

    def config(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        obj = self.store.get(_key(kind, namespace, name))
        return obj.body if obj is not None else None

    def alert_provider(self, namespace: str, name: str) -> AlertProvider | None:
        return self._model(AlertProvider, "AlertProvider", namespace, name)

    def autoscaler(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.store.get(_key("HorizontalPodAutoscaler", namespace, name))
        return obj.body if obj is not None else None

    def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        obj = self.store.get(_key("Secret", namespace, name))
        if obj is None:
            return None
        try:
            return Secret.model_validate(obj.body).decoded()
        except ValueError:
            return None

    def canaries(self) -> list[tuple[str, str]]:
        return [(o.key.namespace, o.key.name) for o in self.store.list(kind="Canary")]


# --- metrics ----------------------------------------------------------------------------


class TelemetryTraffic:
    """TrafficSource over the embedded telemetry's summary query (the same ``istio_*``
    series a Prometheus would scrape), for the built-in metrics."""

    def __init__(self, telemetry: Callable[[], MeshTelemetry | None]) -> None:
        self._telemetry = telemetry

    def traffic(self, labels: Mapping[str, str], window_s: float,
                quantile: float) -> WorkloadTraffic | None:
        telemetry = self._telemetry()
        if telemetry is None:
            return None
        matchers = [Matcher(name, "=", value) for name, value in labels.items()]
        rows = telemetry.query.summary(matchers, (), window_s, (quantile,))
        if not rows:
            return None
        row: dict[str, Any] = rows[0]
        rate = row.get("successRate")
        latency = (row.get("latencyMs") or {}).get(f"p{quantile * 100:g}")
        return WorkloadTraffic(
            requests=int(row.get("requests") or 0), errors=int(row.get("errors") or 0),
            success_rate=float(rate) if rate is not None else None,
            latency_ms=float(latency) if latency is not None else None,
        )


    def live_counts(self, namespace: str, workload: str) -> tuple[int, int] | None:
        telemetry = self._telemetry()
        if telemetry is None:
            return None
        started = time.monotonic()
        points = telemetry.scraper.read_now(
            lambda t: t.identity.kind == "sidecar" and t.identity.namespace == namespace
            and t.identity.workload == workload)
        if points is None:
            return None
        served = [p for p in points if p.metric == REQUESTS_TOTAL
                  and dict(p.labels).get("reporter") == "destination"]
        failed = sum(p.value for p in served
                     if str(dict(p.labels).get("response_code", "")).startswith("5"))
        if timeline.isEnabledFor(logging.DEBUG):
            timeline.debug("%.4f live-read %s/%s start=%.4f requests=%d failed=%d",
                           time.monotonic(), namespace, workload, started,
                           sum(p.value for p in served), failed)
        return int(sum(p.value for p in served)), int(failed)


# --- webhooks ---------------------------------------------------------------------------


class LocalWebhooks:
    """Sends Flagger's load tester host names to the built-in load tester, through
    ``tester`` (a caller with the tester's credential) when given, else ``inner``."""

    def __init__(self, inner: WebhookCaller, loadtester: Callable[[], str | None],
                 tester: WebhookCaller | None = None) -> None:
        self.inner = inner
        self.tester = tester or inner
        self._loadtester = loadtester

    def rewrite(self, url: str, timeout: str | None = None) -> str:
        """``url`` on the built-in tester, if it names it, with the hook's ``timeout``."""
        base = self._loadtester()
        if not base or not flagger_tester.is_builtin_tester(url):
            return url
        parts = urlsplit(url)
        seconds = parse_duration(timeout) if timeout else DEFAULT_TIMEOUT_S
        query = "&".join(q for q in (parts.query, f"timeout={seconds:g}s") if q)
        target = urlsplit(base)
        return urlunsplit(("http", target.netloc, parts.path or "/", query, ""))

    def call(self, hook: CanaryWebhook, payload: dict[str, Any]) -> WebhookResult:
        url = self.rewrite(hook.url, hook.timeout)
        if url == hook.url:
            return self.inner.call(hook, payload)
        return self.tester.call(hook.model_copy(update={"url": url}), payload)


# --- the load tester server --------------------------------------------------------------


class LoadTesterServer:
    """The built-in load tester (Flagger's tester API) on a loopback port; with
    ``commands`` it runs the hooks' shell commands on this host."""

    def __init__(self, proxy: str, host: str, port: int, *, commands: bool = False,
                 token: str | None = None, gate_token: str | None = None) -> None:
        shell = ShellTasks(command_env(proxy)) if commands else None
        self.tester = LoadTester(proxy=proxy, shell=shell, token=token, gate_token=gate_token)
        self.host = host
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(self.tester.app, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="loadtester", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self.tester.stop_all()
        self.server.should_exit = True
        self._thread.join(timeout=5)
        self.sock.close()


# --- the loop ---------------------------------------------------------------------------


class DeliveryLoop:
    """Steps every Canary: on a timer (``TICK_SECONDS``) and soon after a Canary or
    Deployment changes in the store. Built by the composition root (``server.compose``)
    from the ports it uses: the store, a view of the runtime's pods, the telemetry's
    counts and a way to publish the load tester's address.

    The loop only asks for ticks; each Canary's ticks run on its own worker
    (``CanaryWorkers``), so a webhook taking its whole timeout for one Canary delays
    neither the other Canaries nor this loop."""

    def __init__(self, store: ConfigStore, runtime: Callable[[], RuntimeView | None],
                 traffic: TrafficSource, publish: Publish, *, mesh_proxy: str,
                 loadtester_port: int, loadtester_commands: bool = False,
                 tick_seconds: float = TICK_SECONDS,
                 settings: Settings | None = None, live: LiveCounts | None = None,
                 api_token: str | None = None,
                 service: ConfigService | None = None,
                 leading: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self.leading = leading
        """Whether this replica steps the rollouts (only the elected leader does, among
        replicas on one etcd: a rollout is stepped once, wherever it is read)."""
        self.api_token = api_token
        self.publish = publish
        self.mesh_proxy = mesh_proxy
        self.loadtester_port = loadtester_port
        self.loadtester_commands = loadtester_commands
        self.tick_seconds = tick_seconds
        self.service = service or ConfigService(store)
        self.view = ClusterView(store, runtime)
        self.loadtester: LoadTesterServer | None = None
        # Only the controller may have the tester run commands: its port is open to
        # every local user, and a command runs as this process's user.
        self._tester_token = secrets.token_urlsafe(32)
        self.webhooks = LocalWebhooks(
            HttpWebhookCaller(), lambda: self.loadtester.url if self.loadtester else None,
            HttpWebhookCaller(headers={"Authorization": f"Bearer {self._tester_token}"}))
        self.alert_poster = HttpAlertPoster()
        self.controller = RolloutController(
            time.time, StoreWriter(self.service), self.view, BuiltinMetrics(traffic),
            self.webhooks, Providers(), settings, live, self.alert_poster,
        )
        self.workers = CanaryWorkers(self._tick_one)
        self.argo = ArgoController(time.time, StoreWriter(self.service), self.view,
                                   ArgoFailFast(live) if live is not None else None)
        self.argo_workers = CanaryWorkers(self._tick_argo, name="argo")
        self.measurer = HttpMeasurer()
        self.analysis = AnalysisRunner(time.time, self.view, StoreWriter(self.service),
                                       self.measurer)
        self.analysis_workers = CanaryWorkers(self.analysis.tick, name="analysis")
        self._hot_rollouts: set[tuple[str, str]] = set()
        """Rollouts whose canary fail-fast judges (opted in, holding traffic)."""
        self._hot: set[tuple[str, str]] = set()
        self._hot_targets: dict[tuple[str, str], str] = {}
        """Hot Canary -> its target workload, whose failure reports step it at once."""
        self._hot_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)
        self._generations: dict[tuple[str, str], int] = {}
        self._rollout_generations: dict[tuple[str, str, str], int] = {}

    def start(self) -> None:
        """Serve the load tester (published as ``loadtester`` in endpoints.json), then
        step the Canaries."""
        try:
            self.loadtester = LoadTesterServer(self.mesh_proxy, "127.0.0.1",
                                               self.loadtester_port,
                                               commands=self.loadtester_commands,
                                               token=self._tester_token,
                                               gate_token=self.api_token)
            self.publish({"loadtester": self.loadtester.start()})
            if self.loadtester_commands:
                log.warning("the built-in load tester runs webhook commands (type bash and "
                            "cmd) on this host as user %s", getpass.getuser())
        except OSError as exc:
            log.warning("the built-in load tester did not start: %s", exc)
            self.loadtester = None
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=STOP_SECONDS)
        self.workers.stop(timeout=STOP_SECONDS)
        self.argo_workers.stop(timeout=STOP_SECONDS)
        self.controller.close(timeout=STOP_SECONDS)
        self.analysis_workers.stop(timeout=STOP_SECONDS)
        self.measurer.close()
        self.alert_poster.close()
        if self.loadtester is not None:
            self.loadtester.stop()

    # --- stepping -----------------------------------------------------------------

    def _tick_one(self, namespace: str, name: str) -> None:
        """One tick on the Canary's worker; a Canary whose canary holds traffic under
        analysis becomes hot: ticked every ``HOT_TICK_SECONDS`` so that fail-fast sees
        its failures within a fraction of a second, not at the next regular tick."""
        decision = self.controller.tick(namespace, name)
        st = decision.state if decision is not None else None
        hot = bool(st and st.phase in ANALYSIS_PHASES and st.analysis_started and (
            st.canary_weight > 0 or st.mirror_stage or st.ab_active))
        key = (namespace, name)
        with self._hot_lock:
            target = self._hot_targets.get(key) if hot else None
        if hot and target is None:
            canary = self.view.canary(namespace, name)
            target = canary.spec.target_ref.name if canary is not None else None
        with self._hot_lock:
            if hot:
                self._hot.add(key)
            else:
                self._hot.discard(key)
            if target is not None:
                self._hot_targets[key] = target
            else:
                self._hot_targets.pop(key, None)

    def _tick_argo(self, namespace: str, name: str) -> None:
        """One tick of a Rollout; one whose opted-in canary holds traffic becomes hot
        (ticked every ``HOT_TICK_SECONDS``, so its fail-fast sees failures at once)."""
        decision = self.argo.tick(namespace, name)
        hot = False
        if decision is not None and decision.state.canary_weight > 0:
            rollout = self.view.rollout(namespace, name)
            hot = rollout is not None and canary_workload(rollout, decision.state) is not None
        with self._hot_lock:
            if hot:
                self._hot_rollouts.add((namespace, name))
            else:
                self._hot_rollouts.discard((namespace, name))

    def failures_reported(self, namespace: str, workload: str, failed: int) -> None:
        """A canary's sidecars just answered ``failed`` requests with 5xx: step at once
        the hot Canaries whose target that is (fail-fast judges on arrival, not at the
        next hot tick). Called on the xDS server's loop: it only kicks workers."""
        with self._hot_lock:
            canaries = [name for (ns, name), target in self._hot_targets.items()
                        if ns == namespace and target == workload]
        if timeline.isEnabledFor(logging.DEBUG):
            timeline.debug("%.4f failure-report %s/%s failed=%d canaries=%d", time.monotonic(),
                           namespace, workload, failed, len(canaries))
        for name in canaries:
            self.workers.kick(namespace, name)

    def _kick_hot(self) -> None:
        with self._hot_lock:
            hot = list(self._hot)
            rollouts = list(self._hot_rollouts)
        if timeline.isEnabledFor(logging.DEBUG):
            timeline.debug("%.4f kick-hot %d", time.monotonic(), len(hot))
        for namespace, name in hot:
            self.workers.kick(namespace, name)
        for namespace, name in rollouts:
            self.argo_workers.kick(namespace, name)

    def tick_all(self) -> None:
        """Ask every Canary's worker for a tick; the workers of deleted Canaries end."""
        canaries = self.view.canaries()
        for namespace, name in canaries:
            self.workers.kick(namespace, name)
        self.workers.retire_others(canaries)
        rollouts = self.view.rollouts()
        for namespace, name in rollouts:
            self.argo_workers.kick(namespace, name)
        self.argo_workers.retire_others(rollouts)
        runs = self.view.analysis_runs()
        for namespace, name in runs:
            self.analysis_workers.kick(namespace, name)
        self.analysis_workers.retire_others(runs)

    def _relevant(self, event: WatchEvent) -> bool:
        key = event.object.key
        if key.kind == "Canary":
            ident = (key.namespace, key.name)
            if event.type == "DELETED":
                self._generations.pop(ident, None)
                self._clean_up(event.object.body)
                return False
            # A status write (ours) does not bump the generation: nothing to do for it.
            seen = self._generations.get(ident)
            self._generations[ident] = event.object.generation
            return seen != event.object.generation
        if key.kind == "Rollout":
            return self._rollout_event(event)
        if key.kind == "AnalysisRun":
            return event.type == "ADDED"
        return key.kind == "Deployment"

    def _rollout_event(self, event: WatchEvent) -> bool:
        """Whether a Rollout event asks for a tick soon: a spec change does (a status
        write, ours, does not bump the generation); a deletion removes its revisions."""
        key = event.object.key
        ident = ("Rollout", key.namespace, key.name)
        if event.type == "DELETED":
            self._rollout_generations.pop(ident, None)
            status = event.object.body.get("status")
            self.argo_workers.submit(key.namespace, key.name, lambda: self.argo.deleted(
                key.namespace, key.name, status))
            return False
        seen = self._rollout_generations.get(ident)
        self._rollout_generations[ident] = event.object.generation
        return seen != event.object.generation

    def _clean_up(self, body: dict[str, Any]) -> None:
        """Revert a deleted Canary on its own worker, after a tick it may be running."""
        try:
            canary = Canary.model_validate(body)
        except ValueError:
            log.exception("a deleted Canary does not parse; nothing cleaned up")
            return
        self.workers.submit(canary.metadata.namespace, canary.metadata.name,
                            lambda: self.controller.deleted(canary))

    def _follow(self, watch: Watch) -> None:
        """While another replica leads: read the events (so the watch does not pile them
        up) and do nothing with them; the leader acts on them, and on taking the lead
        this replica reads every rollout's persisted state afresh."""
        event = watch.get(timeout=FOLLOWER_POLL_SECONDS)
        while event is not None and not self._stopping.is_set():
            event = watch.get(timeout=0)
        self._generations.clear()
        self._rollout_generations.clear()

    def _run(self) -> None:
        next_all = next_hot = 0.0
        next_forget = time.monotonic() + FORGET_SECONDS
        with self.store.watch() as watch:
            while not self._stopping.is_set():
                if not self.leading():
                    self._follow(watch)
                    next_all = 0.0  # on taking the lead, tick every rollout at once
                    continue
                now = time.monotonic()
                due = min(next_all, next_hot if self._hot else next_all)
                # woken at least every hot tick: a Canary that turned hot on its worker
                # since ``due`` was worked out is kicked within one, not a regular tick
                event = watch.get(timeout=max(0.0, min(due - now, HOT_TICK_SECONDS)))
                soon = False
                while event is not None:
                    soon = self._relevant(event) or soon
                    event = watch.get(timeout=0)
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                if soon:
                    self._stopping.wait(EVENT_DEBOUNCE_SECONDS)
                    while (event := watch.get(timeout=0)) is not None:
                        self._relevant(event)
                if soon or now >= next_all:
                    if now >= next_forget:
                        self.controller.forget()
                        next_forget = now + FORGET_SECONDS
                    self.tick_all()
                    next_all = time.monotonic() + self.tick_seconds
                elif (self._hot or self._hot_rollouts) and now >= next_hot:
                    self._kick_hot()
                    next_hot = now + HOT_TICK_SECONDS

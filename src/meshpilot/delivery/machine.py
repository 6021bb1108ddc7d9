"""The rollout state machine: one call decides one tick.

``reconcile`` takes the Canary, what is observed (target Deployment, pod readiness), the
persisted state and the time, asks its sensors (metrics, webhooks) what it needs, and
returns the next state plus the complete set of objects that state calls for. It writes
nothing: the controller shell persists the state first and then the objects, so a crash
between the two is repaired by the next tick re-deriving the same objects.

The flow follows Flagger's scheduler: Initializing → Initialized; a new revision →
(confirm-rollout) → canary scaled up and ready → pre-rollout hooks → per interval:
rollback hooks, rollout hooks, metric checks, then one step of the strategy (weights,
mirror, A/B or blue-green iterations, confirm-traffic-increase, confirm-promotion) →
Promoting → Finalising → Succeeded; or Failed with the reason on any rollback.

Alerts are decided here too, as intents in the Decision (sent by the controller once the
state is written), at the moments and with the severities of Flagger's scheduler
(``pkg/controller/scheduler.go``, ``scheduler_hooks.go``): info for a new target and a
new revision (with the Canary's settings) and for a finished promotion; warn while a
gate waits for approval (unless the closed hook has ``muteAlert``) and for a manual
rollback; error when a rollout fails (failed checks threshold, progress deadline, a
primary that does not take the promoted template).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from meshpilot.api.base import parse_duration
from meshpilot.api.flagger import Canary, CanaryWebhook
from meshpilot.api.flagger_alerts import AlertSeverity
from meshpilot.delivery import configs
from meshpilot.delivery import objects as gen
from meshpilot.delivery.affinity import sync_cookies
from meshpilot.delivery.alerts import AlertIntent
from meshpilot.delivery.checks import (
    CheckContext,
    SecretLookup,
    TemplateLookup,
    combine,
    evaluate,
)
from meshpilot.delivery.configs import ConfigKey
from meshpilot.delivery.fail_fast import conclusive_failure, judge
from meshpilot.delivery.ports import LiveCounts, WorkloadStatus
from meshpilot.delivery.providers import MetricProvider, MetricsSource
from meshpilot.delivery.state import (
    ANALYSIS_PHASES,
    IDLE_PHASES,
    CheckRecord,
    Event,
    RolloutState,
    spec_hash,
)
from meshpilot.delivery.webhooks import WebhookCaller, event_payload, hooks_of, payload

Command = Literal["promote", "abort", "pause", "resume", "retry"]
COMMANDS: tuple[str, ...] = ("promote", "abort", "pause", "resume", "retry")

NEW_REVISION_ALERT = "New revision detected, progressing canary analysis."
SKIPPED = "analysis skipped (skipAnalysis)"
"""``promoted_by`` of a promotion without analysis: it ends with Flagger's skipped
alert instead of the completed one."""


@dataclass(frozen=True)
class Settings:
    drain_seconds: float = 3.0
    """How long a workload keeps its pods after traffic was moved off it, so requests in
    flight and proxies that have not yet applied the new routes still find it."""
    min_interval_seconds: float = 1.0
    """The shortest analysis interval accepted (Flagger's floor is 10 s; ours is lower
    for fast rollbacks)."""


@dataclass(frozen=True)
class Observed:
    target: dict[str, Any] | None
    primary: WorkloadStatus
    canary: WorkloadStatus
    configs: Mapping[ConfigKey, Mapping[str, Any]] = field(default_factory=dict)
    """The tracked ConfigMaps and Secrets the target's template reads (their bodies)."""
    scalers: gen.Scalers = field(default_factory=gen.Scalers)
    """The target's autoscaler and the primary's replicas (autoscalerRef)."""


@dataclass
class Sensors:
    metrics: MetricsSource
    webhooks: WebhookCaller
    query: MetricProvider | None = None
    templates: TemplateLookup | None = None
    secrets: SecretLookup | None = None
    live: LiveCounts | None = None


@dataclass
class Decision:
    state: RolloutState
    objects: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    alerts: list[AlertIntent] = field(default_factory=list)
    """What the Canary's alerts are to be told of this tick, in order."""
    refused: str | None = None
    """Set when a command could not be carried out; nothing else changed then."""


def interval_seconds(canary: Canary, settings: Settings = Settings()) -> float:
    analysis = canary.spec.analysis
    if analysis is None or analysis.interval is None:
        return 60.0
    return max(parse_duration(analysis.interval), settings.min_interval_seconds)


def reconcile(
    canary: Canary,
    observed: Observed,
    state: RolloutState,
    now: float,
    sensors: Sensors,
    command: str | None = None,
    settings: Settings = Settings(),
) -> Decision:
    """Decide one tick. ``state`` is not modified; the new one is in the Decision."""
    tick = _Tick(canary, observed, state.copy(), now, sensors, settings)
    return tick.run(command)


def _ready(ws: WorkloadStatus, template_hash: str, threshold: int) -> bool:
    return (
        ws.exists
        and ws.template_hash == template_hash
        and ws.desired > 0
        and ws.ready * 100 >= ws.desired * threshold
    )


class _Tick:
    """One tick's worth of context; methods mutate ``st`` and collect events."""

    def __init__(self, canary: Canary, observed: Observed, st: RolloutState, now: float,
                 sensors: Sensors, settings: Settings) -> None:
        self.canary = canary
        self.obs = observed
        self.st = st
        self.now = now
        self.sensors = sensors
        self.settings = settings
        self.events: list[Event] = []
        self.alerts: list[AlertIntent] = []
        self.analysis = canary.spec.analysis
        self.target_name = canary.spec.target_ref.name
        self.ns = canary.metadata.namespace
        self.label = f"{self.target_name}.{self.ns}"
        self.deadline = float(canary.spec.progress_deadline_seconds)
        self.interval = interval_seconds(canary, settings)
        self.threshold = (self.analysis.threshold if self.analysis else None) or 1
        self.target: dict[str, Any] = observed.target or {}
        self.template = (self.target.get("spec") or {}).get("template") or {}
        self.template_hash = spec_hash(self.template)
        self.config_checksums = configs.checksums(observed.configs)
        self.revision = (spec_hash({"template": self.template, "configs": self.config_checksums})
                         if self.config_checksums else self.template_hash)
        self.extra_objects: list[dict[str, Any]] = []
        """Written before the desired objects this tick: the primary's config copies."""

    # --- entry point ---------------------------------------------------------------

    def run(self, command: str | None) -> Decision:
        st = self.st
        if self.obs.target is None:
            self.event(f"Target Deployment {self.label} not found; waiting for it",
                       warning=True, once=True)
            return self.decision(objects=False)
        replicas = int((self.target.get("spec") or {}).get("replicas", 1))
        if replicas > 0:
            st.target_replicas = replicas
        st.selector_label = gen.selector_label(self.target)[0]
        ref = self.canary.spec.autoscaler_ref
        if ref is not None and self.obs.scalers.target_autoscaler is None:
            self.event(f"HorizontalPodAutoscaler {ref.name}.{self.ns} (autoscalerRef) not "
                       f"found: {self.target_name}-primary gets no autoscaler until it exists",
                       warning=True, once=True)
        if command is not None:
            refused = self.command(command)
            if refused:
                return Decision(state=self.st, refused=refused)
        if self.canary.spec.suspend:
            self.event(f"{self.label} is suspended; skipping analysis", once=True)
            return self.decision(objects=False)
        phase = st.phase
        if phase in ("", "Initializing"):
            self.initialize()
        elif phase in IDLE_PHASES:
            self.idle(command)
        elif phase in ANALYSIS_PHASES:
            self.analyse()
        elif phase == "Promoting":
            self.promoting()
        elif phase == "Finalising":
            self.finalising()
        if st.scale_down_at is not None and self.now >= st.scale_down_at:
            st.scale_down_at = None
            st.canary_scaled = False
        sync_cookies(st, self.analysis.session_affinity if self.analysis else None)
        return self.decision(objects=True)

    def decision(self, objects: bool) -> Decision:
        for event in self.events:
            for hook in hooks_of(self.canary, "event"):
                self.sensors.webhooks.call(
                    hook, event_payload(self.canary, self.st, hook, event.message, event.type,
                                        self.now))
        out: list[dict[str, Any]] = []
        if objects:
            out = gen.desired_objects(
                self.canary, self.target, self.st,
                canary_ready=self.routes_to_canary(),
                primary_ready=self.primary_ready(),
                scalers=self.obs.scalers,
            )
        return Decision(state=self.st, objects=[*self.extra_objects, *out] if objects else out,
                        events=self.events, alerts=self.alerts)

    # --- helpers --------------------------------------------------------------------

    def event(self, message: str, warning: bool = False, once: bool = False) -> None:
        if once and self.st.events and self.st.events[-1].message == message:
            return
        self.events.append(self.st.add_event(self.now, message, warning))

    def alert(self, message: str, severity: AlertSeverity, metadata: bool = False,
              hook: CanaryWebhook | None = None) -> None:
        """Tell the Canary's alerts, unless ``hook`` (the closed gate the message is
        about) mutes its alerts."""
        if hook is None or not hook.mute_alert:
            self.alerts.append(AlertIntent(message, severity, metadata))

    def routes_to_canary(self) -> bool:
        """Whether the routes may send the stored weight to the canary.

        While an analysis or promotion holds a scaled-up canary, a canary that is not
        ready holds the step and leaves the routes as they are, as Flagger's scheduler
        halts advancement without touching the router: a pod restarting, or a replica
        taking over as leader whose own pods are still starting while the departed
        leader's pods of the canary still serve as endpoints, changes nothing users see;
        a canary that stays unready is rolled back by the progress deadline (and its
        failed requests count in its checks). Elsewhere a canary without ready pods gets
        no traffic."""
        st = self.st
        if st.canary_scaled and self.obs.canary.exists and (
                st.phase in ANALYSIS_PHASES or st.phase == "Promoting"):
            return True
        return self.obs.canary.exists and self.obs.canary.ready > 0

    def primary_ready(self) -> bool:
        expected = gen.primary_deployment(self.canary, self.target, self.st)
        threshold = (self.analysis.primary_ready_threshold if self.analysis else None) or 100
        return _ready(self.obs.primary, spec_hash(expected["spec"]["template"]), threshold)

    def canary_ready(self) -> bool:
        threshold = (self.analysis.canary_ready_threshold if self.analysis else None) or 100
        return _ready(self.obs.canary, self.template_hash, threshold)

    def gates(self, kind: str) -> tuple[CanaryWebhook | None, str]:
        """Run every hook of a gate type; the first that answers other than 2xx closes
        the gate and is returned (None: open), with why."""
        for hook in hooks_of(self.canary, kind):
            result = self.sensors.webhooks.call(hook, payload(self.canary, self.st, hook))
            if not result.ok:
                return hook, f"{hook.name} ({result.message or result.status})"
        return None, ""

    def failing_hooks(self, kind: str) -> list[str]:
        failed = []
        for hook in hooks_of(self.canary, kind):
            result = self.sensors.webhooks.call(hook, payload(self.canary, self.st, hook))
            if not result.ok:
                failed.append(f"{kind} webhook {hook.name} failed: "
                              f"{result.message or result.status}")
        return failed

    # --- commands -------------------------------------------------------------------

    def command(self, command: str) -> str | None:
        st = self.st
        active = st.phase in ANALYSIS_PHASES
        if command == "pause":
            if not active:
                return f"no rollout to pause: {self.canary.metadata.name} is {st.phase or 'new'}"
            st.paused = True
            self.event(f"Rollout of {self.label} paused by user")
        elif command == "resume":
            if not st.paused:
                return f"{self.canary.metadata.name} is not paused"
            st.paused = False
            st.nodata_since = None
            st.next_step_at = self.now
            self.event(f"Rollout of {self.label} resumed by user")
        elif command == "abort":
            if not active:
                return f"no rollout to abort: {self.canary.metadata.name} is {st.phase or 'new'}"
            self.alert("Rolling back, aborted by user", "warn")
            self.rollback("aborted by user")
        elif command == "promote":
            if not active:
                return (f"no rollout to promote: {self.canary.metadata.name} is "
                        f"{st.phase or 'new'}")
            if self.revision != st.last_applied_spec:
                return (f"{self.label} changed since this analysis started; the new revision "
                        "is analysed first (promote it once it is running)")
            if not st.canary_scaled or not self.canary_ready():
                return (f"the canary {self.label} is not running and ready yet "
                        f"({self.obs.canary.ready}/{self.obs.canary.desired} pods); "
                        "approve the rollout or wait until it is ready")
            self.promote("promoted by user")
        elif command == "retry":
            if st.phase != "Failed":
                return (f"only a failed rollout can be retried; {self.canary.metadata.name} "
                        f"is {st.phase or 'new'}")
        else:
            return f"unknown command {command!r}; use one of {', '.join(COMMANDS)}"
        return None

    # --- phases ---------------------------------------------------------------------

    def initialize(self) -> None:
        st = self.st
        if st.phase == "":
            st.set_phase("Initializing", self.now)
            st.primary_template = copy.deepcopy(self.template)
            st.last_applied_spec = self.revision
            st.last_promoted_spec = self.revision
            st.canary_scaled = False
            self.copy_configs_to_primary()
            self.event(f"Initializing {self.label}: creating {self.target_name}-primary")
        if not self.primary_ready():
            ws = self.obs.primary
            self.event(f"Waiting for {self.target_name}-primary.{self.ns} to be ready "
                       f"({ws.ready}/{ws.desired} pods)", once=True)
            return
        st.set_phase("Initialized", self.now)
        self.event(f"Initialization done! {self.label}")
        self.alert(f"New {self.canary.spec.target_ref.kind} detected, initialization "
                   "completed.", "info", metadata=True)

    def idle(self, command: str | None) -> None:
        st = self.st
        if command == "retry":
            self.start(f"Retrying the rollout of {self.label}",
                       "Rollout retried, progressing canary analysis.")
            return
        if self.revision == st.last_applied_spec:
            return
        if self.revision == st.last_promoted_spec and st.primary_template is not None:
            st.last_applied_spec = self.revision
            self.event(f"{self.label} is back to the revision the primary runs; "
                       "nothing to roll out")
            return
        self.start(f"New revision detected! Scaling up {self.label}")

    def start(self, message: str, alert: str = NEW_REVISION_ALERT) -> None:
        """Begin the rollout of the current revision.

        The confirm-rollout gate is asked here only when no analysis is running (an idle
        phase, or still Waiting for approval), as Flagger's scheduler asks it in
        ``checkCanaryStatus`` only for a newly detected revision or while Waiting: a
        revision that supersedes a running analysis restarts it without asking again.
        The payload carries the phase the Canary had when the revision was detected.
        Only a gated start alerts, as Flagger alerts where the gate opens; a restarted
        analysis does not."""
        st = self.st
        gated = st.phase in IDLE_PHASES or st.phase == "Waiting"
        st.reset_for_rollout(self.revision, self.now)
        st.tracked_configs = dict(self.config_checksums)
        st.scale_down_at = None
        if gated and not self.rollout_confirmed():
            return
        st.set_phase("Progressing", self.now)
        self.event(message)
        if gated:
            self.alert(alert, "info", metadata=True)

    def analyse(self) -> None:
        """One tick of an analysis phase, in Flagger's scheduler order: a new revision
        restarts the analysis; nothing happens while paused, before the canary is ready or
        before the interval is due; then the rollback hooks, and, only while the rollout
        is Waiting to start, the confirm-rollout gate (once Progressing it is never asked
        again for this revision, as in Flagger), before any step."""
        st = self.st
        if self.revision != st.last_applied_spec:
            self.restart_superseded()
            return
        if st.paused or not self.canary_settled():
            return
        if self.now < st.next_step_at:
            self.fail_fast()
            return
        st.next_step_at = self.now + self.interval
        if self.rollback_requested():
            return
        if st.phase == "Waiting":
            if not self.rollout_confirmed():
                return
            self.alert(NEW_REVISION_ALERT, "info", metadata=True)
        self.analysis_step()

    def fail_fast(self) -> None:
        """Between interval ends: a canary holding traffic whose failures are already
        conclusive fails this interval's check now (see :mod:`.fail_fast`)."""
        st = self.st
        holds_traffic = st.canary_weight > 0 or st.mirror_stage or st.ab_active
        if not (st.analysis_started and holds_traffic and self.canary.fail_fast
                and self.analysis and self.analysis.metrics):
            return
        live = self.live_delta()
        since = max(st.analysis_started_at or 0.0, st.failure_counted_at or 0.0)
        if live is None and self.now - since < 1.0:
            return  # no evidence yet that an earlier judgement has not already counted
        ctx = replace(self.check_context(), evidence_since=since)
        for metric in self.analysis.metrics:
            record = (judge(metric, *live) if live is not None
                      else conclusive_failure(metric, ctx))
            if record is not None:
                st.checks = [record]
                st.add_check_point(self.now)
                st.next_step_at = self.now + self.interval
                self.count_failure(record.message)
                return

    def live_delta(self) -> tuple[int, int] | None:
        """(requests, failures) the canary's sidecars counted since the baseline, read
        now; None when they cannot be read. The baseline is taken on the first read of
        a judgement period (and again if a pod restart set the counters back)."""
        st, live = self.st, self.sensors.live
        counts = live.live_counts(self.ns, self.canary.spec.target_ref.name) if live else None
        if counts is None:
            return None
        base = st.fail_fast_baseline
        if base is None or counts[0] < base[0] or counts[1] < base[1]:
            st.fail_fast_baseline = list(counts)
            return 0, 0
        return counts[0] - base[0], counts[1] - base[1]

    def restart_superseded(self) -> None:
        self.st.add_history("superseded", f"revision {self.revision} was applied during the "
                            "analysis", self.now)
        self.start(f"New revision detected! Restarting analysis for {self.label}")

    def canary_settled(self) -> bool:
        """False while a scaled-up canary is not ready yet; rolls back once it has not
        been ready for longer than the progress deadline."""
        st = self.st
        if not st.canary_scaled:
            return True
        if self.canary_ready():
            st.not_ready_since = None
            return True
        if st.not_ready_since is None:
            st.not_ready_since = self.now
        ws = self.obs.canary
        if self.now - st.not_ready_since > self.deadline:
            why = (f"canary {self.label} not ready after {self.deadline:g}s "
                   f"({ws.ready}/{ws.desired} pods ready)")
            self.alert(f"Progress deadline exceeded: {why}", "error")
            self.rollback(f"{why}: progress deadline exceeded")
        else:
            self.event(f"Waiting for {self.label} rollout to finish "
                       f"({ws.ready}/{ws.desired} pods ready)", once=True)
        return False

    def rollback_requested(self) -> bool:
        """Any rollback webhook that answers 2xx rolls the canary back."""
        for hook in hooks_of(self.canary, "rollback"):
            result = self.sensors.webhooks.call(hook, payload(self.canary, self.st, hook))
            if result.ok:
                self.alert("Rolling back manual webhook invoked", "warn")
                self.rollback(f"rollback webhook {hook.name} invoked")
                return True
        return False

    def rollout_confirmed(self) -> bool:
        """The confirm-rollout gate: Waiting while it is closed, Progressing once open.
        Callers ask it only before the canary is scaled up (see ``start``)."""
        st = self.st
        closed, why = self.gates("confirm-rollout")
        if closed is not None:
            if st.phase != "Waiting":
                st.set_phase("Waiting", self.now)
                self.alert("Canary is waiting for approval.", "warn", hook=closed)
            self.event(f"Halt advancement {self.label}: waiting for approval {why}", once=True)
            return False
        if st.phase == "Waiting":
            st.set_phase("Progressing", self.now)
            self.event(f"Confirm-rollout passed for {self.label}")
        return True

    def analysis_step(self) -> None:
        st = self.st
        if not st.canary_scaled:
            self.scale_up_canary()
        elif self.canary.spec.skip_analysis:
            self.promote(SKIPPED)
            self.event(f"Canary analysis was skipped for {self.label}; promoting")
        elif st.failed_checks >= self.threshold:
            self.alert(f"Failed checks threshold reached {st.failed_checks}", "error")
            self.rollback(f"failed checks threshold reached {st.failed_checks}")
        elif not st.analysis_started:
            self.start_analysis()
        else:
            self.check_interval()

    def scale_up_canary(self) -> None:
        """The next step comes as soon as the canary is ready; the progress deadline for
        that starts now."""
        st = self.st
        st.canary_scaled = True
        st.not_ready_since = self.now
        st.next_step_at = self.now
        self.event(f"Scaling up {self.label} to {max(1, st.target_replicas)} replicas")

    def start_analysis(self) -> None:
        """Pre-rollout hooks must pass before the first step; a failure counts towards
        the threshold like a failed check."""
        failures = self.failing_hooks("pre-rollout")
        if failures:
            self.count_failure("; ".join(failures))
            return
        self.st.analysis_started = True
        self.st.analysis_started_at = self.now
        self.st.fail_fast_baseline = None
        if self.canary.fail_fast:
            self.live_delta()  # the baseline, before the first request reaches the canary
        self.event(f"Starting canary analysis for {self.label}")
        self.advance()

    def check_interval(self) -> None:
        """Rollout hooks, then the metric checks; the strategy advances only on a pass."""
        st = self.st
        failures = self.failing_hooks("rollout")
        if failures:
            st.checks = [CheckRecord("rollout-webhooks", "fail", message="; ".join(failures))]
            self.count_failure("; ".join(failures))
            return
        verdict = self.evaluate_checks()
        if verdict == "fail":
            self.count_failure("; ".join(c.message for c in st.checks if c.verdict == "fail"))
            return
        if verdict == "nodata":
            self.wait_for_data()
            return
        st.nodata_since = None
        self.advance()

    def check_context(self) -> CheckContext:
        return CheckContext(self.canary, self.sensors.metrics, self.sensors.query,
                            self.sensors.templates, now=self.now,
                            evidence_since=self.st.analysis_started_at,
                            secrets=self.sensors.secrets)

    def evaluate_checks(self) -> str:
        st = self.st
        ctx = self.check_context()
        st.checks = [evaluate(m, ctx) for m in (self.analysis.metrics or [])] \
            if self.analysis else []
        if st.checks:
            st.add_check_point(self.now)
        return combine(st.checks)

    def wait_for_data(self) -> None:
        """Missing metrics halt the analysis without counting as failures, for at most
        the progress deadline; after that the rollout is rolled back, not left waiting."""
        st = self.st
        if st.nodata_since is None:
            st.nodata_since = self.now
        why = "; ".join(c.message for c in st.checks if c.verdict == "nodata")
        waited = self.now - st.nodata_since
        if waited > self.deadline:
            reason = (f"no data for {waited:.0f}s (progressDeadlineSeconds "
                      f"{self.deadline:g}): {why}")
            self.alert(f"Progress deadline exceeded: {reason}", "error")
            self.rollback(reason)
            return
        self.event(f"Halt advancement {self.label}: no data yet: {why}", once=True)

    def count_failure(self, why: str) -> None:
        st = self.st
        st.failed_checks += 1
        st.failure_counted_at = self.now
        st.fail_fast_baseline = None
        if st.failed_checks >= self.threshold:
            self.alert(f"Failed checks threshold reached {st.failed_checks}", "error")
            self.rollback(f"failed checks threshold reached {st.failed_checks}: {why}")
            return
        self.event(f"Halt advancement {self.label}: {why} (failed checks "
                   f"{st.failed_checks}/{self.threshold})", warning=True)

    # --- strategies -----------------------------------------------------------------

    def advance(self) -> None:
        strategy = self.canary.strategy
        if strategy == "ab":
            self.advance_ab()
        elif strategy == "bluegreen":
            self.advance_bluegreen()
        else:
            gate = self.canary.mirror_first_intervals
            self.advance_canary(mirror_intervals=max(gate, 1 if strategy == "mirror" else 0))

    def advance_canary(self, mirror_intervals: int) -> None:
        st, analysis = self.st, self.analysis
        weights = (analysis.weights if analysis else []) or [
            (analysis.max_weight if analysis else None) or 100
        ]
        if st.step_index + 1 < len(weights):
            if st.step_index == -1 and self.still_mirroring(mirror_intervals):
                return
            closed, why = self.gates("confirm-traffic-increase")
            if closed is not None:
                self.event(f"Halt advancement {self.label}: waiting for traffic increase "
                           f"approval {why}", once=True)
                # as Flagger: every time the closed gate is asked, not once
                self.alert("Canary traffic increase is waiting for approval.", "warn",
                           hook=closed)
                return
            if st.mirror_stage:
                st.mirror_stage = False
                self.event(f"Stop traffic mirroring to {self.canary.service_names[2]}.{self.ns}")
            st.step_index += 1
            st.canary_weight = weights[st.step_index]
            self.event(f"Advance {self.label} canary weight {st.canary_weight}")
            return
        if self.promotion_gate():
            self.promote("analysis passed")

    def still_mirroring(self, intervals: int) -> bool:
        """Before the first weight: the canary takes mirrored copies of live traffic
        for ``intervals`` passed intervals (the mirror strategy's one, or the
        mirror-first gate's N) before any user request reaches it."""
        st, analysis = self.st, self.analysis
        if intervals <= 0:
            return False
        if not st.mirror_stage:
            st.mirror_stage = True
            st.mirror_passes = 0
            share = analysis.mirror_weight if analysis and analysis.mirror_weight else 100
            self.event(f"Start traffic mirroring to {self.canary.service_names[2]}."
                       f"{self.ns} ({share}% of requests)")
            return True
        st.mirror_passes += 1
        if st.mirror_passes < intervals:
            self.event(f"Mirrored traffic passed the checks {st.mirror_passes}/{intervals} "
                       f"for {self.label}; no user request reaches it yet")
            return True
        return False

    def advance_ab(self) -> None:
        st = self.st
        total = self.analysis.iterations if self.analysis else 0
        if not st.ab_active:
            st.ab_active = True
        if st.iterations < (total or 0):
            st.iterations += 1
            self.event(f"Advance {self.label} canary iteration {st.iterations}/{total}")
            return
        if self.promotion_gate():
            self.promote("analysis passed")

    def advance_bluegreen(self) -> None:
        st, analysis = self.st, self.analysis
        total = (analysis.iterations if analysis else 0) or 0
        if st.iterations < total:
            if analysis and analysis.mirror and not st.mirror_stage:
                st.mirror_stage = True
                self.event(f"Start traffic mirroring to {self.canary.service_names[2]}."
                           f"{self.ns}")
            st.iterations += 1
            self.event(f"Advance {self.label} canary iteration {st.iterations}/{total}")
            return
        if st.canary_weight < 100:
            if not self.promotion_gate():
                return
            if st.mirror_stage:
                st.mirror_stage = False
                self.event(f"Stop traffic mirroring to {self.canary.service_names[2]}.{self.ns}")
            st.canary_weight = 100
            self.event(f"Routing all traffic to canary {self.label}")
            return
        self.promote("analysis passed")

    def promotion_gate(self) -> bool:
        st = self.st
        closed, why = self.gates("confirm-promotion")
        if closed is not None:
            if st.phase != "WaitingPromotion":
                st.set_phase("WaitingPromotion", self.now)
                self.alert("Canary promotion is waiting for approval.", "warn", hook=closed)
            self.event(f"Halt advancement {self.label}: waiting for promotion approval {why}",
                       once=True)
            return False
        return True

    # --- promotion and rollback -----------------------------------------------------

    def promote(self, reason: str) -> None:
        st = self.st
        st.previous_primary_template = copy.deepcopy(st.primary_template)
        st.primary_template = copy.deepcopy(self.template)
        st.last_promoted_spec = self.revision
        self.copy_configs_to_primary()
        st.promoted_by = reason
        st.paused = False
        st.next_step_at = self.now
        st.set_phase("Promoting", self.now)
        self.event(f"Copying {self.label} template spec to {self.target_name}-primary.{self.ns}")

    def copy_configs_to_primary(self) -> None:
        """The primary reads copies of the configs the promoted template reads, made
        now from the target's, so editing a config never changes the primary unjudged."""
        self.st.primary_configs = sorted(self.config_checksums)
        self.st.tracked_configs = dict(self.config_checksums)
        self.extra_objects = configs.primary_copies(
            self.obs.configs, lambda name: gen.owned_meta(self.canary, name))

    def promoting(self) -> None:
        st = self.st
        if not self.primary_ready():
            ws = self.obs.primary
            if self.now - st.phase_since > self.deadline:
                st.primary_template = copy.deepcopy(st.previous_primary_template)
                st.last_promoted_spec = spec_hash(st.primary_template)
                self.alert(f"Promotion failed, primary not ready: {self.target_name}-primary."
                           f"{self.ns} {ws.ready}/{ws.desired} pods ready after "
                           f"{self.deadline:g}s", "error")
                self.rollback(f"{self.target_name}-primary.{self.ns} did not become ready "
                              f"with the new template within {self.deadline:g}s "
                              f"({ws.ready}/{ws.desired} pods); its previous template is "
                              "restored")
                return
            self.event(f"Waiting for {self.target_name}-primary.{self.ns} rolling update "
                       f"({ws.ready}/{ws.desired} pods ready)", once=True)
            return
        step = self.analysis.step_weight_promotion if self.analysis else None
        if step and st.canary_weight > 0 and not st.ab_active:
            if self.now < st.next_step_at:
                return
            st.next_step_at = self.now + self.interval
            st.canary_weight = max(0, st.canary_weight - step)
            if st.canary_weight > 0:
                self.event(f"Advance {self.target_name}-primary.{self.ns} primary weight "
                           f"{100 - st.canary_weight}")
                return
        st.canary_weight = 0
        st.ab_active = False
        st.mirror_stage = False
        st.set_phase("Finalising", self.now)
        self.event(f"Routing all traffic to primary {self.target_name}-primary.{self.ns}")

    def finalising(self) -> None:
        st = self.st
        if self.now - st.phase_since < self.settings.drain_seconds:
            return
        st.canary_scaled = False
        st.set_phase("Succeeded", self.now)
        st.add_history("promoted", st.promoted_by or "analysis passed", self.now)
        self.event(f"Promotion completed! Scaling down {self.label}")
        self.alert("Canary analysis was skipped, promotion finished." if st.promoted_by == SKIPPED
                   else "Canary analysis completed successfully, promotion finished.", "info")
        self.post_rollout()

    def rollback(self, reason: str) -> None:
        st = self.st
        st.canary_weight = 0
        st.ab_active = False
        st.mirror_stage = False
        st.paused = False
        if st.canary_scaled:
            st.scale_down_at = self.now + self.settings.drain_seconds
        st.set_phase("Failed", self.now, message=f"Canary analysis failed: {reason}")
        st.add_history("rolled-back", reason, self.now)
        self.event(f"Rolling back {self.label}: {reason}", warning=True)
        self.post_rollout()

    def post_rollout(self) -> None:
        for failure in self.failing_hooks("post-rollout"):
            self.event(failure, warning=True)

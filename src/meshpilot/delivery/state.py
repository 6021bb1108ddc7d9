"""The persisted rollout state, kept in the Canary's ``status``.

Every decision the controller takes is a function of this record plus what it observes
(the target Deployment, pod readiness, metrics), so a control plane killed mid-rollout
resumes at the same step: nothing that matters lives only in memory. Field names are
Flagger's where Flagger has one (``phase``, ``canaryWeight``, ``failedChecks``,
``lastAppliedSpec``, ...), so dashboards and scripts written for Flagger read it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

Phase = Literal[
    "",
    "Initializing",
    "Initialized",
    "Waiting",
    "Progressing",
    "WaitingPromotion",
    "Promoting",
    "Finalising",
    "Succeeded",
    "Failed",
    "Terminating",
    "Terminated",
]

IDLE_PHASES: frozenset[str] = frozenset({"Initialized", "Succeeded", "Failed"})
"""Phases in which no rollout runs: a new target revision starts one."""

ANALYSIS_PHASES: frozenset[str] = frozenset({"Waiting", "Progressing", "WaitingPromotion"})
"""Phases in which a rollout is under analysis and may still be rolled back."""

Verdict = Literal["pass", "fail", "nodata"]

MAX_EVENTS = 50
MAX_HISTORY = 20
MAX_CHECK_POINTS = 100


def spec_hash(template: Any) -> str:
    """A stable digest of a pod template: what "a new revision" means.

    Flagger hashes the target's pod template, not the whole Deployment, so scaling the
    target (which the controller itself does) is never mistaken for a new revision.
    """
    text = json.dumps(template or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rfc3339(epoch: float) -> str:
    """Kubernetes' timestamp format, as Flagger writes lastTransitionTime."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CheckRecord:
    """The outcome of one check at the last analysis step, with the numbers behind it."""

    name: str
    verdict: Verdict
    value: float | None = None
    primary_value: float | None = None
    samples: int | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "value": self.value,
            "primaryValue": self.primary_value,
            "samples": self.samples,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckRecord:
        return cls(
            name=str(data.get("name", "")),
            verdict=data.get("verdict", "nodata"),
            value=data.get("value"),
            primary_value=data.get("primaryValue"),
            samples=data.get("samples"),
            message=str(data.get("message", "")),
        )


@dataclass
class Event:
    time: str
    type: Literal["Normal", "Warning"]
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HistoryEntry:
    """One finished (or superseded) rollout: what was tried and how it ended."""

    revision: str
    outcome: Literal["promoted", "rolled-back", "superseded", "skipped"]
    reason: str
    started: str
    finished: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckPoint:
    """The checks of one analysis run of the rollout under way, at the canary weight
    they judged: the series the dashboard charts against each check's threshold."""

    time: str
    weight: int
    checks: list[CheckRecord]

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "weight": self.weight,
                "checks": [{"name": c.name, "value": c.value, "verdict": c.verdict}
                           for c in self.checks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckPoint:
        checks = [CheckRecord.from_json(c) for c in data.get("checks") or []
                  if isinstance(c, dict)]
        return cls(str(data.get("time", "")), int(data.get("weight") or 0), checks)


_CAMEL = MappingProxyType({
    "canary_weight": "canaryWeight",
    "failed_checks": "failedChecks",
    "last_applied_spec": "lastAppliedSpec",
    "last_promoted_spec": "lastPromotedSpec",
    "last_transition_time": "lastTransitionTime",
    "step_index": "stepIndex",
    "mirror_stage": "mirrorStage",
    "check_history": "checkHistory",
    "mirror_passes": "mirrorPasses",
    "failure_counted_at": "failureCountedAt",
    "fail_fast_baseline": "failFastBaseline",
    "ab_active": "abActive",
    "analysis_started": "analysisStarted",
    "analysis_started_at": "analysisStartedAt",
    "next_step_at": "nextStepAt",
    "rollout_started_at": "rolloutStartedAt",
    "nodata_since": "nodataSince",
    "not_ready_since": "notReadySince",
    "phase_since": "phaseSince",
    "scale_down_at": "scaleDownAt",
    "canary_scaled": "canaryScaled",
    "target_replicas": "targetReplicas",
    "primary_template": "primaryTemplate",
    "previous_primary_template": "previousPrimaryTemplate",
    "session_affinity_cookie": "sessionAffinityCookie",
    "previous_session_affinity_cookie": "previousSessionAffinityCookie",
    "primary_session_affinity_cookie": "primarySessionAffinityCookie",
    "selector_label": "selectorLabel",
    "promoted_by": "promotedBy",
    "tracked_configs": "trackedConfigs",
    "primary_configs": "primaryConfigs",
})
_SNAKE = MappingProxyType({v: k for k, v in _CAMEL.items()})


@dataclass
class RolloutState:
    """Everything the controller needs to continue a rollout after a restart.

    Times used for decisions (``next_step_at``, deadlines) are epoch seconds from the
    controller's clock; ``last_transition_time`` is RFC 3339 for people.
    """

    phase: str = ""
    canary_weight: int = 0
    iterations: int = 0
    failed_checks: int = 0
    last_applied_spec: str = ""
    last_promoted_spec: str = ""
    last_transition_time: str = ""
    conditions: list[dict[str, Any]] = field(default_factory=list)
    # --- meshpilot's own fields
    step_index: int = -1
    """Index into the canary weights; -1 before the first weight is set."""
    mirror_stage: bool = False
    """True while traffic is mirrored (mirror strategy's first step, blue-green mirror)."""
    mirror_passes: int = 0
    """Intervals the canary passed on mirrored traffic alone (the mirror-first gate)."""
    ab_active: bool = False
    """True while the A/B match rule sends matching requests to the canary."""
    analysis_started: bool = False
    """Pre-rollout hooks passed and the first traffic step was taken."""
    analysis_started_at: float | None = None
    """When this revision's first traffic step was taken: metric windows never reach back
    before it, so traffic of an earlier revision is never counted as evidence for this one."""
    failure_counted_at: float | None = None
    """When the last failed check was counted: fail-fast judges only evidence after it,
    so one burst of failures is counted once."""
    fail_fast_baseline: list[int] | None = None
    """The canary sidecars' (requests, failures) counters when fail-fast's current
    judgement period began; its evidence is what they counted since."""
    paused: bool = False
    next_step_at: float = 0.0
    rollout_started_at: float = 0.0
    nodata_since: float | None = None
    not_ready_since: float | None = None
    phase_since: float = 0.0
    scale_down_at: float | None = None
    canary_scaled: bool = False
    """Whether the target (canary) Deployment should run pods now."""
    target_replicas: int = 1
    """The user's replica count, remembered because the controller scales the target to 0."""
    primary_template: dict[str, Any] | None = None
    """The pod template the primary runs (the last promoted revision, unlabelled)."""
    previous_primary_template: dict[str, Any] | None = None
    """The primary's template before the last promotion, to put back if it never gets ready."""
    tracked_configs: dict[str, str] = field(default_factory=dict)
    """``Kind/name`` → digest of the configs the revision under way reads (Flagger's
    ``trackedConfigs``)."""
    primary_configs: list[str] = field(default_factory=list)
    """``Kind/name`` of the configs the primary reads as ``NAME-primary`` copies."""
    selector_label: str = "app"
    session_affinity_cookie: str = ""
    """``NAME=VALUE`` of the running canary's cookie; empty while the canary has no weight
    (Flagger's field, see ``affinity``)."""
    previous_session_affinity_cookie: str = ""
    """The last run's cookie, expired on clients that still send it."""
    primary_session_affinity_cookie: str = ""
    promoted_by: str = ""
    checks: list[CheckRecord] = field(default_factory=list)
    check_history: list[CheckPoint] = field(default_factory=list)
    """Every analysis run of the rollout under way (the last ``MAX_CHECK_POINTS``)."""
    events: list[Event] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    # --- serialisation -------------------------------------------------------------

    def to_status(self) -> dict[str, Any]:
        """The JSON written with PutStatus (camelCase, like every Kubernetes status)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("checks", "check_history", "events", "history"):
                value = [item.to_json() for item in value]
            out[_CAMEL.get(f.name, f.name)] = value
        return out

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> RolloutState:
        """Read a status back; unknown keys are ignored, missing ones take defaults."""
        state = cls()
        if not status:
            return state
        names = {f.name for f in fields(cls)}
        for key, value in status.items():
            name = _SNAKE.get(key, key)
            if name not in names:
                continue
            if name == "checks":
                value = [CheckRecord.from_json(c) for c in value if isinstance(c, dict)]
            elif name == "check_history":
                value = [CheckPoint.from_json(c) for c in value if isinstance(c, dict)]
            elif name == "events":
                value = [
                    Event(str(e.get("time", "")), e.get("type", "Normal"), str(e.get("message")))
                    for e in value
                    if isinstance(e, dict)
                ]
            elif name == "history":
                value = [
                    HistoryEntry(**{k: str(e.get(k, "")) for k in HistoryEntry.__annotations__})
                    for e in value
                    if isinstance(e, dict)
                ]
            setattr(state, name, value)
        return state

    def copy(self) -> RolloutState:
        return RolloutState.from_status(json.loads(json.dumps(self.to_status())))

    # --- small helpers that keep the record consistent -------------------------------

    def set_phase(self, phase: str, now: float, message: str = "") -> None:
        """Change phase, stamping lastTransitionTime and the Promoted condition."""
        if phase == self.phase:
            return
        self.phase = phase
        self.phase_since = now
        self.last_transition_time = rfc3339(now)
        status = {"Succeeded": "True", "Failed": "False"}.get(phase, "Unknown")
        reason = phase if phase != "Finalising" else "Progressing"
        self.conditions = [
            {
                "type": "Promoted",
                "status": status,
                "lastUpdateTime": rfc3339(now),
                "lastTransitionTime": rfc3339(now),
                "reason": reason,
                "message": message or _CONDITION_MESSAGES.get(phase, phase),
            }
        ]

    def add_event(self, now: float, message: str, warning: bool = False) -> Event:
        event = Event(rfc3339(now), "Warning" if warning else "Normal", message)
        self.events.append(event)
        del self.events[:-MAX_EVENTS]
        return event

    def add_check_point(self, now: float) -> None:
        # the numbers a chart needs; messages and sample counts stay with ``checks``
        self.check_history.append(CheckPoint(rfc3339(now), self.canary_weight, [
            CheckRecord(c.name, c.verdict, c.value) for c in self.checks]))
        del self.check_history[:-MAX_CHECK_POINTS]

    def add_history(self, outcome: str, reason: str, now: float) -> None:
        started = rfc3339(self.rollout_started_at) if self.rollout_started_at else rfc3339(now)
        self.history.append(
            HistoryEntry(self.last_applied_spec, outcome, reason, started, rfc3339(now))  # type: ignore[arg-type]
        )
        del self.history[:-MAX_HISTORY]

    def reset_for_rollout(self, revision: str, now: float) -> None:
        """Counters back to the start of a rollout of ``revision``."""
        self.last_applied_spec = revision
        self.canary_weight = 0
        self.iterations = 0
        self.failed_checks = 0
        self.step_index = -1
        self.mirror_stage = False
        self.mirror_passes = 0
        self.ab_active = False
        self.analysis_started = False
        self.analysis_started_at = None
        self.failure_counted_at = None
        self.fail_fast_baseline = None
        self.paused = False
        self.nodata_since = None
        self.not_ready_since = None
        self.rollout_started_at = now
        self.next_step_at = now
        self.checks = []
        self.check_history = []
        self.promoted_by = ""


_CONDITION_MESSAGES = MappingProxyType({
    "Initializing": "New deployment detected, starting initialization.",
    "Initialized": "Deployment initialization completed.",
    "Waiting": "Waiting for approval.",
    "Progressing": "New revision detected, progressing canary analysis.",
    "WaitingPromotion": "Waiting for approval.",
    "Promoting": "Canary analysis completed, starting primary rolling update.",
    "Finalising": "Canary analysis completed, routing all traffic to primary.",
    "Succeeded": "Canary analysis completed successfully, promotion finished.",
    "Failed": "Canary analysis failed, Deployment scaled to zero.",
})

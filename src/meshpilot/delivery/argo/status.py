"""A Rollout's state, kept in its status in the shape Argo writes it, so it survives a
restart of the control plane and reads as Argo users expect.

Argo's fields (``RolloutStatus`` in ``pkg/apis/rollouts/v1alpha1/types.go``): ``phase``
(Healthy, Progressing, Paused, Degraded) and ``message``, ``currentPodHash``,
``stableRS``, ``currentStepIndex``, ``pauseConditions`` (``CanaryPauseStep`` with its
``startTime``), ``controllerPause``, ``abort`` / ``abortedAt``, ``canary.weights`` and
``conditions``. What Argo keeps elsewhere (the pause's start as a number, the older
revisions kept scaled to zero) is under ``meshpilot``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from meshpilot.delivery.state import rfc3339

PAUSE_REASON = "CanaryPauseStep"
BLUE_GREEN_PAUSE_REASON = "BlueGreenPause"
INCONCLUSIVE_REASON = "InconclusiveAnalysis"


@dataclass
class RunRef:
    """A Rollout's current AnalysisRun as its status shows it (``RolloutAnalysisRunStatus``)."""

    name: str = ""
    status: str = ""
    message: str = ""

    def to_status(self) -> dict[str, str] | None:
        return {"name": self.name, "status": self.status, "message": self.message} if (
            self.name) else None

    @classmethod
    def from_status(cls, data: Any) -> RunRef:
        d = data if isinstance(data, dict) else {}
        return cls(str(d.get("name") or ""), str(d.get("status") or ""),
                   str(d.get("message") or ""))


def _analysis_fields(canary: dict[str, Any], bg: dict[str, Any],
                     own: dict[str, Any]) -> dict[str, Any]:
    """ArgoState's analysis fields from the status' ``canary`` (or ``blueGreen``: pre-
    and post-promotion runs) and ``meshpilot`` parts."""
    step = canary.get("currentStepAnalysisRunStatus") or bg.get(
        "prePromotionAnalysisRunStatus")
    background = canary.get("currentBackgroundAnalysisRunStatus") or bg.get(
        "postPromotionAnalysisRunStatus")
    return {
        "step_run": RunRef.from_status(step),
        "background_run": RunRef.from_status(background),
        "inconclusive": bool(own.get("inconclusive")),
        "analysis_attempt": int(own.get("analysisAttempt") or 0),
        "runs": [str(r) for r in own.get("analysisRuns") or []],
        "abort_reason": str(own.get("abortReason") or ""),
    }


def _blue_green_fields(bg: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    return {
        "blue_green": bool(own.get("blueGreen")),
        "switched": bool(own.get("switched")),
        "scale_down": {str(k): float(v) for k, v in (own.get("scaleDown") or {}).items()},
        "active_selector": str(bg.get("activeSelector") or ""),
        "preview_selector": str(bg.get("previewSelector") or ""),
    }


def _revision_fields(own: dict[str, Any]) -> dict[str, Any]:
    """ArgoState's fields kept only under the status' ``meshpilot`` part."""
    return {
        "pause_start": own.get("pauseStart"),
        "aborted_at": own.get("abortedAt"),
        "old_revisions": [str(h) for h in own.get("oldRevisions") or []],
        "revisions": {str(k): int(v) for k, v in (own.get("revisions") or {}).items()},
    }


@dataclass
class ArgoState:
    current_pod_hash: str = ""
    stable_rs: str = ""
    step_index: int = 0
    canary_weight: int = 0
    pause_start: float | None = None
    abort: bool = False
    aborted_at: float | None = None
    phase: str = ""
    message: str = ""
    old_revisions: list[str] = field(default_factory=list)
    """Hashes of earlier revisions, newest last, kept at zero replicas up to
    revisionHistoryLimit (Argo keeps old ReplicaSets the same way)."""
    replicas: int = 0
    ready_replicas: int = 0
    step_run: RunRef = field(default_factory=RunRef)
    background_run: RunRef = field(default_factory=RunRef)
    inconclusive: bool = False
    """Paused because an analysis was Inconclusive (``InconclusiveAnalysis``)."""
    analysis_attempt: int = 0
    """Bumped by retry and by promote after an inconclusive analysis: new runs."""
    runs: list[str] = field(default_factory=list)
    """AnalysisRuns this Rollout created, oldest first (deleted beyond a limit)."""
    abort_reason: str = ""
    """Why the controller aborted (a failed analysis); "" for a user's abort."""
    blue_green: bool = False
    active_selector: str = ""
    preview_selector: str = ""
    switched: bool = False
    """Blue-green: the active Service serves the new revision, which is not stable yet
    (its post-promotion analysis runs)."""
    scale_down: dict[str, float] = field(default_factory=dict)
    """Blue-green: revision hash -> when it is scaled down (scaleDownDelaySeconds)."""
    promote_full: bool = False
    """``promote --full``: the remaining steps and analysis are skipped (Argo's
    ``status.promoteFull``), until the revision is stable."""
    revisions: dict[str, int] = field(default_factory=dict)
    """Revision hash -> its revision number (Argo's ``rollout.argoproj.io/revision``):
    each template the Rollout starts to run, new or rolled back to, gets the next one."""

    @property
    def promoted(self) -> bool:
        return bool(self.stable_rs) and self.stable_rs == self.current_pod_hash

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> ArgoState:
        s = status or {}
        own = s.get("meshpilot") or {}
        return cls(
            current_pod_hash=str(s.get("currentPodHash") or ""),
            stable_rs=str(s.get("stableRS") or ""),
            step_index=int(s.get("currentStepIndex") or 0),
            canary_weight=int((((s.get("canary") or {}).get("weights") or {})
                               .get("canary") or {}).get("weight") or 0),
            abort=bool(s.get("abort")),
            promote_full=bool(s.get("promoteFull")),
            phase=str(s.get("phase") or ""),
            message=str(s.get("message") or ""),
            replicas=int(s.get("replicas") or 0),
            ready_replicas=int(s.get("readyReplicas") or 0),
            **_analysis_fields(s.get("canary") or {}, s.get("blueGreen") or {}, own),
            **_blue_green_fields(s.get("blueGreen") or {}, own),
            **_revision_fields(own),
        )

    def number(self, pod_hash: str) -> None:
        """Give revision ``pod_hash`` the next revision number (it starts to run)."""
        self.revisions[pod_hash] = max(self.revisions.values(), default=0) + 1

    def copy(self) -> ArgoState:
        return copy.deepcopy(self)

    def to_status(self, canary_service: str | None = None,
                  stable_service: str | None = None) -> dict[str, Any]:
        paused = self.pause_start is not None or self.inconclusive
        out: dict[str, Any] = {
            "phase": self.phase,
            "message": self.message,
            "currentPodHash": self.current_pod_hash,
            "stableRS": self.stable_rs,
            "currentStepIndex": self.step_index,
            "controllerPause": paused,
            "abort": self.abort,
            "promoteFull": self.promote_full,
            "replicas": self.replicas,
            "readyReplicas": self.ready_replicas,
            "canary": {"weights": {
                "canary": {"weight": self.canary_weight,
                           "podTemplateHash": self.current_pod_hash,
                           **({"serviceName": canary_service} if canary_service else {})},
                "stable": {"weight": 100 - self.canary_weight,
                           "podTemplateHash": self.stable_rs,
                           **({"serviceName": stable_service} if stable_service else {})},
            }},
            "conditions": self.conditions(),
            "meshpilot": {"pauseStart": self.pause_start, "abortedAt": self.aborted_at,
                          "oldRevisions": list(self.old_revisions),
                          "inconclusive": self.inconclusive,
                          "analysisAttempt": self.analysis_attempt,
                          "analysisRuns": list(self.runs),
                          "abortReason": self.abort_reason,
                          "blueGreen": self.blue_green, "switched": self.switched,
                          "scaleDown": dict(self.scale_down),
                          "revisions": dict(self.revisions)},
        }
        if self.blue_green:
            self._blue_green_status(out)
        for key, ref in (("currentStepAnalysisRunStatus", self.step_run),
                         ("currentBackgroundAnalysisRunStatus", self.background_run)):
            if ref.to_status() is not None and not self.blue_green:
                out["canary"][key] = ref.to_status()
        if paused and self.pause_start is not None:
            reason = INCONCLUSIVE_REASON if self.inconclusive else (
                BLUE_GREEN_PAUSE_REASON if self.blue_green else PAUSE_REASON)
            out["pauseConditions"] = [{"reason": reason,
                                       "startTime": rfc3339(self.pause_start)}]
        if self.abort and self.aborted_at is not None:
            out["abortedAt"] = rfc3339(self.aborted_at)
        return out

    def _blue_green_status(self, out: dict[str, Any]) -> None:
        """Argo's ``status.blueGreen``: the Services' selectors and the analysis runs (the
        pre-promotion run is kept as the step run, the post-promotion one as the
        background run)."""
        out["canary"] = {}
        bg: dict[str, Any] = {"activeSelector": self.active_selector,
                              "previewSelector": self.preview_selector}
        for key, ref in (("prePromotionAnalysisRunStatus", self.step_run),
                         ("postPromotionAnalysisRunStatus", self.background_run)):
            if ref.to_status() is not None:
                bg[key] = ref.to_status()
        out["blueGreen"] = bg

    def conditions(self) -> list[dict[str, str]]:
        """Argo's Progressing, Paused and Healthy conditions for the current phase."""
        progressing = {
            "Healthy": ("True", "NewReplicaSetAvailable"),
            "Paused": ("Unknown", "RolloutPaused"),
            "Degraded": ("False", "RolloutAborted"),
        }.get(self.phase, ("True", "ReplicaSetUpdated"))
        return [
            {"type": "Progressing", "status": progressing[0], "reason": progressing[1],
             "message": self.message},
            {"type": "Paused", "status": str(self.phase == "Paused"),
             "reason": PAUSE_REASON if self.phase == "Paused" else "",
             "message": ""},
            {"type": "Healthy", "status": str(self.phase == "Healthy"),
             "reason": "", "message": ""},
        ]

"""API routes for rollouts (Canaries as the delivery controller runs them).

``GET /apis/meshpilot.io/v1/rollouts``: every Canary with its phase, weights, step and
check verdicts. ``GET .../namespaces/{ns}/rollouts/{name}``: one rollout in full (checks
with values and thresholds, events, history). ``POST .../rollouts/{name}/{command}``:
promote (``?full=true``: Argo's ``promote --full``), abort, pause, resume or retry (an
Argo Rollout also undo, ``?toRevision=N`` naming the revision, and restart); 409
with the controller's reason when the command does not apply now, 400 for an unknown
command. A name that is no Canary is the Argo Rollout of that name: GET answers with
what kubectl-argo-rollouts prints of it (:mod:`meshpilot.delivery.argo.summary`), a
command goes to the Argo controller and answers with the Rollout's status. A Canary's
promote is already a full one (Flagger has no other), so ``full`` maps to it, said in the
answer's ``note``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshpilot.api.flagger import Canary
from meshpilot.api.metric_query import metric_interval_seconds
from meshpilot.delivery import COMMANDS, RolloutController
from meshpilot.delivery.argo import ARGO_COMMANDS, ArgoController
from meshpilot.delivery.argo.summary import summarize as argo_summary
from meshpilot.delivery.machine import interval_seconds
from meshpilot.delivery.state import RolloutState
from meshpilot.store import ConfigStore, StoredObject

API = "/apis/meshpilot.io/v1"
FULL_ON_CANARY = ("a Canary has no separate full promotion: promote already skips its "
                  "remaining analysis and promotes the canary")


def _error(code: int, message: str, reason: str = "Failure") -> JSONResponse:
    return JSONResponse({"kind": "Status", "status": "Failure", "reason": reason,
                         "code": code, "message": message}, status_code=code)


def _to_revision(request: Request, command: str) -> int | JSONResponse | None:
    """undo's ``toRevision`` (kubectl-argo-rollouts' ``--to-revision``; 0 or none: the
    previous revision), or the 400 answer to a bad one."""
    text = request.query_params.get("toRevision")
    if text is None:
        return None
    if command != "undo":
        return _error(400, "toRevision applies to undo only", "BadRequest")
    if not text.isdigit():
        return _error(400, f"toRevision {text!r} is not a revision number (0, 1, 2, ...)",
                      "BadRequest")
    return int(text)


def _metrics(canary: Canary) -> list[dict[str, Any]]:
    analysis = canary.spec.analysis
    out = []
    for m in (analysis.metrics or []) if analysis else []:
        rng = m.threshold_range
        lo, hi = (rng.min, rng.max) if rng else (None, None)
        if lo is None and hi is None and m.threshold is not None:
            if m.name == "request-success-rate":
                lo = m.threshold
            else:
                hi = m.threshold
        out.append({
            "name": m.name, "interval": m.interval or "1m", "min": lo, "max": hi,
            "templateRef": m.template_ref.name if m.template_ref else None,
            "templateVariables": dict(m.template_variables or {}),
        })
    return out


def _progress(canary: Canary, st: RolloutState, weights: list[int], total: int) -> float:
    if st.phase in ("Succeeded", "Promoting", "Finalising"):
        return 1.0
    if st.phase in ("", "Initializing", "Initialized", "Failed"):
        return 0.0
    if canary.strategy in ("ab", "bluegreen"):
        return min(1.0, st.iterations / total) if total else 0.0
    return (st.step_index + 1) / len(weights) if weights else 0.0


def summarize(canary: Canary, full: bool = False) -> dict[str, Any]:
    """A rollout as the API shows it; ``full`` adds events, history and thresholds."""
    st = RolloutState.from_status(canary.status)
    analysis = canary.spec.analysis
    weights = list(analysis.weights) if analysis else []
    total = (analysis.iterations if analysis else None) or 0
    metrics = _metrics(canary)
    limits = {m["name"]: m for m in metrics}
    checks = []
    for c in st.checks:
        record = c.to_json()
        limit = limits.get(c.name, {})
        record["min"], record["max"] = limit.get("min"), limit.get("max")
        checks.append(record)
    last = st.events[-1] if st.events else None
    out: dict[str, Any] = {
        "namespace": canary.metadata.namespace,
        "name": canary.metadata.name,
        "target": canary.spec.target_ref.name,
        "strategy": canary.strategy,
        "phase": st.phase or "Pending",
        "paused": st.paused,
        "canaryWeight": st.canary_weight,
        "primaryWeight": 100 - st.canary_weight,
        "mirroring": st.mirror_stage,
        "abActive": st.ab_active,
        "step": st.step_index + 1,
        "steps": len(weights),
        "iterations": st.iterations,
        "totalIterations": total,
        "failedChecks": st.failed_checks,
        "threshold": (analysis.threshold if analysis else None) or 1,
        "progress": _progress(canary, st, weights, total),
        "revision": st.last_applied_spec,
        "promotedRevision": st.last_promoted_spec,
        "lastTransitionTime": st.last_transition_time,
        "message": last.message if last else "",
        "checks": checks,
    }
    if full:
        out.update({
            "interval": interval_seconds(canary),
            "weights": weights,
            "metrics": metrics,
            "events": [e.to_json() for e in st.events],
            "history": [h.to_json() for h in st.history],
            "checkHistory": [p.to_json() for p in st.check_history],
            "conditions": st.conditions,
            "progressDeadlineSeconds": canary.spec.progress_deadline_seconds,
            "status": canary.status or {},
        })
        for m in metrics:
            try:
                m["intervalSeconds"] = metric_interval_seconds(m["interval"])
            except ValueError:
                m["intervalSeconds"] = None
    return out


def _argo_weight(status: dict[str, Any]) -> int:
    weights = (status.get("canary") or {}).get("weights") or {}
    return int((weights.get("canary") or {}).get("weight") or 0)


class RolloutAPI:
    """Reads rollouts from the store; carries commands out through the running
    controller, so a command and the controller's own ticks never interleave."""

    def __init__(self, store: ConfigStore, controller: RolloutController,
                 argo: ArgoController | None = None) -> None:
        self.store = store
        self.controller = controller
        self.argo = argo

    def _canaries(self, namespace: str | None = None) -> list[Canary]:
        out = []
        objects: list[StoredObject] = self.store.list(kind="Canary", namespace=namespace)
        for obj in objects:
            try:
                out.append(Canary.model_validate(obj.body))
            except ValueError:
                continue
        return out

    def _canary(self, namespace: str, name: str) -> Canary | None:
        for canary in self._canaries(namespace):
            if canary.metadata.name == name:
                return canary
        return None

    async def list(self, request: Request) -> Response:
        ns = request.path_params.get("namespace") or request.query_params.get("namespace")
        items = [summarize(c) for c in self._canaries(ns or None)]
        return JSONResponse({"kind": "RolloutList", "items": items})

    async def get(self, request: Request) -> Response:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        canary = self._canary(ns, name)
        if canary is not None:
            return JSONResponse(summarize(canary, full=True))
        argo = self.argo
        rollout = argo.reader.rollout(ns, name) if argo is not None else None
        if argo is None or rollout is None:
            return _error(404, f"no Canary or Rollout {ns}/{name}", "NotFound")
        return JSONResponse(await asyncio.to_thread(argo_summary, rollout, argo.reader))

    async def command(self, request: Request) -> Response:
        p = request.path_params
        ns, name, command = p["namespace"], p["name"], p["command"]
        full = request.query_params.get("full") in ("true", "1")
        if full and command != "promote":
            return _error(400, "full applies to promote only", "BadRequest")
        to_revision = _to_revision(request, command)
        if isinstance(to_revision, JSONResponse):
            return to_revision
        if command not in COMMANDS:
            return await self._argo_only(ns, name, command, to_revision)
        decision = await asyncio.to_thread(self.controller.command, ns, name, command)
        if decision is None:
            return await self._argo_command(ns, name, "promote-full" if full else command)
        if decision.refused:
            return _error(409, decision.refused, "Conflict")
        canary = self._canary(ns, name)
        body = summarize(canary, full=True) if canary is not None else {}
        out: dict[str, Any] = {"command": command, "rollout": body}
        if full:
            out["note"] = FULL_ON_CANARY
        return JSONResponse(out)

    async def _argo_only(self, ns: str, name: str, command: str,
                         to_revision: int | None = None) -> Response:
        """undo and restart: an Argo Rollout's only (Flagger has neither: a Canary is
        rolled back by abort or by applying the previous Deployment, its pods restarted
        by restarting its Deployment)."""
        if command not in ARGO_COMMANDS or command == "promote-full":
            known = sorted({*COMMANDS, *ARGO_COMMANDS} - {"promote-full"})
            return _error(400, f"unknown command {command!r}; use one of "
                          f"{', '.join(known)}", "BadRequest")
        if self._canary(ns, name) is not None:
            return _error(409, f"{command} applies to Argo Rollouts; a Canary is rolled back "
                          "with abort (or by applying the previous Deployment) and its pods "
                          "restarted with kubectl rollout restart on its Deployment",
                          "Conflict")
        return await self._argo_command(ns, name, command, to_revision)

    async def _argo_command(self, ns: str, name: str, command: str,
                            to_revision: int | None = None) -> Response:
        argo = self.argo
        decision = (await asyncio.to_thread(argo.command, ns, name, command, to_revision)
                    if argo is not None else None)
        if argo is None or decision is None:
            return _error(404, f"no Canary or Rollout {ns}/{name}", "NotFound")
        if decision.refused:
            return _error(409, decision.refused, "Conflict")
        rollout = argo.reader.rollout(ns, name)
        status = (rollout.status if rollout is not None else None) or {}
        return JSONResponse({"command": command, "kind": "Rollout",
                             "rollout": {"namespace": ns, "name": name,
                                         "phase": status.get("phase", ""),
                                         "canaryWeight": _argo_weight(status),
                                         "status": status}})

    def routes(self) -> list[Route]:
        return [
            Route(f"{API}/rollouts", self.list),
            Route(f"{API}/namespaces/{{namespace}}/rollouts", self.list),
            Route(f"{API}/namespaces/{{namespace}}/rollouts/{{name}}", self.get),
            Route(f"{API}/namespaces/{{namespace}}/rollouts/{{name}}/{{command}}",
                  self.command, methods=["POST"]),
        ]

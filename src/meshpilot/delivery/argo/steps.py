"""One tick of a Rollout's canary steps: a function of the Rollout, its recorded state,
what it reads and the time, as Argo's ``rollout/canary.go`` reconciles one step at a
time.

- The first template a Rollout runs becomes stable at once, without steps (Argo skips
  the steps when there is no stable ReplicaSet yet); so does a template equal to the
  stable one (a rollback to stable).
- A new template starts at step 0. ``setWeight: W`` scales the canary revision to
  ``ceil(replicas * W / 100)`` pods and, once they are ready, sets the weight.
  ``pause: {duration}`` waits that long; ``pause: {}`` waits for ``promote``.
- After the last step the canary is scaled to all replicas, then takes all traffic (100),
  then becomes stable: the stable subset (or service) points at it and the weights go
  back to 100/0 on the stable side; the previous stable revision is scaled to zero.
- ``setCanaryScale`` sets the canary's pod count apart from its weight (``replicas``, or
  ``weight`` percent of the replicas) until ``matchTrafficWeight`` or the end of the steps,
  and waits for those pods (Argo's ``GetCanaryReplicasOrWeight``).
- ``abort`` sends all traffic back to stable and scales the canary to zero
  ``abortScaleDownDelaySeconds`` (default 30) later; the phase is
  Degraded until a new template or ``retry``. ``promote`` ends a pause and moves to the
  next step (kubectl-argo-rollouts' ``promote``).
- ``analysis`` steps and the background ``analysis`` (``rollout/analysis.go``): see
  :meth:`Tick.step_analysis` and :meth:`Tick.background_analysis`; ``setHeaderRoute`` and
  ``setMirrorRoute`` steps: :mod:`.managed_routes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshpilot.api.argo import Rollout, RolloutAnalysis
from meshpilot.delivery.argo import managed_routes, run_objects, traffic, workloads
from meshpilot.delivery.argo.status import INCONCLUSIVE_REASON, PAUSE_REASON, ArgoState, RunRef
from meshpilot.delivery.ports import WorkloadStatus
from meshpilot.delivery.state import rfc3339

FULL_WEIGHT = 100
COMMANDS = ("promote", "promote-full", "abort", "retry", "pause", "resume", "undo",
            "restart")
MANUAL_PAUSE = "manually paused"
UNSUCCESSFUL = ("Failed", "Error", "Inconclusive")


@dataclass(frozen=True)
class View:
    """What a tick reads, by name in the Rollout's namespace."""

    deployment: Callable[[str], dict[str, Any] | None]
    workload: Callable[[str], WorkloadStatus]
    routing_object: Callable[[str, str], dict[str, Any] | None]
    """(kind, name) -> a stored object of the Rollout's namespace: the user's
    VirtualServices, DestinationRules and Services, AnalysisTemplates and AnalysisRuns."""
    cluster_object: Callable[[str, str], dict[str, Any] | None] = lambda kind, name: None
    """(kind, name) -> a stored cluster-scoped object (ClusterAnalysisTemplate)."""


@dataclass
class Decision:
    state: ArgoState
    objects: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)
    refused: str = ""
    paused: bool | None = None
    """spec.paused to write before the status (pause, resume, promote)."""
    template: dict[str, Any] | None = None
    """spec.template to write (undo); nothing else changes until the next tick."""
    restart_at: str | None = None
    """spec.restartAt to write (restart); the next tick restarts the pods."""


def _ready(ws: WorkloadStatus, want: int) -> bool:
    return ws.exists and ws.desired == want and ws.ready >= want


def set_weight_before(rollout: Rollout, index: int) -> int:
    """The weight the last setWeight before step ``index`` set (0 when none did)."""
    weights = [s.set_weight for s in rollout.canary.steps[:index] if s.set_weight is not None]
    return weights[-1] if weights else 0


def canary_count(rollout: Rollout, index: int, weight: int) -> int:
    """The canary's pods at step ``index`` with traffic ``weight``: the last
    setCanaryScale up to that step, unless it matches the traffic weight."""
    scales = [s.set_canary_scale for s in rollout.canary.steps[:index + 1]
              if s.set_canary_scale is not None]
    scale = scales[-1] if scales else None
    if scale is None or scale.match_traffic_weight:
        return workloads.canary_replicas(rollout, weight)
    if scale.replicas is not None:
        return scale.replicas
    return workloads.canary_replicas(rollout, scale.weight or 0)


class Tick:
    def __init__(self, rollout: Rollout, st: ArgoState, view: View, now: float,
                 to_revision: int | None = None) -> None:
        self.ro = rollout
        self.to_revision = to_revision
        """undo's ``--to-revision``: the revision number to go back to (None or 0: the
        previous revision)."""
        self.st = st
        self.view = view
        self.now = now
        self.pod_hash = workloads.pod_template_hash(rollout.spec.template)
        self.objects: list[dict[str, Any]] = []
        self.deletes: list[tuple[str, str]] = []
        self.managed: dict[str, Any] = {}
        """The setHeaderRoute/setMirrorRoute routes the VirtualServices carry now."""
        self.spec_paused = bool(rollout.spec.paused)
        """spec.paused as this tick leaves it (pause, resume and promote change it)."""
        self.paused_write: bool | None = None
        """spec.paused to write, when a command changed it."""
        self.template_write: dict[str, Any] | None = None
        """spec.template to write (undo); the next tick runs it."""
        self.restart = workloads.restart_stamp(rollout, now)
        """spec.restartAt once due: every revision it scales has its pods restarted."""
        self.restart_write: str | None = None
        """spec.restartAt to write (restart)."""

    # --- commands ------------------------------------------------------------------

    def command(self, command: str) -> str:
        """Carry out ``command``; the reason it does not apply now, or ""."""
        handler = {"abort": self._abort, "retry": self._retry, "promote": self._promote,
                   "promote-full": self._promote_full, "pause": self._pause,
                   "resume": self._resume, "undo": self._undo,
                   "restart": self._restart}.get(command)
        if handler is None:
            return (f"{command} is not implemented for Argo Rollouts; use one of "
                    f"{', '.join(COMMANDS)}")
        return handler()

    def _abort(self) -> str:
        if self.st.promoted:
            return "nothing to abort: the Rollout is fully promoted"
        self.abort("")
        return ""

    def _retry(self) -> str:
        st = self.st
        if not st.abort:
            return "retry applies to an aborted Rollout only"
        st.abort, st.aborted_at, st.step_index, st.abort_reason = False, None, 0, ""
        self.new_analysis_attempt()
        return ""

    def promote_preamble(self) -> str | None:
        """What every promote does first: an aborted Rollout refuses, ``spec.paused`` is
        cleared, and a fully promoted one has nothing left to promote. The command's
        answer, or None to go on."""
        if self.st.abort:
            return "the Rollout is aborted: retry it, or apply a new template"
        unpaused = self.set_paused(False)
        if self.st.promoted:
            return "" if unpaused else "nothing to promote: the Rollout is fully promoted"
        return None

    def _promote(self) -> str:
        """kubectl-argo-rollouts' ``promote``: clears spec.paused and ends a pause step
        (or, after an inconclusive analysis, runs it again)."""
        unpaused = self.spec_paused
        refused = self.promote_preamble()
        if refused is not None:
            return refused
        st = self.st
        if st.inconclusive:
            st.inconclusive, st.pause_start = False, None
            self.new_analysis_attempt()
            return ""
        if st.pause_start is None:
            # kubectl argo rollouts promote changes nothing then (its
            # --skip-current-step is not implemented here)
            return "" if unpaused else (
                "the Rollout is not paused at a step; promote ends a pause")
        st.pause_start = None
        st.step_index = min(st.step_index + 1, len(self.ro.steps))
        return ""

    def _promote_full(self) -> str:
        """``promote --full``: unpause, skip every remaining step and analysis; the
        revision then scales up, takes all traffic and becomes stable."""
        refused = self.promote_preamble()
        if refused is not None:
            return refused
        st = self.st
        self.terminate_runs()
        st.promote_full, st.inconclusive, st.pause_start = True, False, None
        st.step_index = len(self.ro.steps)
        return ""

    def _pause(self) -> str:
        """kubectl-argo-rollouts' ``pause``: sets spec.paused; the steps hold."""
        if self.spec_paused:
            return "the Rollout is already paused (spec.paused); resume or promote it"
        self.set_paused(True)
        return ""

    def _resume(self) -> str:
        if not self.spec_paused:
            return ("the Rollout is not paused (spec.paused is not set); promote ends a "
                    "pause step")
        self.set_paused(False)
        return ""

    def _undo(self) -> str:
        """kubectl-argo-rollouts' ``undo``: the template goes back to the previous
        revision's (the stable one during a rollout, else the newest older one), or with
        ``--to-revision N`` to the revision numbered N; the Rollout then runs it as any
        new template (back to stable at once, without steps)."""
        ref = self.ro.spec.workload_ref
        if ref is not None:
            return (f"undo applies to a Rollout's own template; this one runs Deployment "
                    f"{ref.name}'s (spec.workloadRef): undo that Deployment (kubectl "
                    "rollout undo deployment) and the Rollout follows it")
        if self.to_revision:
            previous, problem = self._numbered(self.to_revision)
            if problem:
                return problem
        else:
            st = self.st
            previous = st.stable_rs if st.current_pod_hash != st.stable_rs else (
                st.old_revisions[-1] if st.old_revisions else "")
        if not previous:
            return "no previous revision to roll back to"
        body = self.view.deployment(workloads.revision_name(self.ro, previous))
        if body is None:
            return f"revision {previous} is no longer kept (revisionHistoryLimit)"
        self.template_write = workloads.revision_template(body)
        return ""

    def _numbered(self, number: int) -> tuple[str, str]:
        """(the hash of revision ``number``, "") or ("", why there is none to go to)."""
        by_number = {n: h for h, n in self.st.revisions.items()}
        pod_hash = by_number.get(number)
        if pod_hash is None:
            kept = ", ".join(str(n) for n in sorted(by_number)) or "none"
            return "", f"unable to find revision {number} in the history (kept: {kept})"
        if pod_hash == self.st.current_pod_hash:
            return "", f"revision {number} is the current revision; nothing to undo"
        return pod_hash, ""

    def _restart(self) -> str:
        """kubectl-argo-rollouts' ``restart``: spec.restartAt = now; the pods of the
        revisions that run are replaced (a rolling restart of each revision)."""
        self.restart_write = rfc3339(self.now)
        return ""

    def set_paused(self, paused: bool) -> bool:
        """Set spec.paused (written by the controller before the status); whether it
        changed."""
        if self.spec_paused == paused:
            return False
        self.spec_paused = self.paused_write = paused
        return True

    # --- revisions -----------------------------------------------------------------

    def observe_template(self) -> None:
        st, h = self.st, self.pod_hash
        # a revision that runs again (a template rolled back to) is no longer history
        st.old_revisions = [x for x in st.old_revisions if x != h]
        if h != st.current_pod_hash or h not in st.revisions:
            st.number(h)  # Argo bumps a rolled-back-to ReplicaSet's revision too
        if not st.stable_rs or h == st.stable_rs:
            if st.current_pod_hash and st.current_pod_hash not in (h, st.stable_rs):
                self.retire(st.current_pod_hash)
            if st.current_pod_hash and st.current_pod_hash != h:
                self.new_analysis_attempt()  # back to stable: the canary's runs stop
            st.stable_rs = st.current_pod_hash = h
            st.step_index = len(self.ro.steps)
            st.abort, st.pause_start, st.canary_weight = False, None, 0
            st.promote_full = False
        elif h != st.current_pod_hash:
            if st.current_pod_hash != st.stable_rs:
                self.retire(st.current_pod_hash)  # a canary superseded mid-rollout
            st.current_pod_hash, st.step_index = h, 0
            st.abort, st.pause_start, st.abort_reason = False, None, ""
            st.promote_full = False
            st.switched = False  # blue-green: a revision not yet stable loses the active
            self.new_analysis_attempt()

    def retire(self, pod_hash: str) -> None:
        """Keep revision ``pod_hash`` at zero replicas, within revisionHistoryLimit."""
        if not pod_hash:
            return
        self.st.old_revisions = [h for h in self.st.old_revisions if h != pod_hash] + [
            pod_hash]
        self.scale(pod_hash, 0)
        limit = self.ro.spec.revision_history_limit
        while len(self.st.old_revisions) > limit:
            gone = self.st.old_revisions.pop(0)
            self.st.revisions.pop(gone, None)
            self.deletes.append(("Deployment", workloads.revision_name(self.ro, gone)))

    def scale(self, pod_hash: str, replicas: int) -> None:
        body = self.view.deployment(workloads.revision_name(self.ro, pod_hash))
        if body is not None:
            out = workloads.rescaled(body, replicas, self.restart)
            if out is not None:
                self.objects.append(out)

    def restart_for(self, pod_hash: str) -> str | None:
        """spec.restartAt once due; else the restart the revision's pods already had (a
        restartAt taken out of the spec restarts nothing again)."""
        return self.restart or workloads.restart_of(
            self.view.deployment(workloads.revision_name(self.ro, pod_hash)))

    def run_current(self, replicas: int) -> bool:
        """Write the current revision at ``replicas``; whether all are ready."""
        self.objects.append(workloads.revision_deployment(self.ro, self.pod_hash, replicas,
                                                          self.restart_for(self.pod_hash)))
        ws = self.view.workload(workloads.revision_name(self.ro, self.pod_hash))
        return _ready(ws, replicas)

    # --- analysis ------------------------------------------------------------------

    def new_analysis_attempt(self) -> None:
        """Stop the current runs; the next ones get new names (a template rolled back
        to, a retry or a promote after Inconclusive never reads an old run's result)."""
        self.terminate_runs()
        self.st.analysis_attempt += 1
        self.st.step_run, self.st.background_run = RunRef(), RunRef()
        self.st.inconclusive = False

    def terminate_runs(self, step: bool = True, background: bool = True) -> None:
        refs = [r for r, on in ((self.st.step_run, step),
                                (self.st.background_run, background)) if on and r.name]
        for ref in refs:
            body = self.view.routing_object("AnalysisRun", ref.name)
            stopped = run_objects.terminated(body) if body is not None else None
            if stopped is not None:
                self.objects.append(stopped)

    def _template(self, name: str, cluster: bool) -> dict[str, Any] | None:
        if cluster:
            return self.view.cluster_object("ClusterAnalysisTemplate", name)
        return self.view.routing_object("AnalysisTemplate", name)

    def analysis_run(self, spec: RolloutAnalysis, step: int | None,
                     kind: str = "") -> RunRef | None:
        """The current revision's run of ``spec`` (made when missing, also after a lost
        write); None when it cannot be made (the Rollout is then Degraded). ``kind``
        PrePromotion or PostPromotion: a blue-green Rollout's."""
        suffix = {"PrePromotion": "pre", "PostPromotion": "post"}.get(kind, step)
        name = run_objects.run_name(self.ro, self.pod_hash, self.st.analysis_attempt, suffix)
        stored = self.view.routing_object("AnalysisRun", name)
        if stored is not None:
            status = stored.get("status") or {}
            return RunRef(name, str(status.get("phase") or "Pending"),
                          str(status.get("message") or ""))
        try:
            body = run_objects.new_run(self.ro, spec, self._template, name=name,
                                       stable=self.st.stable_rs, latest=self.pod_hash,
                                       step=step, kind=kind)
        except run_objects.RunSpecError as exc:
            self.degraded(f"InvalidSpec: {exc}")
            return None
        self.objects.append(body)
        if name not in self.st.runs:
            self.st.runs.append(name)
        self.collect_runs(name)
        return RunRef(name, "Pending", "")

    def collect_runs(self, new: str) -> None:
        """Delete the oldest finished runs beyond spec.analysis' successful and
        unsuccessful history limits (Argo's ``FilterAnalysisRunsToDelete``); runs still
        going are kept, those gone already forgotten; ``new`` is not stored yet."""
        limits = self.ro.spec.analysis
        left = {"Successful": limits.successful_run_history_limit,
                "unsuccessful": limits.unsuccessful_run_history_limit}
        keep: list[str] = []
        for name in reversed(self.st.runs):  # newest first
            body = self.view.routing_object("AnalysisRun", name) if name != new else {}
            if body is None:
                continue
            phase = str((body.get("status") or {}).get("phase") or "")
            group = "Successful" if phase == "Successful" else (
                "unsuccessful" if phase in UNSUCCESSFUL else "")
            if group and left[group] <= 0:
                self.deletes.append(("AnalysisRun", name))
                continue
            if group:
                left[group] -= 1
            keep.append(name)
        self.st.runs = keep[::-1]

    def judge_run(self, ref: RunRef, kind: str) -> bool:
        """Abort on a Failed or Error run, pause on an Inconclusive one; whether it did."""
        if ref.status in ("Failed", "Error"):
            reason = f"{kind} analysis phase error/failed"
            self.abort(f"{reason}: {ref.message}" if ref.message else reason)
            self.aborted()
            return True
        if ref.status == "Inconclusive":
            self.st.inconclusive = True
            self.st.pause_start = self.now
            self.st.phase, self.st.message = "Paused", INCONCLUSIVE_REASON
            return True
        return False

    def abort(self, reason: str) -> None:
        self.st.abort, self.st.aborted_at = True, self.now
        self.st.pause_start, self.st.inconclusive = None, False
        self.st.abort_reason = reason

    def background_analysis(self) -> bool:
        """Run the background analysis from its starting step; whether it stopped the
        steps (aborted or paused)."""
        spec = self.ro.canary.analysis
        if spec is None or self.st.step_index < (spec.starting_step or 0):
            return False
        ref = self.analysis_run(spec, None)
        if ref is None:
            return True
        self.st.background_run = ref
        return self.judge_run(ref, "Background")

    def step_analysis(self, spec: RolloutAnalysis) -> None:
        """An analysis step: the canary keeps its pods and weight until the run ends;
        Successful moves on, Failed or Error aborts, Inconclusive pauses."""
        weight = set_weight_before(self.ro, self.st.step_index)
        self.run_current(self.canary_pods(weight))
        ref = self.analysis_run(spec, self.st.step_index)
        if ref is None:
            return
        self.st.step_run = ref
        if self.judge_run(ref, "Step-based"):
            return
        self.st.phase = "Progressing"
        if ref.status == "Successful":
            self.st.step_index += 1
            self.st.message = ""
        else:
            self.st.message = f"waiting for AnalysisRun {ref.name}"

    # --- traffic -------------------------------------------------------------------

    def route(self, canary_weight: int, canary_hash: str) -> str:
        """Write the split and subset labels; the reason it cannot be, or ""."""
        try:
            edits = self._routing_edits(canary_weight, canary_hash)
        except traffic.RoutingError as exc:
            return str(exc)
        self.objects.extend(edits)
        self.st.canary_weight = canary_weight
        return ""

    def _routing_edits(self, canary_weight: int, canary_hash: str) -> list[dict[str, Any]]:
        istio = self.ro.istio
        assert istio is not None, "validation refuses a canary without trafficRouting.istio"
        edits: list[tuple[dict[str, Any], dict[str, Any]]] = []
        rule = istio.destination_rule
        dr_host = None
        if rule is not None:
            stored = self._stored("DestinationRule", rule.name)
            dr_host = (stored.get("spec") or {}).get("host")
            edits.append((traffic.hashed_destination_rule(
                self.ro, stored, canary_hash, self.st.stable_rs), stored))
        canary = self.ro.canary
        for service, pod_hash in ((canary.canary_service, canary_hash),
                                  (canary.stable_service, self.st.stable_rs)):
            if service:
                stored = self._stored("Service", service)
                edits.append((traffic.hashed_service(stored, pod_hash), stored))
        for spec in istio.all_virtual_services:
            stored = self._stored("VirtualService", spec.name)
            weighted = traffic.weighted_virtual_service(self.ro, spec, stored, canary_weight)
            edits.append((managed_routes.with_managed_routes(
                self.ro, spec, weighted, self.managed, dr_host), stored))
        return [new for new, old in edits if traffic.changed(new, old)]

    def _stored(self, kind: str, name: str) -> dict[str, Any]:
        body = self.view.routing_object(kind, name)
        if body is None:
            raise traffic.RoutingError(f"{kind} {name} not found in namespace "
                                       f"{self.ro.metadata.namespace}")
        return body

    # --- phases --------------------------------------------------------------------

    def degraded(self, message: str) -> None:
        self.st.phase, self.st.message = "Degraded", message

    def healthy(self) -> None:
        """The stable revision at all replicas, all traffic to it (Argo points the
        subsets at the first revision at once). A Rollout taking over a Deployment's
        pods (workloadRef) routes to its first revision once that revision's pods are
        ready: until then the user's routing objects keep selecting the Deployment's
        pods, so the migration fails no request."""
        ready = self.run_current(self.ro.spec.replicas)
        if not ready and self._taking_over():
            self.st.phase, self.st.message = "Progressing", (
                "updated replicas are still becoming available")
            return
        problem = self.route(0, self.pod_hash)
        if problem:
            self.degraded(f"InvalidSpec: {problem}")
            return
        self.st.phase = "Healthy" if ready else "Progressing"
        self.st.message = "" if ready else "updated replicas are still becoming available"

    def _taking_over(self) -> bool:
        """A workloadRef Rollout's first revision, not Healthy yet."""
        return (self.ro.spec.workload_ref is not None and not self.st.old_revisions
                and self.st.phase != "Healthy")

    def aborted(self) -> None:
        """All traffic to stable; the canary keeps its pods abortScaleDownDelaySeconds
        (default 30) after the abort, then is scaled to zero (Argo's behaviour with
        traffic routing: the switch back fails no request)."""
        due = (self.st.aborted_at or self.now) + self.ro.canary.abort_scale_down_delay_seconds
        if self.now >= due:
            self.objects.append(workloads.revision_deployment(
                self.ro, self.pod_hash, 0, self.restart_for(self.pod_hash)))
        self.terminate_runs()
        problem = self.route(0, self.pod_hash)
        reason = f": {self.st.abort_reason}" if self.st.abort_reason else ""
        self.degraded(f"InvalidSpec: {problem}" if problem else
                      f"RolloutAborted: Rollout aborted update to revision "
                      f"{self.pod_hash}{reason}")

    def progress(self) -> None:
        # Argo reconciles the split on every pass, so an apply of the user's objects that
        # reset the weights mid-rollout is corrected at once.
        problem = self.route(self.st.canary_weight, self.pod_hash)
        if problem:
            self.degraded(f"InvalidSpec: {problem}")
            return
        self.scale(self.st.stable_rs, self.ro.spec.replicas)
        if self.st.inconclusive:
            self.st.phase, self.st.message = "Paused", INCONCLUSIVE_REASON
            return
        if not self.st.promote_full and self.background_analysis():
            return
        steps = self.ro.canary.steps
        if self.st.step_index >= len(steps):
            self.finish()
            return
        step = steps[self.st.step_index]
        if step.set_weight is not None:
            self.set_weight(step.set_weight)
        elif step.pause is not None:
            self.pause(step.pause.seconds)
        elif step.set_canary_scale is not None:
            self.set_canary_scale()
        elif step.analysis is not None:
            self.step_analysis(step.analysis)
        elif step.set_header_route is not None or step.set_mirror_route is not None:
            self.set_route()
        self.st.message = self.st.message or f"step {self.st.step_index}/{len(steps)}"

    def set_route(self) -> None:
        """A setHeaderRoute or setMirrorRoute step: the route changes, the step is done."""
        self.managed = managed_routes.in_effect(self.ro, self.st.step_index + 1)
        problem = self.route(self.st.canary_weight, self.pod_hash)
        if problem:
            self.degraded(f"InvalidSpec: {problem}")
            return
        self.st.step_index += 1
        self.st.phase, self.st.message = "Progressing", ""

    def canary_pods(self, weight: int) -> int:
        return canary_count(self.ro, self.st.step_index, weight)

    def set_canary_scale(self) -> None:
        weight = set_weight_before(self.ro, self.st.step_index)
        self.st.phase, self.st.message = "Progressing", "more replicas need to be updated"
        if self.run_current(self.canary_pods(weight)):
            self.st.step_index += 1
            self.st.message = ""

    def set_weight(self, weight: int) -> None:
        ready = self.run_current(self.canary_pods(weight))
        self.st.phase, self.st.message = "Progressing", "more replicas need to be updated"
        if not ready:
            return
        problem = self.route(weight, self.pod_hash)
        if problem:
            self.degraded(f"InvalidSpec: {problem}")
            return
        self.st.step_index += 1
        self.st.message = ""

    def pause(self, seconds: float | None) -> None:
        weight = set_weight_before(self.ro, self.st.step_index)
        self.run_current(self.canary_pods(weight))
        if self.st.pause_start is None:
            self.st.pause_start = self.now
        if seconds is not None and self.now >= self.st.pause_start + seconds:
            self.st.pause_start = None
            self.st.step_index += 1
            self.st.phase, self.st.message = "Progressing", ""
            return
        self.st.phase, self.st.message = "Paused", PAUSE_REASON

    def hold(self) -> None:
        """spec.paused (Argo's manual pause): nothing moves. The split is kept where it
        is (and put back if an apply reset it), no revision is scaled and no step or
        analysis advances; a fully promoted Rollout keeps its stable revision running. A
        template applied while paused is not started (as a paused Deployment): it gets
        no traffic.
        """
        if self.st.promoted:
            self.healthy()
        else:
            started = self.view.deployment(workloads.revision_name(self.ro, self.pod_hash))
            weight = self.st.canary_weight if started is not None else 0
            problem = self.route(weight, self.pod_hash)
            if problem:
                self.degraded(f"InvalidSpec: {problem}")
                return
        if self.st.phase != "Degraded":
            self.st.phase, self.st.message = "Paused", MANUAL_PAUSE

    def finish(self) -> None:
        """All steps done: canary to all replicas, then all traffic, then stable (the
        managed routes go, as Argo removes them on promotion)."""
        self.managed = {}
        self.st.phase, self.st.message = "Progressing", "more replicas need to be updated"
        if not self.run_current(self.ro.spec.replicas):
            return
        if self.st.canary_weight < FULL_WEIGHT:
            problem = self.route(FULL_WEIGHT, self.pod_hash)
            if problem:
                self.degraded(f"InvalidSpec: {problem}")
            return
        previous = self.st.stable_rs
        self.st.stable_rs = self.pod_hash
        problem = self.route(0, self.pod_hash)
        if problem:
            self.st.stable_rs = previous
            self.degraded(f"InvalidSpec: {problem}")
            return
        self.retire(previous)
        self.terminate_runs(step=False)  # Argo stops the background run once promoted
        self.st.promote_full = False
        self.st.phase, self.st.message = "Healthy", ""


def decide(rollout: Rollout, state: ArgoState, view: View, now: float,
           command: str | None = None, kind: type[Tick] | None = None,
           to_revision: int | None = None) -> Decision:
    """The new state and the writes of one tick (or of ``command``, then a tick);
    ``kind`` is the strategy's Tick (the canary's by default); ``to_revision`` undo's
    revision number."""
    tick = (kind or Tick)(rollout, state.copy(), view, now, to_revision)
    tick.observe_template()
    if command is not None:
        refused = tick.command(command)
        if refused:
            return Decision(state, refused=refused)
        if tick.template_write is not None or tick.restart_write is not None:
            return Decision(state, template=tick.template_write,
                            restart_at=tick.restart_write)
    if not (tick.st.promoted or tick.st.abort):
        tick.managed = managed_routes.in_effect(rollout, tick.st.step_index)
    if tick.spec_paused and not tick.st.abort:
        tick.hold()
    elif tick.st.promoted:
        tick.healthy()
    elif tick.st.abort:
        tick.aborted()
    else:
        tick.progress()
    ws = view.workload(workloads.revision_name(rollout, tick.st.stable_rs))
    tick.st.replicas, tick.st.ready_replicas = rollout.spec.replicas, ws.ready
    return Decision(tick.st, _numbered(rollout, tick.objects, tick.st), tick.deletes,
                    paused=tick.paused_write)


def _numbered(rollout: Rollout, objects: list[dict[str, Any]],
              st: ArgoState) -> list[dict[str, Any]]:
    """The revision Deployments among ``objects`` with their revision numbers."""
    by_name = {workloads.revision_name(rollout, h): n for h, n in st.revisions.items()}
    for obj in objects:
        if obj.get("kind") == "Deployment":
            workloads.numbered(obj, by_name.get(str(obj["metadata"]["name"])))
    return objects

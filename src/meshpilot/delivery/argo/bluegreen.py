"""One tick of a Rollout's blue-green strategy, as Argo's ``rollout/bluegreen.go`` and
``docs/features/bluegreen.md`` describe it.

- Two Services the user owns select revisions: Argo adds ``rollouts-pod-template-hash``
  to their selectors. The active Service serves users; the preview Service (optional)
  the newest revision, once its pods are all available.
- A new template runs as a whole revision beside the stable one. Once it is available,
  its ``prePromotionAnalysis`` runs (the switch waits for it; Failed or Error aborts).
  Then, with ``autoPromotionEnabled`` (default true), the active Service switches at
  once, or after ``autoPromotionSeconds`` of a ``BlueGreenPause``; with
  ``autoPromotionEnabled: false`` the Rollout stays paused until ``promote``.
- After the switch the ``postPromotionAnalysis`` runs; Failed or Error aborts and
  switches the active Service back to the previous stable revision, which still runs.
  Once it passes (or without one), the new revision is stable and the previous one is
  scaled down ``scaleDownDelaySeconds`` (default 30) later, so proxies that still send
  to its pods while the new endpoints propagate are answered.
- ``promote`` ends the BlueGreenPause; ``promote --full`` (Argo's ``status.promoteFull``)
  also skips the pre- and post-promotion analysis: the active Service switches as soon as
  the new revision is available and it becomes stable at once.
- An abort points both Services at the stable revision; the new revision is scaled down
  after the same delay. The switch itself is one selector edit: the mesh's endpoints
  move from one revision's ready pods to the other's, with no pod stopping meanwhile.
"""

from __future__ import annotations

from meshpilot.api.argo import BlueGreenStrategy
from meshpilot.delivery.argo import traffic, workloads
from meshpilot.delivery.argo.status import BLUE_GREEN_PAUSE_REASON, INCONCLUSIVE_REASON
from meshpilot.delivery.argo.steps import Tick


class BlueGreenTick(Tick):
    @property
    def bg(self) -> BlueGreenStrategy:
        strategy = self.ro.blue_green
        assert strategy is not None, "used for blue-green Rollouts only"
        return strategy

    def command(self, command: str) -> str:
        """promote ends a BlueGreenPause (step_index 1 records it for this revision);
        promote --full also skips the analysis; pause and resume are the canary
        strategy's here."""
        self.st.blue_green = True
        if command in ("pause", "resume"):
            return (f"{command} is implemented for canary Rollouts only; a blue-green "
                    "Rollout is steered with promote [--full], abort and retry")
        if command == "promote-full":
            return self._promote_full_blue_green()
        if command == "promote" and not (self.st.abort or self.st.promoted
                                          or self.st.inconclusive):
            if self.st.switched:
                return "the active Service already serves the new revision"
            self.st.pause_start, self.st.step_index = None, 1
            return ""
        return super().command(command)

    def _promote_full_blue_green(self) -> str:
        """``promote --full``: no pause, no pre- or post-promotion analysis (their runs
        are terminated); the switch still waits for the new revision's pods."""
        refused = self.promote_preamble()
        if refused is not None:
            return refused
        st = self.st
        self.terminate_runs()
        st.promote_full, st.inconclusive, st.pause_start, st.step_index = True, False, None, 1
        return ""

    # --- services and revisions ------------------------------------------------------

    def services(self, active: str, preview: str) -> str:
        """Point the active and preview Services at those revisions; a problem or ""."""
        edits = []
        for name, pod_hash in ((self.bg.active_service, active),
                               (self.bg.preview_service, preview)):
            if not name or not pod_hash:
                continue
            stored = self.view.routing_object("Service", name)
            if stored is None:
                return f"Service {name} not found in namespace {self.ro.metadata.namespace}"
            edited = traffic.hashed_service(stored, pod_hash)
            if traffic.changed(edited, stored):
                edits.append(edited)
        self.objects.extend(edits)
        self.st.active_selector, self.st.preview_selector = active, preview
        return ""

    def schedule_scale_down(self, pod_hash: str) -> None:
        if pod_hash and pod_hash != self.pod_hash:
            self.st.scale_down.setdefault(pod_hash, self.now + self.bg.scale_down_delay_seconds)

    def keep_or_scale_down(self) -> None:
        """Revisions waiting for their scale-down keep all their pods until then."""
        for pod_hash, due in sorted(self.st.scale_down.items()):
            if pod_hash == self.pod_hash:
                del self.st.scale_down[pod_hash]
            elif self.now >= due:
                del self.st.scale_down[pod_hash]
                self.retire(pod_hash)
            else:
                self.scale(pod_hash, self.ro.spec.replicas)

    # --- phases ------------------------------------------------------------------------

    def healthy(self) -> None:
        self.st.blue_green = True
        ready = self.run_current(self.ro.spec.replicas)
        if not ready and self._taking_over():
            # the Services keep selecting the referenced Deployment's pods until then
            self.st.phase, self.st.message = "Progressing", (
                "updated replicas are still becoming available")
            return
        self.keep_or_scale_down()
        problem = self.services(self.pod_hash, self.pod_hash)
        if problem:
            self.degraded(f"InvalidSpec: {problem}")
            return
        self.st.switched = False
        self.st.phase = "Healthy" if ready else "Progressing"
        self.st.message = "" if ready else "updated replicas are still becoming available"

    def aborted(self) -> None:
        self.st.blue_green = True
        self.terminate_runs()
        stable = self.st.stable_rs
        problem = self.services(stable, stable)
        self.st.switched = False
        self.scale(stable, self.ro.spec.replicas)
        due = (self.st.aborted_at or self.now) + self.bg.scale_down_delay_seconds
        self.objects.append(workloads.revision_deployment(
            self.ro, self.pod_hash, self.ro.spec.replicas if self.now < due else 0,
            self.restart_for(self.pod_hash)))
        self.keep_or_scale_down()
        reason = f": {self.st.abort_reason}" if self.st.abort_reason else ""
        self.degraded(f"InvalidSpec: {problem}" if problem else
                      f"RolloutAborted: Rollout aborted update to revision "
                      f"{self.pod_hash}{reason}")

    def progress(self) -> None:
        self.st.blue_green = True
        replicas = self.ro.spec.replicas
        ready = self.run_current(replicas)
        self.scale(self.st.stable_rs, replicas)
        self.keep_or_scale_down()
        if self.st.switched:
            self.after_switch()
            return
        preview = self.pod_hash if ready else (self.st.preview_selector or self.st.stable_rs)
        problem = self.services(self.st.stable_rs, preview)
        if problem:
            self.degraded(f"InvalidSpec: {problem}")
            return
        self.st.phase = "Progressing"
        if not ready:
            self.st.message = "waiting for the new revision's pods to be available"
            return
        if self.st.inconclusive:
            self.st.phase, self.st.message = "Paused", INCONCLUSIVE_REASON
            return
        if self.pre_promotion_blocks() or self.paused():
            return
        self.switch()

    def pre_promotion_blocks(self) -> bool:
        spec = self.bg.pre_promotion_analysis
        if spec is None or self.st.promote_full:
            return False
        ref = self.analysis_run(spec, None, "PrePromotion")
        if ref is None:
            return True
        self.st.step_run = ref
        if self.judge_run(ref, "PrePromotion"):
            return True
        if ref.status != "Successful":
            self.st.message = f"waiting for pre-promotion AnalysisRun {ref.name}"
            return True
        return False

    def paused(self) -> bool:
        """The BlueGreenPause before the switch; whether it still holds."""
        if self.st.step_index >= 1:  # promoted by the user
            return False
        bg = self.bg
        if bg.auto_promotion_enabled and bg.auto_promotion_seconds is None:
            return False
        if self.st.pause_start is None:
            self.st.pause_start = self.now
        if bg.auto_promotion_enabled and bg.auto_promotion_seconds is not None and (
                self.now >= self.st.pause_start + bg.auto_promotion_seconds):
            self.st.pause_start = None
            return False
        self.st.phase, self.st.message = "Paused", BLUE_GREEN_PAUSE_REASON
        return True

    def switch(self) -> None:
        """The active Service to the new revision (the previous one keeps running)."""
        problem = self.services(self.pod_hash, self.pod_hash)
        if problem:
            self.degraded(f"InvalidSpec: {problem}")
            return
        self.st.switched = True
        self.after_switch()

    def after_switch(self) -> None:
        self.services(self.pod_hash, self.pod_hash)
        spec = self.bg.post_promotion_analysis
        if spec is not None and not self.st.promote_full:
            ref = self.analysis_run(spec, None, "PostPromotion")
            if ref is None:
                return
            self.st.background_run = ref
            if self.judge_run(ref, "PostPromotion"):
                return
            if ref.status != "Successful":
                self.st.phase = "Progressing"
                self.st.message = f"waiting for post-promotion AnalysisRun {ref.name}"
                return
        previous = self.st.stable_rs
        self.st.stable_rs, self.st.switched = self.pod_hash, False
        self.st.promote_full = False
        self.schedule_scale_down(previous)
        self.st.phase, self.st.message = "Healthy", ""

"""The shell around :mod:`.steps`: read, decide, persist the status, write.

As in the Flagger controller, the new state is persisted before the objects are written:
if the process dies in between, the next tick derives the same writes from the recorded
state, so traffic only moves to where the status says it is. A write that is refused
(a user's apply in between: a conflict) is retried by the next tick. A Rollout's ticks and
commands never overlap: they are serialised by that Rollout's lock.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from meshpilot.api.argo import Rollout
from meshpilot.delivery.argo import traffic, workload_ref
from meshpilot.delivery.argo.bluegreen import BlueGreenTick
from meshpilot.delivery.argo.fail_fast import ArgoFailFast
from meshpilot.delivery.argo.ports import ArgoReader, ArgoWriter
from meshpilot.delivery.argo.status import ArgoState
from meshpilot.delivery.argo.steps import COMMANDS, Decision, View, decide
from meshpilot.delivery.keyed_locks import KeyedLocks
from meshpilot.delivery.ports import Clock, WriteError

log = logging.getLogger(__name__)

ARGO_COMMANDS = COMMANDS


class ArgoController:
    """Steps Rollouts: ``tick`` on every change and on a timer; ``command`` for promote
    (also ``promote-full``), abort, retry, pause, resume, undo and restart."""

    def __init__(self, clock: Clock, writer: ArgoWriter, reader: ArgoReader,
                 fail_fast: ArgoFailFast | None = None) -> None:
        """``fail_fast``: judges the canaries of Rollouts that opted in between their
        measurements (a meshpilot extension; None: never, as Argo)."""
        self.clock = clock
        self.writer = writer
        self.reader = reader
        self.fail_fast = fail_fast
        self._locks = KeyedLocks()  # one per Rollout: its steps stay serial
        self.last_write_error: str | None = None

    def _lock_of(self, namespace: str, name: str) -> threading.Lock:
        return self._locks.of(namespace, name)

    def tick(self, namespace: str, name: str) -> Decision | None:
        """Advance one Rollout by one tick; None when there is no such Rollout."""
        return self.command(namespace, name, None)

    def command(self, namespace: str, name: str, command: str | None,
                to_revision: int | None = None) -> Decision | None:
        """``to_revision``: undo's ``--to-revision`` (None: the previous revision)."""
        with self._lock_of(namespace, name):
            rollout = self.reader.rollout(namespace, name)
            if rollout is None:
                return None
            return self._step(rollout, command, to_revision)

    def _step(self, rollout: Rollout, command: str | None,
              to_revision: int | None = None) -> Decision:
        ns = rollout.metadata.namespace
        referenced = None
        if rollout.spec.workload_ref is not None:
            referenced = self.reader.deployment(ns, rollout.spec.workload_ref.name)
            run = workload_ref.resolved(rollout, referenced)
            if isinstance(run, str):
                return self._invalid(rollout, run)
            rollout = run
        view = View(
            deployment=lambda n: self.reader.deployment(ns, n),
            workload=lambda n: self.reader.workload(ns, n),
            routing_object=lambda kind, n: self.reader.routing_object(ns, kind, n),
            cluster_object=lambda kind, n: self.reader.routing_object("", kind, n),
        )
        state = ArgoState.from_status(rollout.status)
        now = self.clock()
        if command is None and self.fail_fast is not None:
            reason = self.fail_fast.verdict(rollout, state)
            if reason is not None:  # aborted as on a failed analysis, this very tick
                log.info("Rollout %s/%s aborted: %s", ns, rollout.metadata.name, reason)
                state = self._aborted(state, now, reason)
        kind = BlueGreenTick if rollout.blue_green is not None else None
        decision = decide(rollout, state, view, now, command, kind, to_revision)
        if decision.refused:
            return decision
        edit = {k: v for k, v in (("paused", decision.paused),
                                  ("template", decision.template),
                                  ("restartAt", decision.restart_at)) if v is not None}
        if edit:
            problem = self._write_spec(rollout, edit)
            if problem:
                return Decision(state, refused=problem)
        canary = rollout.spec.strategy.canary
        status = decision.state.to_status(canary.canary_service if canary else None,
                                          canary.stable_service if canary else None)
        if status != rollout.status:
            self.writer.put_rollout_status(ns, rollout.metadata.name, status)
        if referenced is not None:
            scaled = workload_ref.scaled(rollout, referenced, decision.state)
            decision.objects.extend([scaled] if scaled is not None else [])
        self._write(ns, decision)
        return decision

    @staticmethod
    def _aborted(state: ArgoState, now: float, reason: str) -> ArgoState:
        """``state`` aborted now for ``reason`` (what a failed analysis run does)."""
        out = state.copy()
        out.abort, out.aborted_at, out.abort_reason = True, now, reason
        out.pause_start, out.inconclusive = None, False
        return out

    def _invalid(self, rollout: Rollout, problem: str) -> Decision:
        """The Rollout cannot run (its workloadRef): Degraded with the reason, nothing
        else moves."""
        state = ArgoState.from_status(rollout.status)
        state.phase, state.message = "Degraded", f"InvalidSpec: {problem}"
        status = state.to_status()
        if status != rollout.status:
            self.writer.put_rollout_status(rollout.metadata.namespace,
                                           rollout.metadata.name, status)
        return Decision(state)

    def _write_spec(self, rollout: Rollout, edit: dict[str, Any]) -> str:
        """Write spec.paused, spec.template or spec.restartAt before the status: the Rollout write
        carries the stored resourceVersion, which the status write would move on. A
        problem, or ""."""
        ns, name = rollout.metadata.namespace, rollout.metadata.name
        body = self.reader.routing_object(ns, "Rollout", name)
        if body is None:
            return f"Rollout {ns}/{name} is gone"
        body.pop("status", None)
        body.setdefault("spec", {}).update(edit)
        try:
            self.writer.apply([body])
        except WriteError as exc:
            return f"spec.{', spec.'.join(edit)} could not be written: {exc}"
        return ""

    def _write(self, namespace: str, decision: Decision) -> None:
        # one write per object, the tick's last version of it (an apply may not name an
        # object twice)
        last = {(o["kind"], o["metadata"]["name"]): o for o in decision.objects}
        objects = [o for o in last.values() if self._differs(namespace, o)]
        self.last_write_error = None
        try:
            if objects:
                self.writer.apply(objects)
            if decision.deletes:
                self.writer.delete(namespace, decision.deletes)
        except WriteError as exc:
            # The state is persisted; the next tick derives these writes again.
            self.last_write_error = str(exc)
            log.warning("Argo Rollout write refused: %s", exc)

    def _differs(self, namespace: str, obj: dict[str, Any]) -> bool:
        """Whether ``obj`` changes the stored object (a revision Deployment; the user's
        routing objects are compared when they are edited)."""
        if obj.get("kind") != "Deployment":
            return True
        stored = self.reader.deployment(namespace, obj["metadata"]["name"])
        return stored is None or traffic.changed(obj, stored)

    def deleted(self, namespace: str, name: str, status: dict[str, Any] | None) -> None:
        """A Rollout was deleted: its revisions' Deployments go with it (Argo's
        ReplicaSets are deleted with their owner); the user's routing objects keep the
        split they last had, as with Argo."""
        if self.fail_fast is not None:
            self.fail_fast.forget(namespace, name)
        st = ArgoState.from_status(status)
        hashes = {h for h in (st.current_pod_hash, st.stable_rs, *st.old_revisions) if h}
        refs = [("Deployment", f"{name}-{h}") for h in sorted(hashes)]
        refs += [("AnalysisRun", run) for run in st.runs]  # Argo's runs go with their owner
        if refs:
            self.writer.delete(namespace, refs)

"""The thin shell around the state machine: read, decide, persist, write.

Order matters for crash safety. The new state (PutStatus) and the generated objects that
changed are written in one store commit, so they are persisted together or not at all;
when the objects are refused the state is still persisted alone, and the next tick
re-derives the very same objects from it and writes them again, so traffic only ever
moves forward to where the recorded state says it is, never back and forth. One commit
is also the fastest way a rollback's route reaches the proxies. The target Deployment
is written in its own batch because it carries the user's resourceVersion: a conflict
with a concurrent user apply must not hold back a route change (a rollback).
Alerts go last, after the state and the objects are written and outside the Canary's
lock: a slow chat service delays only this Canary's next tick (each Canary ticks on its
own worker), never a command or another Canary, and what it is told has already
happened.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from meshpilot.api.flagger import Canary
from meshpilot.delivery import configs
from meshpilot.delivery import objects as gen
from meshpilot.delivery.alert_queue import QueuedAlerts
from meshpilot.delivery.alerts import AlertIntent, AlertSender
from meshpilot.delivery.configs import ConfigKey
from meshpilot.delivery.keyed_locks import KeyedLocks
from meshpilot.delivery.machine import Decision, Observed, Sensors, Settings, reconcile
from meshpilot.delivery.notifiers import AlertPoster, HttpAlertPoster
from meshpilot.delivery.ports import (
    Clock,
    ClusterReader,
    LiveCounts,
    ObjectWriter,
    WorkloadStatus,
    WriteError,
)
from meshpilot.delivery.providers import MetricProvider, MetricsSource
from meshpilot.delivery.state import RolloutState
from meshpilot.delivery.webhooks import WebhookCaller

log = logging.getLogger(__name__)
timeline = logging.getLogger("meshpilot.timeline")
"""Stage times of a tick (``time.monotonic``), at DEBUG for benchmarks."""


def _canonical(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind")), str(meta.get("namespace")), str(meta.get("name"))


class RolloutController:
    """Steps Canaries. Call ``tick`` on every Canary/Deployment change and on a timer
    (e.g. every second); ``command`` carries out promote/abort/pause/resume/retry.

    Different Canaries may be stepped at the same time from different threads (see
    ``workers``), so a webhook that takes its whole timeout for one Canary holds up no
    other. Invariant: a Canary's ticks, commands and clean-up never overlap; they are
    serialised by that Canary's lock.
    """

    def __init__(
        self,
        clock: Clock,
        writer: ObjectWriter,
        reader: ClusterReader,
        metrics: MetricsSource,
        webhooks: WebhookCaller,
        providers: MetricProvider | None = None,
        settings: Settings | None = None,
        live: LiveCounts | None = None,
        alerts: AlertPoster | None = None,
    ) -> None:
        self.clock = clock
        self.writer = writer
        self.reader = reader
        self.sensors = Sensors(metrics, webhooks, providers, reader.metric_template,
                               reader.secret_data, live)
        self.settings = settings or Settings()
        self.alerts = AlertSender(reader.alert_provider, reader.secret_data,
                                  alerts or HttpAlertPoster())
        self.queued_alerts = QueuedAlerts(self.alerts)
        self._written: dict[tuple[str, str, str], str] = {}
        self._written_lock = threading.Lock()
        self._locks = KeyedLocks()  # one per Canary: its steps stay serial
        self.last_write_error: str | None = None
        """The refusal of the last write (of whichever Canary wrote last), or None."""

    def _lock_of(self, namespace: str, name: str) -> threading.Lock:
        return self._locks.of(namespace, name)

    def tick(self, namespace: str, name: str) -> Decision | None:
        """Advance one Canary by one tick; None when the Canary does not exist."""
        return self._step(namespace, name, None, self.alerts.send)

    def command(self, namespace: str, name: str, command: str) -> Decision | None:
        """Carry out a user command now; ``Decision.refused`` says why it could not. Its
        alerts are sent after the answer, off the caller's thread."""
        return self._step(namespace, name, command, self.queued_alerts.submit)

    def close(self, timeout: float) -> None:
        """Send the alerts still queued (within ``timeout``), then stop sending."""
        if not self.queued_alerts.close(timeout):
            log.warning("alerts still queued after %.0f s were not sent", timeout)

    def _step(self, namespace: str, name: str, command: str | None,
              send: Callable[[Canary, Sequence[AlertIntent]], object]) -> Decision | None:
        """One step, then its alerts through ``send``: at once on the ticking thread, or
        queued when a person's command waits for the answer."""
        stepped = self._step_locked(namespace, name, command)
        if stepped is None:
            return None
        canary, decision = stepped
        if decision.alerts:
            send(canary, decision.alerts)
        return decision

    def _step_locked(self, namespace: str, name: str, command: str | None
                     ) -> tuple[Canary, Decision] | None:
        started = time.monotonic()
        with self._lock_of(namespace, name):
            canary = self.reader.canary(namespace, name)
            if canary is None:
                return None
            state = RolloutState.from_status(canary.status)
            target_name = canary.spec.target_ref.name
            target = self.reader.deployment(namespace, target_name)
            primary = self.reader.workload(namespace, f"{target_name}-primary")
            observed = Observed(
                target=target,
                primary=primary,
                canary=self.reader.workload(namespace, target_name),
                configs=self._configs(namespace, target),
                scalers=self._scalers(canary, primary),
            )
            decision = reconcile(
                canary, observed, state, self.clock(), self.sensors, command, self.settings
            )
            if decision.refused:
                return canary, decision
            decided = time.monotonic()
            new_status = decision.state.to_status()
            changed = new_status != state.to_status() or not canary.status
            stored = self._write(decision.objects,
                                 (namespace, name, new_status) if changed else None)
            if timeline.isEnabledFor(logging.DEBUG):
                timeline.debug("%.4f tick %s/%s start=%.4f decided=%.4f stored=%.4f phase=%s "
                               "weight=%d", time.monotonic(), namespace, name, started,
                               decided, stored, decision.state.phase,
                               decision.state.canary_weight)
            return canary, decision

    def _scalers(self, canary: Canary, primary: WorkloadStatus) -> gen.Scalers:
        """The target's autoscaler, read only for a Canary with an autoscalerRef."""
        ref = canary.spec.autoscaler_ref
        if ref is None:
            return gen.Scalers()
        return gen.Scalers(self.reader.autoscaler(canary.metadata.namespace, ref.name),
                           primary.desired if primary.exists else None)

    def _configs(self, namespace: str, target: dict[str, Any] | None
                 ) -> dict[ConfigKey, dict[str, Any]]:
        """The tracked ConfigMaps and Secrets the target's pod template reads."""
        template = ((target or {}).get("spec") or {}).get("template") or {}
        out = {}
        for kind, name in sorted(configs.referenced(template)):
            body = self.reader.config(namespace, kind, name)
            if body is not None and configs.tracked(body):
                out[(kind, name)] = body
        return out

    def _write(self, objects: list[dict[str, Any]],
               status: tuple[str, str, dict[str, Any]] | None) -> float:
        """Write the step: the Canary's new ``status`` (namespace, name, body) and the
        generated objects that changed in one commit, then the target Deployment. One
        commit, not two: the route change of a rollback reaches the proxies a commit
        (an fsync, under load tens of ms) sooner, and a crash can never leave one
        without the other. When the objects are refused, the status is still written
        (the next tick writes them again). Returns when the first commit was done."""
        owned = [o for o in objects if (o.get("metadata") or {}).get("annotations", {})
                 .get(gen.CANARY_ANNOTATION)]
        target = [o for o in objects if o not in owned]
        with self._written_lock:
            changed = [o for o in owned if self._written.get(_key(o)) != _canonical(o)]
        self.last_write_error = None
        if changed and status is not None:
            self._try_apply(changed, cache=True, status=status)
        elif status is not None:
            self.writer.put_status(*status)
        elif changed:
            self._try_apply(changed, cache=True)
        stored = time.monotonic()
        if target:
            self._try_apply(target, cache=False)
        return stored

    def _try_apply(self, batch: list[dict[str, Any]], *, cache: bool,
                   status: tuple[str, str, dict[str, Any]] | None = None) -> None:
        try:
            if status is not None:
                self.writer.apply_with_status(batch, *status)
            else:
                self.writer.apply(batch)
        except WriteError as exc:
            self.last_write_error = str(exc)
            log.warning("delivery write refused: %s", exc)
            if status is not None:  # the step itself is recorded; its objects come again
                self.writer.put_status(*status)
            return
        if cache:
            with self._written_lock:
                for obj in batch:
                    self._written[_key(obj)] = _canonical(obj)

    def forget(self) -> None:
        """Drop the write cache (e.g. after the store was restored from a backup)."""
        with self._written_lock:
            self._written.clear()

    def deleted(self, canary: Canary) -> None:
        """The Canary was deleted: with revertOnDeletion, hand traffic back to the target.

        The target is scaled back up and the apex Service re-pointed at its pods before
        the generated objects are removed. Without revertOnDeletion nothing is touched:
        the primary keeps serving (safer than Kubernetes' garbage collection, which
        deletes it).
        """
        if not canary.spec.revert_on_deletion:
            return
        with self._lock_of(canary.metadata.namespace, canary.metadata.name):
            self._revert(canary)

    def _revert(self, canary: Canary) -> None:
        namespace = canary.metadata.namespace
        state = RolloutState.from_status(canary.status)
        target = self.reader.deployment(namespace, canary.spec.target_ref.name)
        if target is not None:
            key, value = gen.selector_label(target)
            apex = gen.services(canary, target)[0]
            apex["spec"]["selector"] = {key: value}
            self.writer.apply([apex])
            scaled = gen.reverted_target(target, state)
            if scaled is not None:
                self.writer.apply([scaled])
        owned = [(k, n) for k, n in gen.owned_names(canary, state)
                 if n != canary.service_names[0] or k != "Service"]
        self.writer.delete(namespace, owned)
        with self._written_lock:
            for kind, obj_name in owned:
                self._written.pop((kind, namespace, obj_name), None)

"""One proxy's ADS stream: its protocol state, and the rounds that bring it up to date.

A stream has three threads: the gRPC handler (yields responses from a queue), a reader
(consumes requests: subscriptions, ACKs, NACKs) and a sync worker (runs update rounds
through the make-before-break phases planned by :func:`meshpilot.xds.cache.plan_update`).
All state sits behind one Condition; phases wait on it for ACKs.

The worker never sends directly: it *stages* a view per type and calls ``_flush``, which
diffs the staged view against what the proxy is believed to have and sends what differs.
Requests that change a subscription call ``_flush`` too, so a proxy asking for the
endpoints of a cluster it just learnt gets them from the currently staged view.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from envoy.service.discovery.v3 import discovery_pb2

from meshpilot.mesh.model import ProxyNode
from meshpilot.xds.cache import (
    WILDCARD,
    Entry,
    EntryView,
    Phase,
    Push,
    Subscription,
    apply_push,
    consistency_problems,
    delta_push,
    plan_update,
    sorted_types,
    sotw_push,
    to_entries,
    view_changes,
    view_digest,
)
from meshpilot.xds.status import ProxyStatus, SentRecord, TypeStatus
from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    FULL_STATE_TYPES,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    Resources,
)

log = logging.getLogger(__name__)

Api = Literal["sotw", "delta"]
_DEPENDS_ON: dict[str, tuple[str, ...]] = {
    ENDPOINT: (CLUSTER,),
    SCOPED_ROUTE: (LISTENER,),
    ROUTE: (LISTENER, SCOPED_ROUTE),
}
"""A rejected type: the proxy will not ask for what it would have named (routes of a
rejected listener or scope), so a phase does not wait for those."""


@dataclass
class _TypeState:
    subs: Subscription = field(default_factory=Subscription)
    requested: bool = False
    force: bool = False  # an initial request still waits for its answer
    sent: dict[str, str] = field(default_factory=dict)  # what the proxy has: name -> version
    acked: dict[str, str] = field(default_factory=dict)  # ACKed: name -> version
    nonce: str = ""
    version: str = ""
    answered: bool = True  # the last response was ACKed or NACKed
    last_push: Push | None = None
    last_record: SentRecord | None = None
    acked_version: str | None = None
    nack: str | None = None
    nack_count: int = 0
    last_ack_at: float | None = None
    # Delta only: the staged view ``sent`` equals (visible part, by version) after the last
    # flush, so the next flush sends the names that changed since, not a full diff.
    synced: Mapping[str, Entry] | None = None
    # The staged view found fully ACKed by the last settle check (re-checked by its diff).
    settled: Mapping[str, Entry] | None = None

    def resubscribed(self) -> None:
        self.synced = self.settled = None


class ProxyStream:
    """State of one ADS stream from one proxy."""

    def __init__(
        self,
        *,
        stream_id: str,
        node: ProxyNode,
        api: Api,
        send: Callable[[Any], None],
        resources_for: Callable[[ProxyNode], Resources],
        notify: Callable[[], None],
        phase_timeout: float = 5.0,
        log_size: int = 2000,
        first_sync_gate: threading.Semaphore | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.node = node
        self.api: Api = api
        self.connected_at = time.time()
        self.mesh_version = -1
        self._send = send
        self._resources_for = resources_for
        self._notify = notify
        self._gate = first_sync_gate
        self._holds_gate = False
        self._phase_timeout = phase_timeout
        self._cond = threading.Condition()
        self._types: dict[str, _TypeState] = {}
        self._staged: dict[str, dict[str, Entry]] = {}
        self._digests: dict[str, str] = {}  # type -> view_digest of the staged view
        self._nonces = itertools.count(1)
        self._log: deque[SentRecord] = deque(maxlen=log_size)
        self._closed = False
        self._in_round = False
        self._candidate: int | None = None
        self._round_version = 0
        self._phase = ""
        self._want: int = 0
        self._wake = threading.Event()
        self._worker = threading.Thread(
            target=self._run, name=f"xds-sync-{node.id}", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, version: int) -> None:
        self.trigger(version)
        self._worker.start()

    def trigger(self, version: int) -> None:
        """Bring the proxy to ``version``; coalesces with a round already running."""
        with self._cond:
            self._want = version
            self._wake.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake.set()
        self._release_gate()

    def _release_gate(self) -> None:
        with self._cond:
            held, self._holds_gate = self._holds_gate, False
        if held and self._gate is not None:
            self._gate.release()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- requests ----------------------------------------------------------------------
    def handle(self, request: Any) -> None:
        with self._cond:
            if self.api == "sotw":
                self._on_sotw(request)
            else:
                self._on_delta(request)
            self._maybe_settle()
            self._cond.notify_all()
        self._notify()

    def _type(self, type_url: str) -> _TypeState:
        ts = self._types.get(type_url)
        if ts is None:
            ts = self._types[type_url] = _TypeState()
        return ts

    def _on_sotw(self, req: discovery_pb2.DiscoveryRequest) -> None:
        t = req.type_url
        ts = self._type(t)
        names = set(req.resource_names)
        if not req.response_nonce:
            # Initial request for this type (new stream): answer with the current view.
            ts.requested = True
            ts.subs = Subscription(
                wildcard=(not names and t in FULL_STATE_TYPES) or WILDCARD in names,
                names=names - {WILDCARD},
            )
            ts.sent = {}
            ts.force = True
            ts.resubscribed()
            self._flush(t)
            return
        if req.response_nonce != ts.nonce:
            return  # stale: a newer response is on its way; its ACK will carry the names
        if req.HasField("error_detail") and (req.error_detail.message or req.error_detail.code):
            self._record_nack(ts, req.error_detail.message or f"code {req.error_detail.code}")
        elif req.version_info == ts.version and not ts.answered:
            self._record_ack(ts, req.version_info)
        if not ts.subs.wildcard:
            wanted = names - {WILDCARD}
            if WILDCARD in names and t in FULL_STATE_TYPES:
                ts.subs.wildcard = True
                ts.resubscribed()
            if wanted != ts.subs.names:
                ts.resubscribed()
                for n in (wanted - ts.subs.names) | (ts.subs.names - wanted):
                    ts.sent.pop(n, None)  # newly requested ones must be sent again
                ts.subs.names = wanted
        self._flush(t)

    def _on_delta(self, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        t = req.type_url
        ts = self._type(t)
        subscribe = set(req.resource_names_subscribe)
        unsubscribe = set(req.resource_names_unsubscribe)
        if subscribe or unsubscribe or not ts.requested:
            ts.resubscribed()
        if not ts.requested:
            ts.requested = True
            ts.subs = Subscription(wildcard=not subscribe and t in FULL_STATE_TYPES)
            # Reconnect: what the proxy already has is not sent again at the same version.
            ts.sent = dict(req.initial_resource_versions)
            ts.acked = dict(req.initial_resource_versions)
            ts.force = True
        else:
            for n in subscribe:
                ts.sent.pop(n, None)  # a (re)subscribed resource must be provided
        if WILDCARD in subscribe:
            ts.subs.wildcard = True
        if WILDCARD in unsubscribe:
            ts.subs.wildcard = False
        ts.subs.names |= subscribe - {WILDCARD}
        ts.subs.names -= unsubscribe
        for n in unsubscribe:
            if not ts.subs.wants(n):
                ts.sent.pop(n, None)
        if req.response_nonce and req.response_nonce == ts.nonce and not ts.answered:
            if req.HasField("error_detail") and (
                req.error_detail.message or req.error_detail.code
            ):
                self._record_nack(ts, req.error_detail.message or f"code {req.error_detail.code}")
            else:
                self._record_ack(ts, ts.version)
        self._flush(t)

    def _record_ack(self, ts: _TypeState, version: str) -> None:
        ts.answered = True
        ts.acked_version = version
        ts.nack = None
        ts.last_ack_at = time.time()
        push = ts.last_push
        if push is not None:
            if push.full_state:
                ts.acked = {n: e.version for n, e in push.resources.items()}
            else:
                ts.acked.update({n: e.version for n, e in push.resources.items()})
                for n in push.removed:
                    ts.acked.pop(n, None)
            ts.last_push = None  # answered: no need to keep its resources alive
        if ts.last_record is not None:
            ts.last_record.acked_at = time.monotonic()

    def _record_nack(self, ts: _TypeState, message: str) -> None:
        # The proxy keeps its last good config. ``sent`` keeps the rejected versions, so
        # the bad config is not sent again until the next real change.
        ts.answered = True
        ts.last_push = None
        ts.nack = message
        ts.nack_count += 1
        if ts.last_record is not None:
            ts.last_record.nacked = message
        log.warning("proxy %s rejected %s %s: %s", self.node.id, ts.last_record and
                    ts.last_record.type_url, ts.version, message)

    # --- sending ------------------------------------------------------------------------
    def _flush(self, type_url: str) -> None:
        """Send what differs between the staged view and what the proxy has (lock held)."""
        ts = self._types.get(type_url)
        staged = self._staged.get(type_url)
        if ts is None or not ts.requested or staged is None or self._closed:
            return
        if self.api == "sotw":
            push = sotw_push(type_url, staged, ts.subs, ts.sent, force=ts.force)
        elif ts.synced is not None and not ts.force:
            push = self._delta_since(ts, staged)
        else:
            push = delta_push(type_url, staged, ts.subs, ts.sent, force=ts.force)
        ts.force = False
        if self.api == "delta":
            ts.synced = staged
        if push is None:
            return
        nonce = f"{self.stream_id}-{next(self._nonces)}"
        version = f"{self._round_version}-{self._digests[type_url]}"
        if self.api == "sotw":
            msg: Any = discovery_pb2.DiscoveryResponse(
                version_info=version, type_url=type_url, nonce=nonce,
                resources=[e.packed for e in push.resources.values()],
            )
        else:
            msg = discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=version, type_url=type_url, nonce=nonce,
                resources=[
                    discovery_pb2.Resource(name=n, version=e.version, resource=e.packed)
                    for n, e in push.resources.items()
                ],
                removed_resources=list(push.removed),
            )
        apply_push(ts.sent, push, ts.subs)
        ts.nonce, ts.version, ts.answered, ts.last_push = nonce, version, False, push
        record = SentRecord(type_url, nonce, version, push.names(), push.removed,
                            time.monotonic(), phase=self._phase)
        ts.last_record = record
        self._log.append(record)
        self._send(msg)

    @staticmethod
    def _delta_since(ts: _TypeState, staged: Mapping[str, Entry]) -> Push | None:
        """What :func:`delta_push` would answer, from the names that changed between the
        view ``sent`` is in sync with and ``staged``: O(changes), not O(config)."""
        changed, removed = view_changes(ts.synced or {}, staged)
        if not changed and not removed:
            return None
        wants = ts.subs.wants
        upserts = {n: staged[n] for n in sorted(changed) if wants(n)
                   and ts.sent.get(n) != staged[n].version}
        gone = tuple(sorted(n for n in removed if n in ts.sent and wants(n)))
        return Push(upserts, gone) if upserts or gone else None

    # --- update rounds -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._cond:
                if self._closed:
                    return
                self._wake.clear()
                version = self._want
            try:
                self._round(version)
            except Exception:
                log.exception("xDS update of proxy %s failed", self.node.id)

    def _round(self, version: int) -> None:
        try:
            resources = self._resources_for(self.node)
        except Exception:
            log.exception("computing resources for proxy %s failed", self.node.id)
            return
        target = to_entries(resources)
        if not all(isinstance(v, EntryView) for v in resources.values()):
            # prebuilt views (meshpilot.xds.shared) were checked once, where they were built
            for problem in consistency_problems(target):
                log.warning("proxy %s config at version %s: %s", self.node.id, version,
                            problem)
        self._release_gate()  # a later round: the first sync is over, ACKed or not
        if self._gate is not None and not self._staged:
            # A first sync sends the whole config: bound how many are in flight at once
            # (held until the proxy has ACKed it, or the stream ends), so a thousand
            # proxies connecting together do not queue a thousand full configs.
            while not self._gate.acquire(timeout=0.5):
                if self._closed:
                    return
            self._holds_gate = True
            if self._closed:
                self._release_gate()
                return
        with self._cond:
            self._in_round = True
            self._round_version = version
            phases = plan_update(self._staged, target)
        try:
            for phase in phases:
                if not self._run_phase(phase):
                    return
        finally:
            with self._cond:
                self._in_round = False
                self._phase = ""
                self._candidate = version
                self._maybe_settle()
                self._cond.notify_all()
            self._notify()

    def _run_phase(self, phase: Phase) -> bool:
        """Stage, send, wait for the ACKs (or the timeout); False if the stream closed."""
        with self._cond:
            if self._closed:
                return False
            self._phase = phase.name
            marks = {t: ts.nack_count for t, ts in self._types.items()}
            types = sorted_types(phase.stage)
            for t in types:
                self._staged[t] = phase.stage[t]
                self._digests[t] = view_digest(phase.stage[t])
                ts = self._types.get(t)
                if ts is not None and phase.resend.get(t):
                    ts.resubscribed()
                    for n in phase.resend[t]:
                        ts.sent.pop(n, None)
            for t in types:
                self._flush(t)
            deadline = time.monotonic() + self._phase_timeout
            failed: set[str] = set()
            while not self._phase_done(phase, marks, failed):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("proxy %s: phase %s not ACKed within %.1fs; continuing",
                                self.node.id, phase.name, self._phase_timeout)
                    break
                self._cond.wait(remaining)
                if self._closed:
                    return False
        return True

    def _phase_done(self, phase: Phase, marks: dict[str, int], failed: set[str]) -> bool:
        for t in sorted_types(phase.expect):
            ts = self._types.get(t)
            if ts is not None and ts.nack_count != marks.get(t, 0):
                failed.add(t)  # rejected: the proxy stays on its last good config
            if t in failed or any(d in failed for d in _DEPENDS_ON.get(t, ())):
                continue
            names = phase.expect[t]
            if ts is None or not ts.requested:
                if names:
                    return False
                continue
            if not ts.answered:
                return False
            if any(ts.acked.get(n) != v for n, v in names.items()):
                return False
        return True

    def _settled(self) -> bool:
        """The proxy has ACKed everything staged for it, with no NACK outstanding."""
        for t, staged in self._staged.items():
            ts = self._types.get(t)
            if ts is None or not ts.requested:
                if staged and t in FULL_STATE_TYPES:
                    return False
                continue
            if not ts.answered or ts.nack is not None:
                return False
            if ts.settled is staged:
                continue
            if ts.settled is not None:  # only what changed since it was last settled
                changed = view_changes(ts.settled, staged)[0]
                check = ((n, staged[n]) for n in changed if ts.subs.wants(n))
            else:
                check = iter(ts.subs.visible(staged).items())
            if any(ts.acked.get(n) != e.version for n, e in check):
                return False
            ts.settled = staged
        return True

    def _maybe_settle(self) -> None:
        if not self._in_round and self._candidate is not None and self._settled():
            self.mesh_version = self._candidate
            self._candidate = None
            if self._holds_gate and self._gate is not None:
                self._holds_gate = False
                self._gate.release()

    # --- reading ------------------------------------------------------------------------
    def status(self) -> ProxyStatus:
        with self._cond:
            types = {
                t: TypeStatus(
                    type_url=t, sent_version=ts.version, acked_version=ts.acked_version,
                    nonce=ts.nonce, nack=ts.nack, resources=len(ts.sent),
                    last_ack_at=ts.last_ack_at,
                )
                for t, ts in self._types.items() if ts.requested
            }
            return ProxyStatus(
                node=self.node, connected=not self._closed, api=self.api,
                mesh_version=self.mesh_version, types=types, connected_at=self.connected_at,
            )

    def sent_log(self) -> list[SentRecord]:
        with self._cond:
            return [SentRecord(**vars(r)) for r in self._log]

    def acked(self, version: int) -> bool:
        return not self._closed and self.mesh_version >= version

    def subscriptions(self) -> dict[str, set[str] | None]:
        """type_url -> subscribed names, None for a wildcard subscription."""
        with self._cond:
            return {t: None if ts.subs.wildcard else set(ts.subs.names)
                    for t, ts in self._types.items() if ts.requested}


"""One proxy's ADS stream: its protocol state, and the rounds that bring it up to date.

Every stream lives on the xDS server's event loop (one thread for all of them), so its
state needs no lock and a thousand streams cost a thousand small objects, not three
thousand threads. Requests are handled as they arrive (:meth:`ProxyStream.handle`:
subscriptions, ACKs, NACKs). The server hands a stream each new config with its version
(:meth:`ProxyStream.trigger`); an update round goes through the make-before-break phases
planned by :class:`~meshpilot.xds.planner.PushPlanner`, each phase waiting for the ACKs
it needs before the next. A round is driven by events (a trigger, a request, a phase's
timer), not by a task of its own, so moving a thousand proxies on costs a thousand
function calls, not a thousand task switches.

A round never sends directly: it *stages* a resource set per type and calls ``_flush``,
which works out what differs between the staged set and what the proxy holds and sends
that. Requests that change a subscription flush too, so a proxy asking for the endpoints
of a cluster it has just learnt gets them from the set staged now. What a proxy holds and
has ACKed are :class:`~meshpilot.xds.holdings.Holding` values pointing at the shared
staged sets: per stream, memory and work are proportional to what differs from them, not
to the config's size. Responses are assembled from each resource's wire bytes, encoded
once for all streams.
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from envoy.service.discovery.v3 import discovery_pb2

from meshpilot.mesh.model import ProxyNode
from meshpilot.xds import wire
from meshpilot.xds.deadlines import Deadlines
from meshpilot.xds.first_sync import FirstSyncGate
from meshpilot.xds.holdings import NOTHING, WILDCARD, Holding, Push, Subscription
from meshpilot.xds.planner import Phase, PushPlanner
from meshpilot.xds.resources import ProxyConfig, ResourceSet
from meshpilot.xds.sequence import PUSH_SEQUENCE
from meshpilot.xds.status import ProxyStatus, Refusal, SentRecord, TypeStatus
from meshpilot.xds.types import FULL_STATE_TYPES

log = logging.getLogger(__name__)
timeline = logging.getLogger("meshpilot.timeline")
"""Stage times (``time.monotonic``) of pushes and ACKs, logged at DEBUG when a benchmark
asks for a timeline (``MESHPILOT_TIMELINE=1``); silent otherwise."""

Api = Literal["sotw", "delta"]
_ASKED_THROUGH: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {rule.type_url: rule.asked_through for rule in PUSH_SEQUENCE})
"""The types without which the proxy would not ask for a type: when one of those is
rejected, the proxy will not ask for what it would have named (routes of a rejected
listener or scope), so a phase does not wait for those."""


@dataclass(slots=True)
class _TypeState:
    subs: Subscription = NOTHING
    requested: bool = False
    force: bool = False  # an initial request still waits for its answer
    sent: Holding = field(default_factory=Holding)  # what the proxy has been given
    acked: Holding = field(default_factory=Holding)  # what it has accepted
    pending: Holding | None = None  # what it holds once it ACKs the last response
    last_push: Push | None = None  # the last response, until answered
    rejected: dict[str, str] = field(default_factory=dict)
    """Names of NACKed responses -> the version the proxy kept (``""``: none), until sent
    again: an ACK of a later response does not mean the proxy took these."""
    nonce: str = ""
    version: str = ""
    answered: bool = True  # the last response was ACKed or NACKed
    last_record: SentRecord | None = None
    acked_version: str | None = None
    nack: str | None = None
    nack_count: int = 0
    last_ack_at: float | None = None


def _rejection(req: Any) -> str | None:
    """The proxy's error when its request NACKs a response (``error_detail`` set)."""
    if req.HasField("error_detail") and (req.error_detail.message or req.error_detail.code):
        return str(req.error_detail.message or f"code {req.error_detail.code}")
    return None


def _holds(acked: Holding, staged: ResourceSet | None, names: Mapping[str, str]) -> bool:
    """Whether ``acked`` is, without looking name by name, the very set the expected
    versions come from, with every expected name subscribed."""
    if staged is None or acked.base is not staged or acked.overrides:
        return False
    subs = acked.subscription
    return subs.wildcard or subs.names.issuperset(names)


_NO_MARKS: Mapping[str, int] = MappingProxyType({})  # a stream that never NACKed


class ProxyStream:
    """State of one ADS stream from one proxy. Loop thread only, except :meth:`acked`."""

    def __init__(
        self,
        *,
        stream_id: str,
        node: ProxyNode,
        api: Api,
        send: Callable[[bytes], None],
        notify: Callable[[], None],
        planner: PushPlanner | None = None,
        phase_timeout: float = 5.0,
        log_size: int = 256,
        first_sync_gate: FirstSyncGate | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.node = node
        self.api: Api = api
        self.connected_at = time.time()
        self.mesh_version = -1
        self._send = send
        self._notify = notify
        self._planner = planner if planner is not None else PushPlanner()
        """Plans and pushes shared with the server's other streams."""
        self._gate = first_sync_gate
        self._holds_gate = False
        self._phase_timeout = phase_timeout
        self._types: dict[str, _TypeState] = {}
        self._staged: dict[str, ResourceSet] = {}
        self._digests: dict[str, str] = {}  # type -> set_digest of the staged set
        self._nonces = itertools.count(1)
        self._log: deque[SentRecord] = deque(maxlen=log_size)
        self._closed = False
        self._in_round = False
        self._candidate: int | None = None
        self._round_version = 0
        self._phase = ""
        self._want: tuple[int, ProxyConfig] = (0, {})  # the latest version and config given
        self.refusal: Refusal | None = None
        """The last config refused for this proxy (it stays on its last good one), until
        a good one comes."""
        self.accepted: ProxyConfig | None = None
        """The last config given (checked consistent): the next is checked against it."""
        self._nacks = 0  # NACKs on this stream, all types
        self._again = False  # a trigger arrived during a round (or while gated)
        self._gated = False  # waiting for the first-sync gate
        self._phases: list[Phase] = []
        self._phase_at = 0  # index of the phase being waited for
        self._marks: Mapping[str, int] = _NO_MARKS
        self._failed: set[str] = set()
        self._deadlines = deadlines if deadlines is not None else Deadlines()
        """Where this stream's phase deadline is armed (the server's streams share one)."""

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, version: int, config: ProxyConfig) -> None:
        """Bring the proxy to ``config`` at ``version`` (call on the loop)."""
        self.trigger(version, config)

    def trigger(self, version: int, config: ProxyConfig) -> None:
        """Bring the proxy to ``config``, the consistent config of mesh ``version``;
        coalesces with a round already running (the next round starts when it ends, with
        the latest config)."""
        self._want = (version, config)
        self.accepted = config
        self.refusal = None
        if self._in_round or self._gated or self._closed:
            self._again = True
            return
        self._begin_round()

    def refuse(self, refusal: Refusal) -> None:
        """The config of a newer mesh version was refused for this proxy: it stays on the
        last one it was given, and its status says why."""
        self.refusal = refusal
        self._notify()

    def close(self) -> None:
        self._closed = True
        self._cancel_timer()
        self._release_gate()

    def _release_gate(self) -> None:
        held, self._holds_gate = self._holds_gate, False
        if held and self._gate is not None:
            self._gate.release()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- requests ----------------------------------------------------------------------
    def handle(self, request: Any) -> None:
        if self.api == "sotw":
            self._on_sotw(request)
        else:
            self._on_delta(request)
        if self._in_round:
            if self._progress():
                return  # the round ended, and said so
        else:
            self._maybe_settle()
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
            ts.subs = self._planner.subscription(
                (not names and t in FULL_STATE_TYPES) or WILDCARD in names,
                names - {WILDCARD})
            ts.sent = Holding()
            ts.force = True
            self._flush(t)
            return
        if req.response_nonce != ts.nonce:
            return  # stale: a newer response is on its way; its ACK will carry the names
        error = _rejection(req)
        if error is not None:
            self._record_nack(ts, error)
        elif req.version_info == ts.version and not ts.answered:
            self._record_ack(ts)
        if not ts.subs.wildcard:
            wanted = names - {WILDCARD}
            wildcard = WILDCARD in names and t in FULL_STATE_TYPES
            if wildcard or wanted != ts.subs.names:
                # newly requested names must be sent again, whatever the proxy had
                fresh = [n for n in wanted - ts.subs.names if n in ts.sent]
                if fresh:
                    ts.sent = ts.sent.with_versions(dict.fromkeys(fresh, ""))
                ts.subs = self._planner.subscription(wildcard, wanted)
        self._flush(t)

    def _on_delta(self, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        t = req.type_url
        ts = self._type(t)
        if ts.requested and not req.resource_names_subscribe and \
                not req.resource_names_unsubscribe:
            # The common request: an ACK (or NACK), no change of subscription.
            self._answer_delta(ts, req)
            staged = self._staged.get(t)
            if staged is not None and not ts.sent.is_exactly(staged, ts.subs):
                self._flush(t)
            return
        subscribe = set(req.resource_names_subscribe)
        unsubscribe = set(req.resource_names_unsubscribe)
        wildcard = ts.subs.wildcard
        if not ts.requested:
            ts.requested = True
            wildcard = not subscribe and t in FULL_STATE_TYPES
            # Reconnect: what the proxy already has is not sent again at the same version.
            ts.sent = ts.acked = Holding.of(req.initial_resource_versions)
            ts.force = True
        elif subscribe:  # a (re)subscribed resource must be provided, even if held
            held = [n for n in subscribe if n != WILDCARD and n in ts.sent]
            if held:
                ts.sent = ts.sent.with_versions(dict.fromkeys(held, ""))
        if WILDCARD in subscribe:
            wildcard = True
        if WILDCARD in unsubscribe:
            wildcard = False
        if subscribe or unsubscribe or wildcard != ts.subs.wildcard:
            ts.subs = self._planner.subscription(
                wildcard, (ts.subs.names | (subscribe - {WILDCARD})) - unsubscribe)
        self._answer_delta(ts, req)
        self._flush(t)

    def _answer_delta(self, ts: _TypeState, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        """An ACK or NACK of the type's last response (a request naming an older nonce
        answers nothing)."""
        if req.response_nonce and req.response_nonce == ts.nonce and not ts.answered:
            error = _rejection(req)
            if error is None:
                self._record_ack(ts)
            else:
                self._record_nack(ts, error)

    def _record_ack(self, ts: _TypeState) -> None:
        ts.answered = True
        ts.acked_version = ts.version
        ts.nack = None
        ts.last_ack_at = time.time()
        if ts.pending is not None:
            ts.acked = ts.pending.with_versions(ts.rejected)
            ts.pending = None
        ts.last_push = None  # answered: no need to keep its resources alive
        if ts.last_record is not None:
            ts.last_record.acked_at = time.monotonic()
            if timeline.isEnabledFor(logging.DEBUG):
                timeline.debug("%.4f xds-ack node=%s type=%s version=%s", time.monotonic(),
                               self.node.id, ts.last_record.type_url.rsplit(".", 1)[-1],
                               ts.version)

    def _record_nack(self, ts: _TypeState, message: str) -> None:
        # The proxy keeps its last good config. ``sent`` keeps the rejected versions, so
        # the bad config is not sent again until the next real change.
        ts.answered = True
        push, ts.last_push, ts.pending = ts.last_push, None, None
        if push is not None:
            for n in (*push.resources, *push.removed):
                ts.rejected.setdefault(n, ts.acked.get(n, ""))
        ts.nack = message
        ts.nack_count += 1
        self._nacks += 1
        if ts.last_record is not None:
            ts.last_record.nacked = message
        log.warning("proxy %s rejected %s %s: %s", self.node.id, ts.last_record and
                    ts.last_record.type_url, ts.version, message)

    # --- sending ------------------------------------------------------------------------
    def _flush(self, type_url: str) -> None:
        """Send what differs between the staged set and what the proxy has."""
        ts = self._types.get(type_url)
        staged = self._staged.get(type_url)
        if ts is None or not ts.requested or staged is None or self._closed:
            return
        push, ts.sent = self._planner.push(type_url, self.api == "delta", staged, ts.subs,
                                           ts.sent, force=ts.force)
        ts.force = False
        if push is None:
            return
        nonce = f"{self.stream_id}-{next(self._nonces)}"
        version = f"{self._round_version}-{self._digests[type_url]}"
        self._send(wire.response(self.api, type_url, push, version, nonce))
        if push.full_state:
            ts.rejected.clear()
        elif ts.rejected:
            for n in (*push.resources, *push.removed):
                ts.rejected.pop(n, None)
        ts.nonce, ts.version, ts.answered = nonce, version, False
        ts.pending, ts.last_push = ts.sent, push
        record = SentRecord(type_url, nonce, version, push.logged, push.removed,
                            time.monotonic(), None, None, self._phase, len(push.resources))
        ts.last_record = record
        self._log.append(record)
        if timeline.isEnabledFor(logging.DEBUG):
            timeline.debug("%.4f xds-sent node=%s type=%s version=%s", record.sent_at,
                           self.node.id, type_url.rsplit(".", 1)[-1], version)

    # --- update rounds -------------------------------------------------------------------
    # A round is driven by events, not by a task: ``trigger`` begins it, each request
    # (``handle`` -> ``_progress``) or a phase's timer moves it on. A phase that needs no
    # ACK is passed at once.

    def _begin_round(self, granted: bool = False) -> bool:
        """Start a round to the latest config given. ``granted``: called by the first-sync
        gate with a slot for this stream; returns whether the slot was taken."""
        self._gated = False
        self._again = False
        if self._closed:
            return False
        version, target = self._want
        if granted:
            self._holds_gate = True
        elif not self._first_sync_allowed():
            return False
        self._in_round = True
        self._round_version = version
        self._phases = self._planner.plan(self._staged, target)
        self._phase_at = -1
        self._next_phase()
        return True

    def _first_sync_allowed(self) -> bool:
        """A first sync sends the whole config: at most so many are in flight at once
        (each holding its slot until its proxy has ACKed, or the stream ends), so a
        thousand proxies connecting together do not queue a thousand configs. A later
        round gives back the slot: the first sync is over, ACKed or not."""
        self._release_gate()
        if self._gate is None or self._staged:
            return True
        if not self._gate.acquire(lambda: self._begin_round(granted=True)):
            self._gated = True
            return False
        self._holds_gate = True
        return True

    def _next_phase(self) -> None:
        """Stage and send the next phase; end the round after the last one."""
        while not self._closed:
            self._phase_at += 1
            if self._phase_at >= len(self._phases):
                self._end_round()
                return
            phase = self._phases[self._phase_at]
            self._phase = phase.name
            # NACK counts at the phase's start (a stream that never NACKed needs none)
            self._marks = {t: ts.nack_count for t, ts in self._types.items()} \
                if self._nacks else _NO_MARKS
            self._failed = set()
            staging = phase.staging
            for t, view, digest, resend in staging:
                self._staged[t] = view
                self._digests[t] = digest
                if resend and (ts := self._types.get(t)) is not None:
                    ts.sent = ts.sent.with_versions(dict.fromkeys(resend, ""))
            for t, _, _, _ in staging:
                self._flush(t)
            if not self._phase_done(phase, self._marks, self._failed):
                self._deadlines.arm(self, self._phase_timeout, self._timed_out)
                return

    def _progress(self) -> bool:
        """After a request: move on if the phase waited for is done. True if that ended
        the round."""
        if self._closed or not 0 <= self._phase_at < len(self._phases):
            return False
        if self._phase_done(self._phases[self._phase_at], self._marks, self._failed):
            self._cancel_timer()
            self._next_phase()
            return not self._in_round
        return False

    def _timed_out(self) -> None:
        if self._closed or not self._in_round:
            return
        log.warning("proxy %s: phase %s not ACKed within %.1fs; continuing",
                    self.node.id, self._phase, self._phase_timeout)
        self._next_phase()

    def _cancel_timer(self) -> None:
        self._deadlines.disarm(self)

    def _end_round(self) -> None:
        self._in_round = False
        self._phase = ""
        self._phases = []
        self._candidate = self._round_version
        self._maybe_settle()
        self._notify()
        if self._again and not self._closed:
            self._begin_round()

    def _phase_done(self, phase: Phase, marks: Mapping[str, int], failed: set[str]) -> bool:
        for t in phase.expect_order:
            ts = self._types.get(t)
            if ts is not None and ts.nack_count and ts.nack_count != marks.get(t, 0):
                failed.add(t)  # rejected: the proxy stays on its last good config
            if failed and (t in failed or any(d in failed for d in _ASKED_THROUGH.get(t, ()))):
                continue
            names = phase.expect[t]
            if ts is None or not ts.requested:
                if names:
                    return False
                continue
            if not ts.answered:
                return False
            if names and not _holds(ts.acked, phase.stage.get(t), names) and any(
                    ts.acked.get(n) != v for n, v in names.items()):
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
            if ts.acked.is_exactly(staged, ts.subs):
                continue  # exactly what was staged: nothing to compare
            if next(ts.acked.differs(staged, ts.subs, self._planner.diffs), None) is not None:
                return False
        return True

    def _maybe_settle(self) -> None:
        if not self._in_round and self._candidate is not None and self._settled():
            self.mesh_version = self._candidate
            self._candidate = None
            if self._holds_gate:
                self._release_gate()

    # --- reading ------------------------------------------------------------------------
    def status(self) -> ProxyStatus:
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
            refusal=self.refusal,
        )

    def sent_log(self) -> list[SentRecord]:
        return [copy.copy(r) for r in self._log]

    def acked(self, version: int) -> bool:
        """Thread-safe: two plain reads."""
        return not self._closed and self.mesh_version >= version

    def subscriptions(self) -> dict[str, set[str] | None]:
        """type_url -> subscribed names, None for a wildcard subscription."""
        return {t: None if ts.subs.wildcard else set(ts.subs.names)
                for t, ts in self._types.items() if ts.requested}

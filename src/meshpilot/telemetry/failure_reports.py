"""The control plane's end of the canaries' answer reports: Envoy's access log service.

The sidecars of a Canary's target workload stream every answer as it is logged
(``xds.translate.failure_reports``), on the xDS server's port. This service counts them
per workload (answers, and failures: 500 and above) and tells its subscribers which
workload just failed a request, so the rollout is stepped at once instead of at its next
tick, and judged on these counts (:class:`ReportedCounts`) without a live read of the
sidecars' admin counters, which took 5-11 ms between the deciding failure and the
rollback.

Anyone who reaches the port can open a stream and name any node, so a stream is admitted
only when the node it names carries that node's report credential in its metadata
(``proxy.bootstrap.report_token``, derived from the proxy's xDS token and written into
its bootstrap; compared in constant time). A stream without it is refused
(UNAUTHENTICATED), logged, and its reports are dropped and counted
(``meshpilot_failure_reports_rejected_total`` on the telemetry's /metrics): only a
proxy holding that node's xDS credential can count towards a judgement. That credential
is bound to the workload identity the control plane gave the node
(``security.proxy_tokens``), and is recomputed from the node as the stream declares it:
a stream naming its own node with another workload's namespace, name or labels presents a
credential never issued, and is refused the same way. So the workload a report counts
for is the one the control plane bound to the node, never one the proxy chose.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import grpc
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import json_format

from meshpilot.mesh.model import ProxyNode, node_from_metadata
from meshpilot.proxy.bootstrap import REPORT_TOKEN_KEY, report_token

log = logging.getLogger(__name__)
timeline = logging.getLogger("meshpilot.timeline")

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
FAILED_FROM = 500
"""Answers from this status code on count as failures (as the ``5xx`` the admin counters'
``response_code`` label gives: fail-fast judges the same thing either way)."""
Subscriber = Callable[[str, str, int], None]
"""(namespace, workload, failed requests reported) -> None; called on the xDS server's
event loop, so it must only hand the work on (e.g. kick a worker)."""
Verify = Callable[[ProxyNode, "str | None"], bool]
"""(the node a stream declares, the report credential it presents) -> whether it is
that node's, issued for the identity it declares."""


def report_verifier(token_for: Callable[[ProxyNode], str]) -> Verify:
    """Check a report credential against the one derived from the xDS token
    ``token_for(node)`` issues for the node as declared (``ProxyTokens.for_proxy``)."""

    def verify(node: ProxyNode, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(report_token(token_for(node)).encode(), token.encode())

    return verify


@dataclass(frozen=True)
class ReportCounts:
    """What the service has seen since it started."""

    accepted: int = 0
    """Failed requests reported on admitted streams."""
    rejected: int = 0
    """Answers reported on refused streams (dropped)."""
    rejected_streams: int = 0
    answers: int = 0
    """Answers (any status) reported on admitted streams."""


class FailureReports:
    """The access log service, and who is told of each report (set after start-up: the
    delivery loop is built after the xDS server that serves this)."""

    def __init__(self, verify: Verify) -> None:
        self._verify = verify
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._counts = ReportCounts()
        self._by_workload: dict[tuple[str, str], tuple[int, int]] = {}
        """(namespace, workload) -> (answers, failures) reported since the start."""

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def counts(self) -> ReportCounts:
        with self._lock:
            return self._counts

    def reported(self, namespace: str, workload: str) -> tuple[int, int] | None:
        """(answers, failures) the workload's sidecars reported since this service
        started; None when none of them ever opened an admitted stream (nothing known)."""
        with self._lock:
            return self._by_workload.get((namespace, workload))

    def exposition(self) -> str:
        """The counts in Prometheus' text format (for the telemetry's /metrics)."""
        c = self.counts()
        rows = (("meshpilot_failure_reports_total", c.accepted,
                 "Failed requests canary sidecars reported on authenticated streams."),
                ("meshpilot_answer_reports_total", c.answers,
                 "Answers canary sidecars reported on authenticated streams."),
                ("meshpilot_failure_reports_rejected_total", c.rejected,
                 "Answer reports dropped: their stream had no valid credential."),
                ("meshpilot_failure_report_streams_rejected_total", c.rejected_streams,
                 "Failure report streams refused for want of a valid credential."))
        return "".join(f"# HELP {name} {text}\n# TYPE {name} counter\n{name} {value}\n"
                       for name, value, text in rows)

    def handler(self) -> grpc.GenericRpcHandler:
        """``StreamAccessLogs`` for a ``grpc.aio`` server."""
        return grpc.method_handlers_generic_handler(SERVICE, {
            "StreamAccessLogs": grpc.stream_unary_rpc_method_handler(
                self._stream,
                request_deserializer=als_pb2.StreamAccessLogsMessage.FromString,
                response_serializer=als_pb2.StreamAccessLogsResponse.SerializeToString),
        })

    async def _stream(self, messages: object, context: grpc.aio.ServicerContext
                      ) -> als_pb2.StreamAccessLogsResponse:
        workload: tuple[str, str] | None = None
        async for message in messages:  # type: ignore[attr-defined]
            entries = len(message.http_logs.log_entry)
            if message.HasField("identifier"):  # the first message names the node
                workload, refusal = self._admitted(message.identifier)
                if refusal is not None:
                    self._refuse(entries, context.peer(), refusal)
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)
            if workload is None:
                self._refuse(entries, context.peer(), "no node named before its reports")
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no node identifier")
            self._count(workload, message)  # type: ignore[arg-type]
        return als_pb2.StreamAccessLogsResponse()

    def _count(self, workload: tuple[str, str],
               message: als_pb2.StreamAccessLogsMessage) -> None:
        """Add an admitted message's answers to its workload's counts (the first
        message, even without entries, makes the workload known: zero so far), then tell
        the subscribers of its failures, if any: the counts are in before the tick."""
        entries = message.http_logs.log_entry
        failed = sum(1 for e in entries if e.response.response_code.value >= FAILED_FROM)
        with self._lock:
            answers, failures = self._by_workload.get(workload, (0, 0))
            self._by_workload[workload] = (answers + len(entries), failures + failed)
            c = self._counts
            self._counts = replace(c, accepted=c.accepted + failed,
                                   answers=c.answers + len(entries))
        if failed:
            self.report(*workload, failed)

    def _admitted(self, identifier: als_pb2.StreamAccessLogsMessage.Identifier
                  ) -> tuple[tuple[str, str] | None, str | None]:
        """(namespace, workload) of the node a stream names, or why it is refused."""
        node = identifier.node
        if not node.id:
            return None, "no node id"
        meta = json_format.MessageToDict(node.metadata)
        token = meta.get(REPORT_TOKEN_KEY)
        proxy = node_from_metadata(node.id, meta)
        if not self._verify(proxy, token if isinstance(token, str) else None):
            return None, (f"no valid {REPORT_TOKEN_KEY} for node {node.id} as it declares "
                          f"itself ({proxy.namespace}/{proxy.workload or '-'})")
        if not proxy.workload:
            return None, f"node {node.id} names no workload"
        return (proxy.namespace, proxy.workload), None

    def _refuse(self, entries: int, peer: str, reason: str) -> None:
        with self._lock:
            c = self._counts
            self._counts = replace(c, rejected=c.rejected + entries,
                                   rejected_streams=c.rejected_streams + 1)
        log.warning("refused a failure report stream from %s (%d reports dropped): %s",
                    peer, entries, reason)

    def report(self, namespace: str, workload: str, failed: int) -> None:
        """Tell every subscriber; one that raises does not keep the others from it."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(namespace, workload, failed)
            except Exception:
                log.exception("a failure report subscriber failed")


class LiveSource(Protocol):
    def live_counts(self, namespace: str, workload: str) -> tuple[int, int] | None: ...


class ReportedCounts:
    """A workload's (requests, failures) for fail-fast (``delivery.ports.LiveCounts``):
    from its sidecars' reports when any of them has reported, else from ``fallback``
    (the live read of their admin counters).

    The reports are counted as they arrive, so the deciding failure is in the counts by
    the time its report steps the rollout: no read of the sidecars lies between them.
    The counts grow for as long as the control plane runs, and the judgement works on
    differences from a baseline it takes, so a workload known from an earlier rollout
    keeps its numbers. A workload that never reported (an Argo Rollout's canary, which
    carries no logger, or a sidecar whose stream is not yet open) is read live; a canary
    switches to its reports at its first answer, when its counters were still at zero,
    so the baseline the live read gave holds for the reports too.
    """

    def __init__(self, reports: FailureReports, fallback: LiveSource) -> None:
        self._reports = reports
        self._fallback = fallback

    def live_counts(self, namespace: str, workload: str) -> tuple[int, int] | None:
        reported = self._reports.reported(namespace, workload)
        if reported is not None:
            if timeline.isEnabledFor(logging.DEBUG):
                timeline.debug("%.4f reported-counts %s/%s requests=%d failed=%d",
                               time.monotonic(), namespace, workload, *reported)
            return reported
        return self._fallback.live_counts(namespace, workload)

"""The control plane's end of the canaries' failure reports: Envoy's access log service.

The sidecars of a Canary's target workload stream each answer of 500 and above as it is
logged (``xds.translate.failure_reports``), on the xDS server's port. This service tells
its subscribers which workload just failed a request, so the rollout is stepped at once
instead of at its next tick.

Anyone who reaches the port can open a stream and name any node, so a stream is admitted
only when the node it names carries that node's report credential in its metadata
(``proxy.bootstrap.report_token``, derived from the proxy's xDS token and written into
its bootstrap; compared in constant time). A stream without it is refused
(UNAUTHENTICATED), logged, and its reports are dropped and counted
(``meshpilot_failure_reports_rejected_total`` on the telemetry's /metrics). Even an
admitted report is only a trigger: the judgement reads the sidecars' own counters.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import json_format

from meshpilot.mesh.model import node_from_metadata
from meshpilot.proxy.bootstrap import REPORT_TOKEN_KEY, report_token

log = logging.getLogger(__name__)

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
Subscriber = Callable[[str, str, int], None]
"""(namespace, workload, failed requests reported) -> None; called on the xDS server's
event loop, so it must only hand the work on (e.g. kick a worker)."""
Verify = Callable[[str, "str | None"], bool]
"""(node id, the report credential its stream presents) -> whether it is that node's."""


def report_verifier(token_for: Callable[[str], str]) -> Verify:
    """Check a report credential against the one derived from the xDS token
    ``token_for(node_id)`` issues (``security.ProxyTokens.token_for``)."""

    def verify(node_id: str, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(report_token(token_for(node_id)).encode(), token.encode())

    return verify


@dataclass(frozen=True)
class ReportCounts:
    """What the service has seen since it started."""

    accepted: int = 0
    """Failed requests reported on admitted streams."""
    rejected: int = 0
    """Failed requests reported on refused streams (dropped)."""
    rejected_streams: int = 0


class FailureReports:
    """The access log service, and who is told of each report (set after start-up: the
    delivery loop is built after the xDS server that serves this)."""

    def __init__(self, verify: Verify) -> None:
        self._verify = verify
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._counts = ReportCounts()

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def counts(self) -> ReportCounts:
        with self._lock:
            return self._counts

    def exposition(self) -> str:
        """The counts in Prometheus' text format (for the telemetry's /metrics)."""
        c = self.counts()
        rows = (("meshpilot_failure_reports_total", c.accepted,
                 "Failed requests canary sidecars reported on authenticated streams."),
                ("meshpilot_failure_reports_rejected_total", c.rejected,
                 "Failed-request reports dropped: their stream had no valid credential."),
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
            if entries:
                with self._lock:
                    c = self._counts
                    self._counts = ReportCounts(c.accepted + entries, c.rejected,
                                                c.rejected_streams)
                self.report(*workload, entries)  # type: ignore[misc]
        return als_pb2.StreamAccessLogsResponse()

    def _admitted(self, identifier: als_pb2.StreamAccessLogsMessage.Identifier
                  ) -> tuple[tuple[str, str] | None, str | None]:
        """(namespace, workload) of the node a stream names, or why it is refused."""
        node = identifier.node
        if not node.id:
            return None, "no node id"
        meta = json_format.MessageToDict(node.metadata)
        token = meta.get(REPORT_TOKEN_KEY)
        if not self._verify(node.id, token if isinstance(token, str) else None):
            return None, f"no valid {REPORT_TOKEN_KEY} for node {node.id}"
        proxy = node_from_metadata(node.id, meta)
        if not proxy.workload:
            return None, f"node {node.id} names no workload"
        return (proxy.namespace, proxy.workload), None

    def _refuse(self, entries: int, peer: str, reason: str) -> None:
        with self._lock:
            c = self._counts
            self._counts = ReportCounts(c.accepted, c.rejected + entries,
                                        c.rejected_streams + 1)
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

"""The control plane's end of the canaries' failure reports: Envoy's access log service.

The sidecars of a Canary's target workload stream each answer of 500 and above as it is
logged (``xds.translate.failure_reports``), on the xDS server's port. This service tells
its subscribers which workload just failed a request, so the rollout is stepped at once
instead of at its next tick. Nothing here is trusted for a count: the stream names its
node as it pleases, so a report only asks for a judgement that reads the sidecars'
own counters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import json_format

from meshpilot.mesh.model import node_from_metadata

log = logging.getLogger(__name__)

SERVICE = "envoy.service.accesslog.v3.AccessLogService"
Subscriber = Callable[[str, str, int], None]
"""(namespace, workload, failed requests reported) -> None; called on the xDS server's
event loop, so it must only hand the work on (e.g. kick a worker)."""


class FailureReports:
    """The access log service, and who is told of each report (set after start-up: the
    delivery loop is built after the xDS server that serves this)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

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
            if message.HasField("identifier"):  # the first message names the node
                workload = _workload(message.identifier)
            entries = len(message.http_logs.log_entry)
            if workload is not None and entries:
                self.report(*workload, entries)
        return als_pb2.StreamAccessLogsResponse()

    def report(self, namespace: str, workload: str, failed: int) -> None:
        """Tell every subscriber; one that raises does not keep the others from it."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(namespace, workload, failed)
            except Exception:
                log.exception("a failure report subscriber failed")


def _workload(identifier: als_pb2.StreamAccessLogsMessage.Identifier) -> tuple[str, str] | None:
    node = identifier.node
    if not node.id:
        return None
    meta = json_format.MessageToDict(node.metadata)
    proxy = node_from_metadata(node.id, meta)
    return (proxy.namespace, proxy.workload) if proxy.workload else None

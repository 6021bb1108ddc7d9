"""The ADS server: State of the World and Delta xDS on one gRPC server.

``update(version)`` is the only way config moves: every connected proxy asks
``resources_for(node)`` in its own stream worker and is brought there through the
make-before-break phases, sending only what changed. The control plane passes
:class:`meshpilot.xds.shared.SharedBuilder`, so that ask is a look-up of views built once
per proxy class and change, not a build per proxy. ``status()`` and ``wait_acked()``
report what each proxy has actually accepted, which is what convergence means.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from google.protobuf.json_format import MessageToDict

from meshpilot.mesh.model import ProxyNode, node_from_metadata
from meshpilot.xds.status import ProxyStatus, SentRecord
from meshpilot.xds.stream import Api, ProxyStream
from meshpilot.xds.types import Resources

log = logging.getLogger(__name__)

_END = object()
DISCONNECTED_RETENTION = 300.0
"""Seconds a disconnected proxy stays in ``status()``."""


class XdsServer:
    """Aggregated Discovery Service for the mesh's proxies (SotW and Delta)."""

    def __init__(
        self,
        resources_for: Callable[[ProxyNode], Resources],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 4096,
        phase_timeout: float = 5.0,
        first_syncs: int = 32,
    ) -> None:
        self._resources_for = resources_for
        self._first_syncs = threading.BoundedSemaphore(first_syncs)
        """At most this many proxies receive their whole config at once (the rest wait)."""
        self._host = host
        self._port = port
        self._max_workers = max_workers
        self._phase_timeout = phase_timeout
        self._cond = threading.Condition()
        self._version = 0
        self._streams: dict[str, ProxyStream] = {}  # node id -> its current stream
        self._gone: dict[str, tuple[ProxyStatus, float, list[SentRecord]]] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: list[_Waiter] = []
        self._prefix = secrets.token_hex(3)
        self._stream_ids = iter(range(1, 1 << 62))
        self._server: grpc.Server | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> int:
        """Bind and serve; returns the bound port."""
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="xds"),
            # Each stream holds a worker for its lifetime: past the limit, refuse the
            # stream (the proxy retries) rather than leave it hanging unserved. Threads are
            # started on demand, so a high limit costs nothing until proxies connect (each
            # stream uses three threads: this worker, its reader and its sync worker).
            maximum_concurrent_rpcs=self._max_workers,
            options=[
                ("grpc.so_reuseport", 0),  # never share a port with another server
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ],
        )
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        host = f"[{self._host}]" if ":" in self._host else self._host
        port = server.add_insecure_port(f"{host}:{self._port}")
        if not port:
            raise OSError(f"cannot bind xDS server to {self._host}:{self._port}")
        server.start()
        self._server = server
        self.port = port
        return port

    def stop(self, grace: float = 1.0) -> None:
        server, self._server = self._server, None
        with self._cond:
            streams = list(self._streams.values())
        for stream in streams:
            stream.close()
        if server is not None:
            server.stop(grace).wait(grace + 5.0)

    # --- config ---------------------------------------------------------------------------
    def update(self, version: int) -> None:
        """The mesh changed: bring every connected proxy to snapshot ``version``."""
        with self._cond:
            self._version = version
            streams = list(self._streams.values())
        for stream in streams:
            stream.trigger(version)

    @property
    def version(self) -> int:
        return self._version

    # --- observing ------------------------------------------------------------------------
    def status(self) -> list[ProxyStatus]:
        """One entry per proxy: connected ones, then recently disconnected ones."""
        now = time.monotonic()
        with self._cond:
            streams = list(self._streams.values())
            for node_id in [k for k, (_, at, _) in self._gone.items()
                            if now - at > DISCONNECTED_RETENTION]:
                del self._gone[node_id]
            gone = [s for k, (s, _, _) in self._gone.items() if k not in self._streams]
        return sorted([s.status() for s in streams] + gone, key=lambda s: s.node.id)

    def wait_acked(
        self, version: int, node_ids: Iterable[str] | None = None, timeout: float = 10.0,
    ) -> bool:
        """True once every (given) connected proxy has ACKed all its types at ``version``.

        A given node id that is not connected counts as not (yet) ACKed. Each stream's
        change re-checks that stream only, so a wait costs O(proxies) in all, not
        O(proxies) per ACK.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            waiter = _Waiter(version, None if node_ids is None else set(node_ids))
            waiter.recheck(self._streams)
            self._waiters.append(waiter)
            try:
                while waiter.pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 0.5))
                    if waiter.pending and time.monotonic() - waiter.checked_at > 0.5:
                        waiter.recheck(self._streams)  # belt and braces: a full look
                return True
            finally:
                self._waiters.remove(waiter)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments) on every connect, disconnect, ACK and NACK."""
        with self._cond:
            self._callbacks.append(callback)

    def sent_log(self, node_id: str) -> list[SentRecord]:
        """Responses sent on the node's current (or last) stream, oldest first."""
        with self._cond:
            stream = self._streams.get(node_id)
            if stream is None:
                gone = self._gone.get(node_id)
                return list(gone[2]) if gone else []
        return stream.sent_log()

    def subscriptions(self, node_id: str) -> dict[str, set[str] | None]:
        with self._cond:
            stream = self._streams.get(node_id)
        return stream.subscriptions() if stream is not None else {}

    # --- streams ---------------------------------------------------------------------------
    def _changed(self, node_id: str | None = None) -> None:
        with self._cond:
            if node_id is not None and self._waiters:
                stream = self._streams.get(node_id)
                wake = False
                for waiter in self._waiters:
                    wake |= waiter.update(node_id, stream)
                if wake:
                    self._cond.notify_all()
            elif node_id is None:
                self._cond.notify_all()
            callbacks = list(self._callbacks)
        for cb in callbacks:
            try:
                cb()
            except Exception:
                log.exception("xDS on_change callback failed")

    def _open(self, node: ProxyNode, api: Api, send: Callable[[Any], None]) -> ProxyStream:
        with self._cond:
            stream = ProxyStream(
                stream_id=f"{self._prefix}-{next(self._stream_ids)}", node=node, api=api,
                send=send, resources_for=self._resources_for,
                notify=lambda: self._changed(node.id), first_sync_gate=self._first_syncs,
                phase_timeout=self._phase_timeout,
            )
            old = self._streams.get(node.id)
            self._streams[node.id] = stream
            self._gone.pop(node.id, None)
            version = self._version
        if old is not None:
            old.close()
        log.info("proxy %s connected (%s)", node.id, api)
        stream.start(version)
        self._changed(node.id)
        return stream

    def _close(self, stream: ProxyStream) -> None:
        stream.close()
        with self._cond:
            if self._streams.get(stream.node.id) is stream:
                del self._streams[stream.node.id]
                self._gone[stream.node.id] = (stream.status(), time.monotonic(),
                                              stream.sent_log())
        log.info("proxy %s disconnected", stream.node.id)
        self._changed(stream.node.id)

    def _serve(self, requests: Iterator[Any], context: grpc.ServicerContext,
               api: Api) -> Iterator[Any]:
        out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        holder: list[ProxyStream] = []

        def read() -> None:
            try:
                for req in requests:
                    if not holder:
                        if not req.HasField("node") or not req.node.id:
                            log.warning("xDS stream without a node id in its first request")
                            return
                        meta = MessageToDict(req.node.metadata)
                        holder.append(self._open(node_from_metadata(req.node.id, meta),
                                                 api, out.put))
                    holder[0].handle(req)
            except grpc.RpcError:
                pass  # the stream ended (cancelled, server stopping)
            except Exception:
                log.exception("xDS stream failed")
            finally:
                out.put(_END)

        context.add_callback(lambda: out.put(_END))
        threading.Thread(target=read, name="xds-reader", daemon=True).start()
        try:
            while True:
                item = out.get()
                if item is _END:
                    return
                yield item
        finally:
            if holder:
                self._close(holder[0])


class _Waiter:
    """One ``wait_acked`` call: the proxies it still waits for (updated per change)."""

    def __init__(self, version: int, wanted: set[str] | None) -> None:
        self.version = version
        self.wanted = wanted  # None: every connected proxy
        self.pending: set[str] = set()
        self.checked_at = 0.0

    def recheck(self, streams: dict[str, ProxyStream]) -> None:
        ids = streams if self.wanted is None else self.wanted
        self.pending = {n for n in ids if not ((s := streams.get(n)) and s.acked(self.version))}
        self.checked_at = time.monotonic()

    def update(self, node_id: str, stream: ProxyStream | None) -> bool:
        """Re-check one proxy after it changed; True when nothing is pending any more."""
        if self.wanted is not None and node_id not in self.wanted:
            return False
        if stream is not None and stream.acked(self.version):
            self.pending.discard(node_id)
        elif stream is not None or self.wanted is not None:
            self.pending.add(node_id)  # connected and behind, or wanted and gone
        else:
            self.pending.discard(node_id)  # gone: no longer counts for "every proxy"
        return not self.pending


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, server: XdsServer) -> None:
        self._server = server

    def StreamAggregatedResources(self, request_iterator, context):
        return self._server._serve(request_iterator, context, "sotw")

    def DeltaAggregatedResources(self, request_iterator, context):
        return self._server._serve(request_iterator, context, "delta")

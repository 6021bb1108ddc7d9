"""The ADS server: State of the World and Delta xDS on one gRPC server.

``publish(snapshot)`` is the only way config moves, and it moves one way: the control
plane publishes an :class:`~meshpilot.xds.snapshot.XdsSnapshot`, the server derives each
connected proxy's config from it, checks it (``consistency_problems``: a proxy is only
ever given a consistent config; an inconsistent one is refused, the proxy stays on its
last good one and its status says why) and brings the proxy there through the
make-before-break phases, sending only what changed. ``status()`` and ``wait_acked()``
report what each proxy has actually accepted, which is what convergence means.

All streams run on one asyncio event loop in one thread (``grpc.aio``): a stream is a
few objects and a reader and a writer, not three threads, and a change reaches a thousand proxies
without a thousand thread hand-offs. Responses are bytes assembled by the streams
(the method handlers' serialiser passes them through). The public methods may be called
from any thread: reads run on the loop, waits use a condition the loop notifies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.json_format import MessageToDict

from meshpilot.mesh.locality import Locality
from meshpilot.mesh.model import ProxyNode, node_from_metadata
from meshpilot.xds.auth import Authenticator
from meshpilot.xds.consistency import consistency_problems
from meshpilot.xds.deadlines import Deadlines
from meshpilot.xds.first_sync import FirstSyncGate
from meshpilot.xds.loop import LoopThread
from meshpilot.xds.planner import PushPlanner
from meshpilot.xds.resources import CheckedConfig, ProxyConfig, prepare
from meshpilot.xds.snapshot import XdsSnapshot
from meshpilot.xds.status import ProxyStatus, Refusal, SentRecord
from meshpilot.xds.stream import Api, ProxyStream

log = logging.getLogger(__name__)

T = TypeVar("T")
DISCONNECTED_RETENTION = 300.0
"""Seconds a disconnected proxy stays in ``status()``."""
_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
UNACCEPTED_WAIT = 600
"""Seconds a new stream may wait to be accepted before gRPC cancels it (default 30)."""


def _passthrough(data: bytes) -> bytes:
    return data


ServerCertificate = tuple[bytes, bytes, bytes]
"""(certificate chain PEM, private key PEM, client roots PEM)."""


@dataclass(frozen=True)
class SecurePort:
    """Where and with what the xDS server also listens over mutual TLS: ``certificate()``
    gives the server's chain and key and the roots a client's certificate must chain to
    (a client without one is refused in the handshake). It is asked again before every
    new connection's handshake, and a different answer replaces the certificate, so a
    renewed certificate or a rotated root is served without a restart."""

    host: str
    port: int
    certificate: Callable[[], ServerCertificate] = field(repr=False)

    def add_to(self, server: grpc.aio.Server) -> int:
        current = [self.certificate()]

        def configuration(held: ServerCertificate) -> grpc.ServerCertificateConfiguration:
            chain, key, roots = held
            return grpc.ssl_server_certificate_configuration([(key, chain)], roots)

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            fresh = self.certificate()
            if fresh == current[0]:
                return None
            current[0] = fresh
            return configuration(fresh)

        credentials = grpc.dynamic_ssl_server_credentials(
            configuration(current[0]), fetch, require_client_authentication=True)
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = server.add_secure_port(f"{host}:{self.port}", credentials)
        if not port:
            raise OSError(f"cannot bind the mTLS xDS port to {self.host}:{self.port}")
        return port


class XdsServer:
    """Aggregated Discovery Service for the mesh's proxies (SotW and Delta)."""

    def __init__(
        self,
        *,
        authenticate: Authenticator,
        host: str = "127.0.0.1",
        port: int = 0,
        max_streams: int = 4096,
        phase_timeout: float = 5.0,
        first_syncs: int = 16,
        secure: SecurePort | None = None,
        services: Sequence[grpc.GenericRpcHandler] = (),
    ) -> None:
        self._authenticate = authenticate
        self._services = tuple(services)
        """More gRPC services on the same port (the proxies reach it through the cluster
        their bootstrap names for xDS): the canaries' failure reports."""
        self._secure = secure
        """A second, mutual-TLS port for proxies on other hosts (``up --listen``)."""
        """Whether a stream may speak for the node it names (a refusal reason, or None)."""
        self._first_syncs = first_syncs
        """At most this many proxies receive their whole config at once (the rest wait)."""
        self._host = host
        self._port = port
        self._max_streams = max_streams
        self._phase_timeout = phase_timeout
        self._cond = threading.Condition()
        self._snapshot: XdsSnapshot | None = None  # the latest published
        self._planner = PushPlanner()  # what the streams work out once for all of them
        self._streams: dict[str, ProxyStream] = {}  # node id -> its current stream
        self._gone: dict[str, tuple[ProxyStatus, float, list[SentRecord]]] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: list[_Waiter] = []
        self._prefix = secrets.token_hex(3)
        self._stream_ids = iter(range(1, 1 << 62))
        self._loop: LoopThread | None = None
        self._server: grpc.aio.Server | None = None
        self._gate: FirstSyncGate | None = None
        self._deadlines = Deadlines()  # every stream's phase deadline, on one loop timer
        self._active_at = time.monotonic()
        self.refused_streams = 0
        """Streams refused at open (no valid credential for the node and identity they
        declare), for /metrics. Written on the loop only."""
        self.port = 0
        self.secure_port = 0

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> int:
        """Bind and serve (on a loop thread of its own); returns the bound port."""
        loop = self._loop = LoopThread("xds-loop")
        try:
            self.port = loop.run(self._serve_start(), 30)
        except BaseException:
            self._stop_loop()
            raise
        return self.port

    async def _serve_start(self) -> int:
        server = grpc.aio.server(
            # Past the limit a stream is refused (the proxy retries) rather than left
            # hanging unserved.
            maximum_concurrent_rpcs=self._max_streams,
            options=[
                ("grpc.so_reuseport", 0),  # never share a port with another server
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                # A proxy's stream waits (unaccepted) while the loop serves others, e.g. a
                # thousand proxies reconnecting at once; gRPC would cancel it after 30 s.
                ("grpc.server_max_unrequested_time_in_server", UNACCEPTED_WAIT),
            ],
        )
        server.add_generic_rpc_handlers((self._handlers(), *self._services))
        host = f"[{self._host}]" if ":" in self._host else self._host
        port = server.add_insecure_port(f"{host}:{self._port}")
        if not port:
            raise OSError(f"cannot bind xDS server to {self._host}:{self._port}")
        if self._secure is not None:
            self.secure_port = self._secure.add_to(server)
        await server.start()
        self._server = server
        self._gate = FirstSyncGate(self._first_syncs)
        return port

    def stop(self, grace: float = 1.0) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.run(self._serve_stop(grace), grace + 10)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("xDS server did not stop within %.1fs", grace + 10)
        finally:
            self._stop_loop()

    async def _serve_stop(self, grace: float) -> None:
        server, self._server = self._server, None
        with self._cond:
            streams = list(self._streams.values())
        for stream in streams:
            stream.close()
        if server is not None:
            await server.stop(grace)

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop (where the streams' state lives) and return its value."""
        loop = self._loop
        return fn() if loop is None else loop.call(fn)

    # --- config ---------------------------------------------------------------------------
    def publish(self, snapshot: XdsSnapshot) -> None:
        """Serve ``snapshot`` from now on: every connected proxy is brought to its config
        at that version (or refused it, and stays where it is). A snapshot older than the
        one served (publishers on several threads) is ignored: versions never go back."""
        with self._cond:
            current = self._snapshot
            if current is not None and snapshot.version < current.version:
                log.debug("ignored mesh version %d: %d is served", snapshot.version,
                          current.version)
                return
            self._snapshot = snapshot
        self._active_at = time.monotonic()
        loop = self._loop
        if loop is not None:
            loop.soon(self._install, snapshot)

    def _install(self, snapshot: XdsSnapshot) -> None:
        with self._cond:
            if snapshot is not self._snapshot:
                return  # a newer one was published meanwhile: its install follows
            streams = list(self._streams.values())
        refused = [stream for stream in streams if not self._deliver(stream, snapshot)]
        if refused:
            first = refused[0].refusal
            log.error("mesh version %d refused for %d proxies (%s): %s", snapshot.version,
                      len(refused), ", ".join(s.node.id for s in refused[:3]),
                      "; ".join(first.problems) if first else "")

    def _deliver(self, stream: ProxyStream, snapshot: XdsSnapshot) -> bool:
        """Hand ``stream`` its proxy's config at ``snapshot``, or refuse it; True if given."""
        try:
            config: ProxyConfig = prepare(snapshot.config_for(stream.node))
        except Exception as exc:
            log.exception("building the config of proxy %s failed", stream.node.id)
            problems: tuple[str, ...] = (f"its config could not be built: {exc}",)
        else:
            problems = config_problems(config, stream.accepted)
            if not problems:
                stream.trigger(snapshot.version, config)
                return True
        stream.refuse(Refusal(snapshot.version, problems))
        return False

    @property
    def version(self) -> int:
        """The latest published mesh version (0 before any)."""
        snapshot = self._snapshot
        return snapshot.version if snapshot is not None else 0

    def idle_seconds(self) -> float:
        """Seconds since the last update, connect, disconnect, ACK or NACK."""
        return time.monotonic() - self._active_at

    # --- observing ------------------------------------------------------------------------
    def status(self) -> list[ProxyStatus]:
        """One entry per proxy: connected ones, then recently disconnected ones."""
        return self._in_loop(self._status)

    def _status(self) -> list[ProxyStatus]:
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
        """Call ``callback`` (no arguments; on the loop, so keep it short) on every
        connect, disconnect, ACK and NACK."""
        with self._cond:
            self._callbacks.append(callback)

    def sent_log(self, node_id: str) -> list[SentRecord]:
        """Responses sent on the node's current (or last) stream, oldest first."""
        def read() -> list[SentRecord]:
            with self._cond:
                stream = self._streams.get(node_id)
                if stream is None:
                    gone = self._gone.get(node_id)
                    return list(gone[2]) if gone else []
            return stream.sent_log()

        return self._in_loop(read)

    def subscriptions(self, node_id: str) -> dict[str, set[str] | None]:
        def read() -> dict[str, set[str] | None]:
            with self._cond:
                stream = self._streams.get(node_id)
            return stream.subscriptions() if stream is not None else {}

        return self._in_loop(read)

    # --- streams (on the loop) ---------------------------------------------------------------
    def _changed(self, node_id: str | None = None) -> None:
        self._active_at = time.monotonic()
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
            callbacks = list(self._callbacks) if self._callbacks else ()
        for cb in callbacks:
            try:
                cb()
            except Exception:
                log.exception("xDS on_change callback failed")

    def _open(self, node: ProxyNode, api: Api, send: Callable[[bytes], None]) -> ProxyStream:
        stream = ProxyStream(
            stream_id=f"{self._prefix}-{next(self._stream_ids)}", node=node, api=api,
            send=send, notify=lambda: self._changed(node.id), planner=self._planner,
            first_sync_gate=self._gate, phase_timeout=self._phase_timeout,
            deadlines=self._deadlines,
        )
        with self._cond:
            old = self._streams.get(node.id)
            self._streams[node.id] = stream
            self._gone.pop(node.id, None)
            snapshot = self._snapshot
        if old is not None:
            old.close()
        log.info("proxy %s connected (%s)", node.id, api)
        if snapshot is not None and not self._deliver(stream, snapshot):
            refusal = stream.refusal
            log.error("mesh version %d refused for proxy %s: %s", snapshot.version, node.id,
                      "; ".join(refusal.problems) if refusal else "")
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

    def _handlers(self) -> grpc.GenericRpcHandler:
        def handler(api: Api, request_type: Any) -> grpc.RpcMethodHandler:
            async def serve(requests: Any, context: grpc.aio.ServicerContext) -> None:
                await self._serve(requests, context, api)

            return grpc.stream_stream_rpc_method_handler(
                serve, request_deserializer=request_type.FromString,
                response_serializer=_passthrough)

        return grpc.method_handlers_generic_handler(_SERVICE, {
            "StreamAggregatedResources": handler("sotw", discovery_pb2.DiscoveryRequest),
            "DeltaAggregatedResources": handler("delta", discovery_pb2.DeltaDiscoveryRequest),
        })

    async def _serve(self, requests: Any, context: grpc.aio.ServicerContext, api: Api) -> None:
        out = _Outbox()
        stream: ProxyStream | None = None
        writer: asyncio.Task[None] | None = None
        try:
            async for req in requests:
                if stream is None:
                    node = await self._admitted(req, context)
                    stream = self._open(node, api, out.put)
                    writer = asyncio.get_running_loop().create_task(_write(context, out))
                stream.handle(req)
        except (grpc.RpcError, asyncio.CancelledError, grpc.aio.AbortError):
            pass  # the stream ended (cancelled, refused, server stopping)
        except Exception:
            log.exception("xDS stream failed")
        finally:
            if writer is not None:
                writer.cancel()
            if stream is not None:
                self._close(stream)


    async def _admitted(self, request: Any, context: grpc.aio.ServicerContext) -> ProxyNode:
        """The node a stream's first request names, if the stream may speak for it; the
        stream is aborted (UNAUTHENTICATED) and the refusal logged otherwise."""
        if not request.HasField("node") or not request.node.id:
            reason = "no node id in its first request"
            node_id = "?"
        else:
            node_id = request.node.id
            node = node_from_metadata(node_id, MessageToDict(request.node.metadata))
            if request.node.HasField("locality"):  # Envoy's own field, from its bootstrap
                where = request.node.locality
                node = replace(node, locality=str(Locality(
                    where.region, where.zone, where.sub_zone)))
            metadata = {k: v for k, v in (context.invocation_metadata() or ())
                        if isinstance(v, str)}
            refusal = self._authenticate(node, metadata)
            if refusal is None:
                return node
            reason = refusal
        self.refused_streams += 1
        log.warning("refused an xDS stream from %s (node %s): %s", context.peer(), node_id,
                    reason)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        raise AssertionError("unreachable: abort raises")


def config_problems(config: ProxyConfig, since: ProxyConfig | None) -> tuple[str, ...]:
    """Why a proxy's config may not be served (empty: it may): the config builder's
    verdict, or a check against the proxy's last accepted config."""
    if type(config) is CheckedConfig:
        return config.problems  # type: ignore[no-any-return]
    return tuple(consistency_problems(config, since=since))


class _Outbox:
    """A stream's responses waiting to be written, in order (one writer, no locks: the
    loop's thread only). Leaner than asyncio.Queue, which is a measurable share of a push
    to a thousand proxies."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: bytes) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> bytes:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


async def _write(context: grpc.aio.ServicerContext, out: _Outbox) -> None:
    try:
        while True:
            await context.write(await out.get())
    except (grpc.RpcError, asyncio.CancelledError, grpc.aio.AbortError):
        pass
    except Exception:  # the call ended under us (e.g. the proxy went away)
        log.debug("xDS stream writer ended", exc_info=True)


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

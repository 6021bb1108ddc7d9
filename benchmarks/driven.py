"""Drive a :class:`~meshpilot.xds.stream.ProxyStream` from a plain thread.

A stream lives on an event loop (the xDS server's). The push-size benchmark and the
stream's tests play the proxy's side by hand: they call it from their own thread, hand
it configs as the server would (from a ``resources_for(node)`` of their own), and read
its responses from a queue. :class:`DrivenStream` runs it on a private loop thread and
does exactly that.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from meshpilot.mesh.model import ProxyNode
from meshpilot.xds.loop import LoopThread
from meshpilot.xds.resources import ProxyConfig, prepare
from meshpilot.xds.stream import Api, ProxyStream
from meshpilot.xds.types import Resources


class DrivenStream:
    """A ProxyStream on a private loop. Its methods are called through the loop; its
    responses arrive, parsed, in ``responses``."""

    def __init__(
        self, *, node: ProxyNode, api: Api, resources_for: Callable[[ProxyNode], Resources],
        phase_timeout: float = 5.0, stream_id: str = "driven",
    ) -> None:
        self.responses: queue.SimpleQueue[Any] = queue.SimpleQueue()
        parse = (discovery_pb2.DiscoveryResponse if api == "sotw"
                 else discovery_pb2.DeltaDiscoveryResponse).FromString
        self._loop = LoopThread("xds-driven")
        self._resources_for = resources_for
        self.stream = ProxyStream(
            stream_id=stream_id, node=node, api=api,
            send=lambda data: self.responses.put(parse(data)), notify=lambda: None,
            phase_timeout=phase_timeout)

    def _config(self) -> ProxyConfig:
        return prepare(self._resources_for(self.stream.node))

    def start(self, version: int) -> None:
        self._loop.call(self.stream.start, version, self._config())

    def trigger(self, version: int) -> None:
        self._loop.call(self.stream.trigger, version, self._config())

    def handle(self, request: Any) -> None:
        self._loop.call(self.stream.handle, request)

    def status(self) -> Any:
        return self._loop.call(self.stream.status)

    def acked(self, version: int) -> bool:
        return self.stream.acked(version)

    def close(self) -> None:
        self._loop.call(self.stream.close)
        self._loop.close()

"""A receiver of JSON POSTs on loopback: a chat service's incoming webhook for alerts, a
Flagger event hook's endpoint, or an HTTP proxy (a proxy receives the absolute URL as
the request target). Records every POST (request target, headers, JSON body) and
answers with a set status, optionally late."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    target: str
    """The request target as sent: a path, or an absolute URL when sent to a proxy."""
    headers: dict[str, str]
    body: dict[str, Any]


class AlertReceiver:
    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        self.status = status
        self.delay_s = delay_s
        self._received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver._received.append(Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw or b"{}")))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                answer = b"" if receiver.status < 300 else b"rate limited"
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)


@contextmanager
def alert_receiver(status: int = 200, delay_s: float = 0.0) -> Iterator[AlertReceiver]:
    receiver = AlertReceiver(status, delay_s)
    receiver._thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()

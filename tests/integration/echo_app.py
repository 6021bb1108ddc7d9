"""The app behind the integration tests' real Envoys: answers every GET with the path
and the headers it received, as JSON, so a test sees what the proxy forwarded."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """``{"path": ..., "headers": {lower-case name: value}}`` for every GET."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def echo_server() -> http.server.ThreadingHTTPServer:
    """An echo server on a free loopback port, not started (see :func:`serve`)."""
    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)


def serve(server: http.server.ThreadingHTTPServer) -> int:
    """Serve ``server`` from a daemon thread; its port."""
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return int(server.server_address[1])

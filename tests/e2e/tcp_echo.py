"""A TCP echo server in the manner of Istio's tcp-echo sample: each line a client sends
comes back prefixed with the server's word (``one`` for v1, ``two`` for v2), so a client
can tell which version its connection reached.

Run as a pod's container: ``python tcp_echo.py WORD``; it listens on ``$PORT`` at
``$POD_IP`` (what meshpilot's runtime hands an app)."""

from __future__ import annotations

import os
import socketserver
import sys


class _Echo(socketserver.StreamRequestHandler):
    word = b""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(self.word + b" " + line)
            self.wfile.flush()


def main() -> None:
    _Echo.word = sys.argv[1].encode()
    address = (os.environ.get("POD_IP", "127.0.0.1"), int(os.environ["PORT"]))
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(address, _Echo) as server:
        server.daemon_threads = True
        server.serve_forever()


if __name__ == "__main__":
    main()

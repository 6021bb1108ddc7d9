"""A TCP echo server in the manner of Istio's tcp-echo sample: each line a client sends
comes back prefixed with the server's word (``one`` for v1, ``two`` for v2), so a client
can tell which version its connection reached.

Run as a pod's container: ``python tcp_echo.py WORD [CERT KEY]``; it listens on ``$PORT``
at ``$POD_IP`` (what meshpilot's runtime hands an app). With a certificate and key it
speaks TLS itself (a server behind a TLS port, whose sidecar only forwards the bytes)."""

from __future__ import annotations

import os
import socketserver
import ssl
import sys


class _Echo(socketserver.StreamRequestHandler):
    word = b""
    tls: ssl.SSLContext | None = None

    def setup(self) -> None:
        if self.tls is not None:
            self.request = self.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(self.word + b" " + line)
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A probe's bare connect, or a client gone mid-handshake: nothing to report."""


def main() -> None:
    _Echo.word = sys.argv[1].encode()
    if len(sys.argv) > 3:
        _Echo.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _Echo.tls.load_cert_chain(sys.argv[2], sys.argv[3])
    address = (os.environ.get("POD_IP", "127.0.0.1"), int(os.environ["PORT"]))
    with _Server(address, _Echo) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()

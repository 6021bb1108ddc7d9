"""A server outside the mesh for TCP and TLS tests: on loopback, it answers each
connection's first line with ``<word> <line>``, over TLS when given a certificate. The
word tells which server a connection reached."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

DEADLINE = 5.0
"""Seconds a connection may take, either side."""


class LineServer:
    """A TCP server on loopback answering each line with ``<word> <line>``; with
    ``tls`` it speaks TLS with that (cert, key) pair first."""

    def __init__(self, word: str, tls: tuple[Path, Path] | None = None) -> None:
        self.word = word
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*tls)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            conn.settimeout(DEADLINE)
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            line = conn.makefile("rb").readline()
            conn.sendall(self.word.encode() + b" " + line)
        conn.close()

    def close(self) -> None:
        self.sock.close()

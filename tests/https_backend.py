"""An HTTPS echo server on loopback for an external host's name, for the tests of HTTPS
through the sidecar (``CONNECT``): a real TLS server whose certificate names the host,
signed by a root made for the test, so a client that verifies it fails unless the
tunnel reached this server with the bytes unchanged."""

from __future__ import annotations

import contextlib
import http.server
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.integration.echo_app import EchoHandler, serve
from tests.integration.gateway_envoy import issue


@dataclass
class HttpsBackend:
    """Where it listens (``127.0.0.1:port``) and the root a client must trust (a file)."""

    port: int
    root: Path


@contextlib.contextmanager
def https_backend(host: str, directory: Path, also: Sequence[str] = ()
                  ) -> Iterator[HttpsBackend]:
    """Serve HTTPS for ``host`` (and the names ``also``: the certificate's other DNS
    names; each GET answered with its path and headers as JSON) until the block ends;
    the key is written 0600 into ``directory``."""
    root = issue(f"{host} test root", ca=True)
    leaf = issue(host, root, dns=[host, *also])
    key = directory / "backend.key"
    key.touch(mode=0o600)
    key.write_bytes(leaf.key_pem)
    (directory / "backend.pem").write_bytes(leaf.cert_pem)
    (directory / "root.pem").write_bytes(root.cert_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "backend.pem", key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    try:
        yield HttpsBackend(serve(server), directory / "root.pem")
    finally:
        server.shutdown()
        server.server_close()

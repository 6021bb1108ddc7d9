"""A client pod for the in-mesh TCP and TLS tests (Istio's ``sleep`` in their tasks): it
opens connections to a Service's TCP port the way an app in a pod finds it, through the
Kubernetes service variables the runtime gives it (``{SVC}_SERVICE_HOST`` and
``{SVC}_SERVICE_PORT``: its sidecar's listener for that port), and reports what answered.

Run as a pod's container: ``python tcp_client.py``; it serves HTTP on ``$PORT`` at
``$POD_IP``:

- ``GET /connect?service=TCP_ECHO&n=100``: ``n`` new connections, each sending one line;
  the answer is ``{"words": {word: count}, "failed": count}`` (tcp_echo.py's words);
- ``GET /tls?service=TLS_FRONT&sni=a.example.com&ca=PATH``: one TLS connection with that
  SNI, the server's certificate checked against the CA file; the answer is
  ``{"word": ..., "subject": CN}``, or ``{"error": ...}`` when the connection fails.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


def _address(service: str) -> tuple[str, int]:
    return os.environ[f"{service}_SERVICE_HOST"], int(os.environ[f"{service}_SERVICE_PORT"])


def _line(conn: socket.socket, i: int) -> str:
    conn.sendall(f"hello {i}\n".encode())
    answer = conn.makefile("rb").readline().decode()
    word, _, rest = answer.partition(" ")
    return word if rest == f"hello {i}\n" else f"bad:{answer!r}"


def connect(service: str, n: int) -> dict[str, Any]:
    words: Counter[str] = Counter()
    failed = 0
    for i in range(min(n, 1000)):
        try:
            with socket.create_connection(_address(service), timeout=10) as conn:
                words[_line(conn, i)] += 1
        except OSError:
            failed += 1
    return {"words": dict(words), "failed": failed}


def tls(service: str, sni: str, ca: str) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False  # the test's certificates name their host in the CN
    try:
        with socket.create_connection(_address(service), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=sni) as conn:
            subject = dict(x[0] for x in conn.getpeercert()["subject"])
            return {"word": _line(conn, 0), "subject": subject.get("commonName", "")}
    except (OSError, ssl.SSLError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/connect":
            body = connect(q.get("service", "TCP_ECHO"), int(q.get("n", "1")))
        elif url.path == "/tls":
            body = tls(q.get("service", "TLS_FRONT"), q["sni"], q["ca"])
        else:
            body = {"env": {k: v for k, v in os.environ.items() if "_SERVICE_" in k}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the answers."""


def main() -> None:
    server = ThreadingHTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), _Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()

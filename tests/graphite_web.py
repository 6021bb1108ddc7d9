"""Serves Debian's graphite-web (a Django app) for the Graphite provider's tests.

Run by Debian's ``/usr/bin/python3``, where graphite-web and Django are installed (not
by the project's virtualenv, which has neither), with the settings module and its
directory given in the environment by :class:`tests.metric_backends.Graphite`. It
serves the app on three loopback ports, each bound to port 0 and written to stdout as
``OPEN AUTH TLS`` once all listen:

- OPEN: graphite-web as it is;
- AUTH: the same app behind HTTP basic auth, for ``MP_GRAPHITE_BASIC_AUTH``
  (``user:password``). graphite-web has no basic auth of its own; a deployment puts a
  web server in front of it that asks for it, which is what Flagger's ``secretRef``
  credentials answer, and what this stands for;
- TLS: the app over HTTPS with the certificate and key in ``MP_GRAPHITE_TLS_CERT`` and
  ``MP_GRAPHITE_TLS_KEY`` (one no root vouches for: ``insecureSkipVerify``).

Django's development server would do for one port, but the standard library's WSGI
server (threaded) serves two from one process with the app loaded once.
"""

from __future__ import annotations

import base64
import hmac
import os
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the tests read the answers."""


def basic_auth(app: App, user_password: str) -> App:
    """``app`` for requests whose Authorization is basic auth with these credentials
    (compared in constant time); 401 with a challenge for any other."""
    expected = "Basic " + base64.b64encode(user_password.encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "")
        if hmac.compare_digest(given.encode(), expected.encode()):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="graphite"'),
                                            ("Content-Type", "text/plain")])
        return [b"unauthorized\n"]

    return guarded


def main() -> None:
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    servers = [make_server("127.0.0.1", 0, wrapped, server_class=_Server,
                           handler_class=_QuietHandler)
               for wrapped in (app, basic_auth(app, os.environ["MP_GRAPHITE_BASIC_AUTH"]),
                               app)]
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.environ["MP_GRAPHITE_TLS_CERT"], os.environ["MP_GRAPHITE_TLS_KEY"])
    servers[2].socket = tls.wrap_socket(servers[2].socket, server_side=True)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write(" ".join(str(s.server_port) for s in servers) + "\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()

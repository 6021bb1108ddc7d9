"""A gRPC echo server for the end-to-end tests, the gRPC twin of ``tcp_echo.py``.

One unary method, ``/meshpilot.test.Echo/Say``, on raw bytes (a generic handler: no
generated code): it answers ``<word> <request>``, so a caller learns which version served
the call, except for the request ``missing``, answered with status NOT_FOUND (5), so a
test can see a failing call counted by its gRPC status.

Run as a pod's container: ``python grpc_echo.py WORD``; it listens with HTTP/2 only (as
every gRPC server) on ``$PORT`` at ``$POD_IP``, what meshpilot's runtime hands an app.
An HTTP/1.1 request gets no answer from it, so a call that succeeds proves the sidecar
spoke HTTP/2 to the app.
"""

from __future__ import annotations

import os
import sys
from concurrent import futures

import grpc

SERVICE = "meshpilot.test.Echo"
METHOD = f"/{SERVICE}/Say"
MISSING = b"missing"


def _handler(word: bytes) -> grpc.GenericRpcHandler:
    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        if request == MISSING:
            context.abort(grpc.StatusCode.NOT_FOUND, "nothing by that name")
        return word + b" " + request

    return grpc.method_handlers_generic_handler(
        SERVICE, {"Say": grpc.unary_unary_rpc_method_handler(say)})


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((_handler(sys.argv[1].encode()),))
    server.add_insecure_port(f"{os.environ.get('POD_IP', '127.0.0.1')}:{os.environ['PORT']}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()

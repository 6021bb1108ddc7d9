"""Envoy access logs in Istio's default TEXT format, one line per request or connection.

Istio users read a proxy's traffic with ``kubectl logs POD -c istio-proxy`` and know its
lines by heart: response flags (``NR``, ``UH``, ``UF``…), response code details
(``rbac_access_denied_matched_policy[none]``), the ``outbound|8080|v1|host`` cluster. So
meshpilot writes the very same line (:data:`ISTIO_TEXT_FORMAT`, Istio's
``EnvoyTextLogFormat``) with Envoy's file access logger, for HTTP connection managers and
tcp_proxy filters alike (Istio uses the one format for both; the HTTP-only operators
print ``-`` on a TCP line).

Where the file is comes in with the proxy (``ProxyNode.access_log``, from its node
metadata): the runtime that owns the proxy chooses it, and the empty string means access
logging is off for that proxy. The format has no operator that reads an ``Authorization``
header, a cookie or a token, and none may be added: the file outlives the request.

The logger is added to every HTTP connection manager and tcp_proxy of a listener by
:func:`with_access_log`, after the listener is built, so every listener a proxy gets
(sidecar, mesh proxy, gateway, whatever chains they grow) logs the same way without each
builder having to remember to. Only listeners change: route configurations, which a
weight change resends, are untouched.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as accesslog_data_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2

from meshpilot.xds.translate import egress, names, pb

FILE_LOGGER = "envoy.access_loggers.file"

ISTIO_TEXT_FORMAT = (
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% "
    "%CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" "
    "%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
    "\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" "
    "\"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
"""Istio's default TEXT access log format (``meshConfig.accessLogFormat`` unset), as
istio.io's "Envoy Access Logs" page and Istio's ``EnvoyTextLogFormat`` give it: users and
their log parsers expect exactly these fields in this order."""


ASKED_AUTHORITY_FORMAT = ISTIO_TEXT_FORMAT.replace(
    "%REQ(:AUTHORITY)%", f"%REQ({egress.AUTHORITY_HEADER.upper()}?:AUTHORITY)%")
"""The same line for the sidecar's outbound HTTP proxy: a request for a host outside the
registry shows the host the app asked for, which the outbound traffic policy keeps in its
own header, not the policy scope's internal authority (the sidecar removes that header
from whatever a client sends, so the field cannot be forged)."""


def file_logger(path: str, *, at_end_only: bool = False, asked_authority: bool = False
                ) -> accesslog_pb2.AccessLog:
    """Envoy's file access logger writing :data:`ISTIO_TEXT_FORMAT` lines to ``path``
    (:data:`ASKED_AUTHORITY_FORMAT` with ``asked_authority``): one line per request or
    connection. ``at_end_only``: none for a tcp_proxy's connect
    or periodic log events, so a connection still writes one line, when it ends (an
    inbound mutual TLS chain logs at connect for its per-caller counters: see
    :mod:`.telemetry`); elsewhere a tcp_proxy that asks to log at connect (the
    east-west gateway's pooled connections) writes that line too."""
    text = ASKED_AUTHORITY_FORMAT if asked_authority else ISTIO_TEXT_FORMAT
    config = file_pb2.FileAccessLog(
        path=path,
        log_format=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source=base_pb2.DataSource(inline_string=text)),
    )
    logger = accesslog_pb2.AccessLog(name=FILE_LOGGER, typed_config=pb.pack(config))
    if at_end_only:
        not_at_connect = logger.filter.log_type_filter
        not_at_connect.types.extend([accesslog_data_pb2.TcpUpstreamConnected,
                                     accesslog_data_pb2.TcpPeriodic])
        not_at_connect.exclude = True
    return logger


def with_access_log(listener: listener_pb2.Listener, path: str) -> listener_pb2.Listener:
    """``listener`` with a :func:`file_logger` to ``path`` appended to the access logs of
    every connection manager and tcp_proxy in its filter chains (in place; returned for
    chaining). An empty ``path`` (access logging off) leaves it as it is."""
    if not path:
        return listener
    logger = file_logger(path, at_end_only=listener.traffic_direction == base_pb2.INBOUND,
                         asked_authority=listener.name == names.OUTBOUND_LISTENER)
    for chain in [*listener.filter_chains, *_default_chain(listener)]:
        for network_filter in chain.filters:
            _append(network_filter.typed_config, logger)
    return listener


def _default_chain(listener: listener_pb2.Listener) -> list[listener_pb2.FilterChain]:
    return [listener.default_filter_chain] if listener.HasField("default_filter_chain") else []


def _append(typed_config: any_pb2.Any, logger: accesslog_pb2.AccessLog) -> None:
    """Unpack the filter's config (if it is one that logs), append, pack it back."""
    message: hcm.HttpConnectionManager | tcp_proxy_pb2.TcpProxy
    for message in (hcm.HttpConnectionManager(), tcp_proxy_pb2.TcpProxy()):
        if typed_config.Is(message.DESCRIPTOR):
            typed_config.Unpack(message)
            message.access_log.append(logger)
            typed_config.CopyFrom(pb.pack(message))
            return


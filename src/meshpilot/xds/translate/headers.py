"""The request and response headers Istio's proxies add, set the way Istio sets them.

- ``x-envoy-attempt-count`` on every request a sidecar's or the gateway's routes send
  upstream (``include_request_attempt_count`` on their virtual hosts: Envoy has no
  listener- or cluster-wide switch for it). It costs two bytes per virtual host, so a
  weight change's route config grows by two bytes per HTTP port of the service.
- ``x-request-id``: Envoy's connection manager makes one when the request has none (its
  default, kept); ``x-forwarded-proto`` likewise. ``x-forwarded-for`` gets the client's
  address at the gateway only (``use_remote_address``, see
  :mod:`~meshpilot.xds.translate.listeners`): sidecars' downstreams are the local app or a
  peer sidecar, as in Istio.
- ``x-forwarded-client-cert``: a sidecar's inbound mutual-TLS chain appends the caller's
  certificate details (``By``, ``Hash``, ``Subject``, ``URI``, ``DNS``) to what the peer
  sidecar forwarded (Istio's ``APPEND_FORWARD``); the gateway sets it from a client
  certificate and drops any a client sent (``SANITIZE_SET``). A plaintext inbound chain
  and the outbound listener drop it (Envoy's ``SANITIZE``; Istio forwards it on a
  plaintext inbound connection, where nothing vouches for it).
- ``server: istio-envoy`` on responses, the name Istio gives its proxies.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

SERVER_NAME = "istio-envoy"
_Hcm = hcm.HttpConnectionManager


def _client_cert(manager: _Hcm, how: _Hcm.ForwardClientCertDetails.ValueType) -> None:
    manager.forward_client_cert_details = how
    details = manager.set_current_client_cert_details
    details.subject.value = True
    details.uri = True
    details.dns = True


def server_name(manager: _Hcm) -> None:
    manager.server_name = SERVER_NAME


def inbound_mtls(manager: _Hcm) -> None:
    """A sidecar's inbound chain that terminated mutual TLS."""
    _client_cert(manager, _Hcm.APPEND_FORWARD)


def gateway(manager: _Hcm) -> None:
    """The gateway's connection managers."""
    _client_cert(manager, _Hcm.SANITIZE_SET)


def attempt_count(vhost: rc.VirtualHost) -> rc.VirtualHost:
    """``vhost`` sending ``x-envoy-attempt-count`` upstream."""
    vhost.include_request_attempt_count = True
    return vhost

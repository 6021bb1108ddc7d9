"""Who may open an xDS stream, and for which node.

A stream names its node in its first request; the server serves it only if it proves it
may speak for that node (:data:`Authenticator`). The control plane's proxies present a
token bound to their node id (gRPC metadata ``x-meshpilot-proxy-token``, written into
their bootstrap): a stream without it, or with another node's, is refused, so no local
process can read a workload's config, or its key, by claiming to be its proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from meshpilot.mesh.model import ProxyNode
from meshpilot.proxy.bootstrap import XDS_TOKEN_HEADER

Authenticator = Callable[[ProxyNode, Mapping[str, str]], "str | None"]
"""(the node a stream names, its gRPC metadata) -> why it is refused, or None."""


def token_authenticator(verify: Callable[[str, str | None], bool]) -> Authenticator:
    """Admit a stream whose token ``verify(node_id, token)`` accepts."""

    def authenticate(node: ProxyNode, metadata: Mapping[str, str]) -> str | None:
        if verify(node.id, metadata.get(XDS_TOKEN_HEADER)):
            return None
        if XDS_TOKEN_HEADER not in metadata:
            return f"no {XDS_TOKEN_HEADER} credential"
        return f"its {XDS_TOKEN_HEADER} credential is not the one issued for node {node.id}"

    return authenticate

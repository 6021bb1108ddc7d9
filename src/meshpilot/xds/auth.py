"""Who may open an xDS stream, for which node, and as which workload.

A stream names its node in its first request; the server serves it only if it proves it
may speak for that node as the node declares itself (:data:`Authenticator`). The control
plane's proxies present a token bound to their node id and to the workload identity the
control plane gave them (namespace, workload, pod, service account, labels; gRPC metadata
``x-meshpilot-proxy-token``, written into their bootstrap; see
:mod:`meshpilot.security.proxy_tokens`). A stream without it, with another node's, or
with its own but declaring another workload's metadata, is refused: no local process can
read a workload's config, or its key, by claiming to be its proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from meshpilot.mesh.model import ProxyNode
from meshpilot.proxy.bootstrap import XDS_TOKEN_HEADER

Authenticator = Callable[[ProxyNode, Mapping[str, str]], "str | None"]
"""(the node a stream names, its gRPC metadata) -> why it is refused, or None."""

REFUSED_STREAMS = "meshpilot_xds_streams_rejected_total"


def token_authenticator(verify: Callable[[ProxyNode, str | None], bool]) -> Authenticator:
    """Admit a stream whose token ``verify(node, token)`` accepts for the node as its
    first request declares it (id and identity: one HMAC, compared in constant time)."""

    def authenticate(node: ProxyNode, metadata: Mapping[str, str]) -> str | None:
        if verify(node, metadata.get(XDS_TOKEN_HEADER)):
            return None
        if XDS_TOKEN_HEADER not in metadata:
            return f"no {XDS_TOKEN_HEADER} credential"
        return (f"its {XDS_TOKEN_HEADER} credential was not issued for node {node.id} as it "
                f"declares itself ({node.kind} {node.namespace}/{node.workload or '-'}, "
                f"pod {node.name or '-'}, service account {node.service_account}, "
                f"{len(node.labels)} labels): another node's, or its own with another "
                "workload's metadata")

    return authenticate


def refusals_exposition(refused: int) -> str:
    """The count of refused xDS streams in Prometheus' text format (for /metrics)."""
    return (f"# HELP {REFUSED_STREAMS} xDS streams refused: no valid credential for the "
            "node and identity they declare.\n"
            f"# TYPE {REFUSED_STREAMS} counter\n{REFUSED_STREAMS} {refused}\n")

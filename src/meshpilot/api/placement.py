"""Where a pod runs: the node its template names, as Kubernetes' scheduler reads it.

meshpilot's nodes are the control plane's own host (named :data:`LOCAL_NODE`, the name
its pods see as ``spec.nodeName``) and the hosts that joined, each by the node name its
agent declared (``host join --node-name``). A template chooses one by
``spec.nodeName`` or by ``nodeSelector: {kubernetes.io/hostname: NAME}``, the label
Kubernetes gives every node; without either its pods run on the control plane's host.
Every node is Linux, so ``kubernetes.io/os: linux`` selects them all. Other selectors and
node affinity are refused at apply (see :mod:`meshpilot.validation.placement_rules`):
nothing here could satisfy them, and a pod Kubernetes would leave unscheduled must not
run somewhere by surprise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from meshpilot.api.kubernetes import PodSpec

HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
NODE_OS = "linux"
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LOCAL_NODE = "localhost"
"""The control plane's own host as a node (pods without a placement run there)."""


def node_of(pod_spec: Mapping[str, Any]) -> str:
    """The node a pod template (its ``spec``, as stored) names, or :data:`LOCAL_NODE`.

    ``nodeName`` wins over the hostname selector, as it bypasses Kubernetes' scheduler
    (validation refuses a template whose two disagree)."""
    named = pod_spec.get("nodeName")
    if isinstance(named, str) and named:
        return named
    selector = pod_spec.get("nodeSelector")
    if isinstance(selector, Mapping):
        host = selector.get(HOSTNAME_LABEL)
        if isinstance(host, str) and host:
            return host
    return LOCAL_NODE


def node_of_spec(spec: PodSpec) -> str:
    """:func:`node_of` of a parsed template (no dump: read on every mesh rebuild)."""
    if spec.node_name:
        return spec.node_name
    return (spec.node_selector or {}).get(HOSTNAME_LABEL) or LOCAL_NODE


def is_local(node: str) -> bool:
    return node == LOCAL_NODE


def joinable(node: str) -> bool:
    """Whether a joined host may declare ``node``: a DNS label (Kubernetes' node names,
    as the hostname label carries them) other than the control plane's own host's."""
    return bool(_NODE_NAME.match(node)) and not is_local(node)

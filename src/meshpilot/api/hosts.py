"""Host names the way Istio resolves them.

A short name in a VirtualService or DestinationRule is relative to the object's own
namespace: ``myapp`` in namespace ``default`` is ``myapp.default.svc.cluster.local``.
"""

from __future__ import annotations

CLUSTER_DOMAIN = "svc.cluster.local"


def fqdn(host: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """Resolve ``host`` as Istio does for a config object in ``namespace``.

    Only a name without a dot is expanded (``myapp`` → ``myapp.NS.svc.cluster.local``);
    a name with a dot (``myapp.other``, ``api.example.com``) and the wildcard ``*`` are
    taken as written, exactly as Istio's ResolveShortnameToFQDN does, so a rule that
    works in Istio matches the same hosts here.
    """
    if host == "*" or "." in host:
        return host
    return f"{host}.{namespace}.{domain}"


def service_fqdn(name: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """The host of a Kubernetes-style Service ``name`` in ``namespace``."""
    return f"{name}.{namespace}.{domain}"


def host_matches(pattern: str, host: str) -> bool:
    """Whether ``host`` is covered by ``pattern`` (exact, ``*`` or a ``*.suffix`` wildcard)."""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return False


def short_name(host: str, domain: str = CLUSTER_DOMAIN) -> str:
    """``myapp.default.svc.cluster.local`` → ``myapp``; other hosts unchanged."""
    suffix = "." + domain
    if host.endswith(suffix):
        return host[: -len(suffix)].split(".")[0]
    return host

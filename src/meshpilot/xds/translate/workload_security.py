"""What a sidecar enforces on its inbound side, decided from the snapshot's policies.

The PeerAuthentication mode of each of its ports (STRICT, PERMISSIVE, DISABLE), the
AuthorizationPolicies that apply to it (CUSTOM, DENY, ALLOW, AUDIT) and the JWT rules of
the RequestAuthentications that select it, with Istio's scoping (selector in the
workload's namespace, namespace-wide, mesh-wide in the root namespace). One immutable,
comparable value per workload: the config builder rebuilds a proxy's listeners only when
it changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from meshpilot.api.mesh_config import DnsResolver
from meshpilot.api.request_authentication import JwtRule as JwtRuleSpec
from meshpilot.api.request_authentication import RequestAuthentication
from meshpilot.mesh import index
from meshpilot.mesh.model import Endpoint, MeshSnapshot, Named, ProxyNode
from meshpilot.security.policy import (
    DEFAULT_ROOT_NAMESPACE,
    WorkloadAuthorization,
    authorization_for,
    effective_mtls,
)
from meshpilot.security.policy_scope import has_selector, oldest_first, selects
from meshpilot.xds.translate import jwt

Mode = str  # "STRICT" | "PERMISSIVE" | "DISABLE"


@dataclass(frozen=True)
class InboundSecurity:
    """A workload's inbound enforcement (see the module docstring)."""

    trust_domain: str
    modes: tuple[tuple[int, Mode], ...]  # container port -> its mTLS mode
    authorization: WorkloadAuthorization
    jwt_rules: tuple[jwt.JwtRule, ...] = ()
    dns_resolvers: tuple[DnsResolver, ...] = ()  # what its JWKS clusters' names are asked of

    def mode(self, port: int) -> Mode:
        return next((m for p, m in self.modes if p == port), "PERMISSIVE")


def inbound_security(snapshot: MeshSnapshot, node: ProxyNode,
                     root_namespace: str = DEFAULT_ROOT_NAMESPACE) -> InboundSecurity:
    """What ``node`` enforces for the snapshot's policies."""
    peer_auth = [n.obj for n in snapshot.peer_authentications]
    modes = tuple(
        (p.container_port, effective_mtls(peer_auth, node.namespace, node.labels,
                                          p.container_port, root_namespace=root_namespace).mode)
        for p in sorted(node.inbound, key=lambda p: p.container_port))
    authorization = authorization_for([n.obj for n in snapshot.authorization_policies],
                                      node.namespace, node.labels,
                                      root_namespace=root_namespace)
    rules = tuple(_jwt_rule(rule, i)
                  for i, rule in enumerate(_jwt_rules(snapshot.request_authentications, node,
                                                       root_namespace)))
    resolvers = snapshot.mesh_config.dns_resolvers if rules else ()
    return InboundSecurity(snapshot.trust_domain, modes, authorization, rules, resolvers)


def _jwt_rules(policies: Iterable[Named[RequestAuthentication]], node: ProxyNode,
               root_namespace: str) -> list[JwtRuleSpec]:
    """The JWT rules of every RequestAuthentication selecting the workload (they add up,
    as in Istio), oldest policy first."""
    applying = [n.obj for n in policies if _applies(n, node, root_namespace)]
    return [rule for policy in oldest_first(applying) for rule in policy.spec.jwt_rules or ()]


def _applies(named: Named[RequestAuthentication], node: ProxyNode, root_namespace: str) -> bool:
    selector = named.obj.spec.selector
    if named.namespace == node.namespace:
        return selects(selector, node.labels)
    return named.namespace == root_namespace and not has_selector(selector)


def _jwt_rule(spec: JwtRuleSpec, index: int) -> jwt.JwtRule:
    return jwt.JwtRule(
        issuer=spec.issuer,
        audiences=tuple(spec.audiences or ()),
        jwks=spec.jwks,
        jwks_uri=spec.jwks_uri,
        jwks_cluster=jwks_cluster(spec.jwks_uri) if spec.jwks_uri else None,
        from_headers=tuple(jwt.JwtHeader(h.name, h.prefix or "")
                           for h in spec.from_headers or ()),
        from_params=tuple(spec.from_params or ()),
        from_cookies=tuple(spec.from_cookies or ()),
        forward_original_token=bool(spec.forward_original_token),
        output_payload_to_header=spec.output_payload_to_header,
        output_claim_to_headers=tuple(jwt.ClaimToHeader(c.header, c.claim)
                                      for c in spec.output_claim_to_headers or ()),
        timeout=spec.timeout,
    )


def jwks_cluster(uri: str) -> str:
    """The cluster through which Envoy fetches a ``jwksUri`` (one per scheme, host and
    port, named after them)."""
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"jwks|{parts.scheme}|{parts.hostname}|{port}"


def endpoint_takes_mtls(snapshot: MeshSnapshot, endpoint: Endpoint) -> bool:
    """Whether clients send ``endpoint`` mutual TLS (auto mTLS, as Istio): it has a
    sidecar, and the PeerAuthentication governing its port is not DISABLE. Decided once
    per (namespace, labels, port) and snapshot."""
    if not endpoint.has_sidecar:
        return False
    key = ("peer-mode", endpoint.namespace, tuple(sorted(endpoint.labels.items())), endpoint.port)
    derived = index.of(snapshot).derived
    mode = derived.get(key)
    if mode is None:
        mode = derived[key] = effective_mtls(
            [n.obj for n in snapshot.peer_authentications], endpoint.namespace,
            endpoint.labels, endpoint.port).mode
    return bool(mode != "DISABLE")

"""Wildcard ServiceEntry hosts (``*.example.com``) on the sidecar's HTTP proxy listener.

The outbound listener picks a service's route configuration by a routing scope keyed by
the request's host, and Envoy matches scope keys exactly. A wildcard service gets a route
configuration and a scope of its own, keyed by the pattern itself; a proxy that knows of
one computes the key of every request before the scope is chosen (an early header
mutation writing :data:`SCOPE_HEADER`, a CEL expression): a host a wildcard covers (most
specific pattern first) becomes that pattern, and any other host, or one the proxy knows
by its exact name (Istio prefers the exact host), stays itself. The header is removed
before the request goes upstream.

A proxy that knows no wildcard host keeps today's listener byte for byte (the key is the
``host`` header), and pays no expression per request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2 as filter_hm
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm,
)

from meshpilot.mesh import index
from meshpilot.mesh.model import MeshService, MeshSnapshot, ProxyNode
from meshpilot.xds.translate import pb

SCOPE_HEADER = "x-meshpilot-scope"
WildScopes = tuple[tuple[str, tuple[str, ...]], ...]
"""Per wildcard pattern the proxy knows (most specific first): the exact names it also
knows that the pattern would cover."""
_PORT = "(:[0-9]+)?$"


def scope_rules(snapshot: MeshSnapshot, node: ProxyNode) -> WildScopes:
    """The wildcard patterns ``node``'s outbound listener must compute scope keys for
    (none for a gateway, which routes by its Gateways' hosts)."""
    if node.kind == "gateway":
        return ()
    derived = index.of(snapshot).derived
    some = derived.get(WildScopes)
    if some is None:
        some = derived[WildScopes] = any(h.startswith("*.") for h in snapshot.services)
    if not some:
        return ()
    key = (WildScopes, node.namespace, index.egress_scope(snapshot, node))
    found = derived.get(key)
    if found is None:
        found = derived[key] = _rules(index.visible_services(snapshot, node).values())
    return found  # type: ignore[no-any-return]


def _rules(services: Iterable[MeshService]) -> WildScopes:
    exact: list[str] = []
    wild: list[str] = []
    for service in services:
        if service.host.startswith("*."):
            wild.append(service.host)
        else:
            exact += [service.host, *service.short_names]
    wild.sort(key=lambda h: (-len(h), h))
    return tuple((w, tuple(sorted(e for e in exact if e.endswith(w[1:])))) for w in wild)


def _cel_regex(pattern: str) -> str:
    """An RE2 pattern as a CEL string literal's contents (backslashes doubled)."""
    return pattern.replace("\\", "\\\\")


def key_expression(rules: WildScopes) -> str:
    """The CEL expression giving a request's scope key."""
    host = "request.host"
    expr = host
    for pattern, _ in reversed(rules):
        suffix = _cel_regex("^[^:]+" + re.escape(pattern[1:]) + _PORT)
        expr = f"{host}.matches('{suffix}') ? '{pattern}' : ({expr})"
    exact = sorted({e for _, names in rules for e in names})
    if exact:
        names = _cel_regex("^(" + "|".join(re.escape(e) for e in exact) + ")" + _PORT)
        expr = f"{host}.matches('{names}') ? {host} : ({expr})"
    return expr


def apply(manager: hcm.HttpConnectionManager, rules: WildScopes) -> None:
    """Key ``manager``'s routing scopes by :func:`key_expression` (nothing when no
    wildcard host is known)."""
    if not rules:
        return
    header = base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=SCOPE_HEADER, value=f"%CEL({key_expression(rules)})%"),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
    manager.early_header_mutation_extensions.append(extension_pb2.TypedExtensionConfig(
        name="meshpilot.wildcard_scope", typed_config=pb.pack(early_hm.HeaderMutation(
            mutations=[mutation_rules_pb2.HeaderMutation(append=header)]))))
    extractor = manager.scoped_routes.scope_key_builder.fragments[0].header_value_extractor
    extractor.name = SCOPE_HEADER
    drop = filter_hm.HeaderMutation(mutations=filter_hm.Mutations(
        request_mutations=[mutation_rules_pb2.HeaderMutation(remove=SCOPE_HEADER)]))
    manager.http_filters.insert(len(manager.http_filters) - 1, hcm.HttpFilter(
        name="envoy.filters.http.header_mutation", typed_config=pb.pack(drop)))

"""HTTPMatchRequest → Envoy RouteMatch, and whether a match applies to a proxy.

``sourceLabels``, ``sourceNamespace``, ``port`` and ``gateways`` are not request
properties Envoy can see: they decide, at build time, whether the match exists at
all in the config of a given proxy and listener.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from meshpilot.api.networking import (
    HTTPMatchRequest,
    L4MatchAttributes,
    StringMatch,
    TLSMatchAttributes,
)
from meshpilot.mesh.index import MESH, gateway_ref, labels_match


@dataclass(frozen=True)
class Where:
    """Where a route table is used: which proxy, which port, which gateway(s) (or mesh)."""

    node_labels: Mapping[str, str]
    node_namespace: str
    port: int
    gateways: frozenset[str] = frozenset()  # ``ns/name``; empty means the mesh (sidecars)


def applies(match: HTTPMatchRequest | TLSMatchAttributes | L4MatchAttributes,
            vs_namespace: str, where: Where) -> bool:
    if match.port is not None and match.port != where.port:
        return False
    if not labels_match(match.source_labels, where.node_labels):
        return False
    if match.source_namespace and match.source_namespace != where.node_namespace:
        return False
    if match.gateways:
        refs = {gateway_ref(g, vs_namespace) for g in match.gateways}
        return bool(refs & where.gateways) if where.gateways else MESH in refs
    return True


def regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def string_matcher(m: StringMatch, *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    if m.exact is not None:
        return string_pb2.StringMatcher(exact=m.exact, ignore_case=ignore_case)
    if m.prefix is not None:
        return string_pb2.StringMatcher(prefix=m.prefix, ignore_case=ignore_case)
    return string_pb2.StringMatcher(safe_regex=regex(m.regex or ""))


def header_matcher(name: str, m: StringMatch, *, invert: bool = False) -> rc.HeaderMatcher:
    """A header condition; an empty match (``{}``) tests presence (absence if inverted)."""
    out = rc.HeaderMatcher(name=name.lower(), invert_match=invert)
    if m.exact is None and m.prefix is None and m.regex is None:
        out.present_match = True
    else:
        out.string_match.CopyFrom(string_matcher(m))
        # withoutHeaders (as Istio): an absent header does not match, so the rule applies
        out.treat_missing_header_as_empty = invert
    return out


def _query(name: str, m: StringMatch) -> rc.QueryParameterMatcher:
    out = rc.QueryParameterMatcher(name=name)
    if m.exact is None and m.prefix is None and m.regex is None:
        out.present_match = True
    else:
        out.string_match.CopyFrom(string_matcher(m))
    return out


def route_match(m: HTTPMatchRequest | None) -> rc.RouteMatch:
    """The Envoy match for one HTTPMatchRequest (None: everything, prefix ``/``)."""
    out = rc.RouteMatch()
    uri = m.uri if m else None
    if uri is None or (uri.exact is None and uri.regex is None):
        out.prefix = uri.prefix if uri and uri.prefix is not None else "/"
    elif uri.exact is not None:
        out.path = uri.exact
    else:
        out.safe_regex.CopyFrom(regex(uri.regex or ""))
    if m is None:
        return out
    if m.ignore_uri_case:
        out.case_sensitive.value = False
    pseudo = ((":method", m.method), (":authority", m.authority), (":scheme", m.scheme))
    out.headers.extend(header_matcher(n, v) for n, v in pseudo if v is not None)
    out.headers.extend(header_matcher(n, v) for n, v in m.headers.items())
    out.headers.extend(header_matcher(n, v, invert=True) for n, v in m.without_headers.items())
    out.query_parameters.extend(_query(n, v) for n, v in m.query_params.items())
    return out

"""The native matcher in front of the outbound traffic policy's Lua filter.

Every request through a sidecar's HTTP proxy passed through the policy filter, mesh
traffic too, and running Lua at all (a coroutine per request, headers read through its
API) cost the calling sidecar about 18,000 instructions per request (+9.6 %). Nearly all
of a mesh's requests are for hosts it knows, so Envoy's own matcher now decides first
(``ExtensionWithMatcher``, a ``SkipFilter`` action): a request whose host is one of the
class's scope keys never enters Lua, and the Lua filter, which only sees the others,
re-keys every request it sees.

The keys are one RE2 expression matched against ``:authority`` (and, where wildcard
hosts are known, against :data:`~meshpilot.xds.translate.wildcards.SCOPE_HEADER`, whose
value for a covered name is its pattern). A table (``exact_match_map``) would be a hash
lookup, but each entry carries its action with a type URL of about 80 bytes, and the
authority carries a port the table cannot strip (so a second table of ``host:``
prefixes): 930 KB for the 4,000 keys of 1,000 services, against 21 KB for the
expression, which is written as compactly as the Lua key list was (a service's
``name.namespace`` stands for its three spellings, see
:func:`~meshpilot.xds.translate.egress.encode_keys`). Like the Lua it replaces, the
expression reads the host as everything before the first ``:``; after it, only the ports
the key's route config routes (keys are grouped by those ports, most services sharing
one group), so a known host at a port it does not list is not known: it goes by the
outbound traffic policy, as in Istio.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import extension_pb2 as core_ext
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.common.matcher.action.v3 import skip_action_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from xds.core.v3 import extension_pb2 as xds_ext
from xds.type.matcher.v3 import matcher_pb2, regex_pb2, string_pb2

from meshpilot.xds.translate import pb

_NEVER = r"\b\B"
"""An RE2 expression no string matches (an empty key set knows nothing)."""
_SERVICE_SPELLINGS = r"(?:\.svc(?:\.cluster\.local)?)?"
_ANY_PORT = "(?::.*)?"
Predicate = matcher_pb2.Matcher.MatcherList.Predicate


def _literal(key: str) -> str:
    """``key`` as an RE2 literal: of the characters a key may hold (letters, digits,
    ``-._*``) only ``.`` and ``*`` mean something to RE2."""
    return key.replace(".", r"\.").replace("*", r"\*")


KeyGroup = tuple[list[str], list[str], tuple[str, ...]]
"""Keys that share their port suffixes: (names written as they are, ``name.namespace``
bases, the suffixes that may follow any of them: ``""`` for none, ``":8080"``...)."""


def _suffix_expression(suffixes: tuple[str, ...] | None) -> str:
    """RE2 for what may follow a key: any port when ``suffixes`` is None, else exactly
    one of them."""
    if suffixes is None:
        return _ANY_PORT
    ports = sorted(s[1:] for s in suffixes if s)
    if not ports:
        return ""
    one = f":{ports[0]}" if len(ports) == 1 else f":(?:{'|'.join(ports)})"
    return f"(?:{one})?" if "" in suffixes else one


def _hosts(names: Iterable[str], services: Iterable[str]) -> list[str]:
    parts = []
    bases = [_literal(b) for b in services]
    if bases:
        parts.append(f"(?:{'|'.join(bases)}){_SERVICE_SPELLINGS}")
    return parts + [_literal(n) for n in names]


def known_expression(names: Iterable[str], services: Iterable[str],
                     suffixes: tuple[str, ...] | None = None) -> str:
    """The RE2 expression matching an authority whose host (up to the first ``:``) is one
    of ``names``, or one of ``services`` (``name.namespace`` bases) with or without
    ``.svc`` / ``.svc.cluster.local`` after it, followed by one of ``suffixes`` (any
    port when None)."""
    return grouped_expression([(list(names), list(services), suffixes)])


def grouped_expression(groups: Iterable[tuple[list[str], list[str], tuple[str, ...] | None]]
                       ) -> str:
    """:func:`known_expression` of several groups of keys, each with its own suffixes:
    one expression, so one match per request whatever the number of groups."""
    alternatives = []
    for names, services, suffixes in groups:
        hosts = _hosts(names, services)
        if hosts:
            alternatives.append(f"(?:{'|'.join(hosts)}){_suffix_expression(suffixes)}")
    if not alternatives:
        return _NEVER
    if len(alternatives) == 1:
        return f"^{alternatives[0]}$"
    return f"^(?:{'|'.join(alternatives)})$"


def _matches(header: str, expression: str) -> Predicate:
    value = string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(
        google_re2=regex_pb2.RegexMatcher.GoogleRE2(), regex=expression))
    source = xds_ext.TypedExtensionConfig(name=header, typed_config=pb.pack(
        http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=header)))
    return Predicate(single_predicate=Predicate.SinglePredicate(input=source,
                                                                value_match=value))


def _covered(patterns: list[str], suffixes: tuple[str, ...], scope_header: str) -> Predicate:
    """A request a wildcard pattern of ``patterns`` covers (the scope header holds the
    pattern, without a port) at one of the ports the pattern's route config routes (read
    from the authority)."""
    port = f"^[^:]*{_suffix_expression(suffixes)}$"
    return Predicate(and_matcher=Predicate.PredicateList(predicate=[
        _matches(scope_header, known_expression(patterns, ())),
        _matches(":authority", port)]))


def skip_known(filter_config: core_ext.TypedExtensionConfig, groups: list[KeyGroup],
               scope_header: str) -> extension_matcher_pb2.ExtensionWithMatcher:
    """``filter_config`` skipped for requests to a known host at a port it is routed
    at: its authority is a key and one of the key's suffixes, or (for a wildcard pattern)
    the scope header is a pattern and the authority's port one of the pattern's."""
    predicate = _matches(":authority", grouped_expression(groups))
    covered = [_covered(patterns, suffixes, scope_header) for names, _, suffixes in groups
               if (patterns := [n for n in names if n.startswith("*.")])]
    if covered:
        predicate = Predicate(or_matcher=Predicate.PredicateList(
            predicate=[predicate, *covered]))
    skip = xds_ext.TypedExtensionConfig(name="skip", typed_config=pb.pack(
        skip_action_pb2.SkipFilter()))
    matcher = matcher_pb2.Matcher(matcher_list=matcher_pb2.Matcher.MatcherList(matchers=[
        matcher_pb2.Matcher.MatcherList.FieldMatcher(
            predicate=predicate, on_match=matcher_pb2.Matcher.OnMatch(action=skip))]))
    return extension_matcher_pb2.ExtensionWithMatcher(xds_matcher=matcher,
                                                      extension_config=filter_config)

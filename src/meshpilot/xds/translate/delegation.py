"""Delegate VirtualServices, as Istio merges them: a root's HTTP rule with ``delegate``
stands for the rules of another VirtualService (one without hosts), each narrowed by the
root rule's matches.

For every rule of the delegate, in order:

- its matches are merged with the root rule's: each delegate match must fit inside at
  least one root match (no condition of the two contradicts: a URI prefix inside the
  root's prefix, an exact URI under it, equal exact values, the same port); it is
  merged with every root match it fits (the root's conditions fill what the delegate
  leaves unset; headers and query parameters add up, the delegate's winning on the same
  key). A delegate match that fits none drops the whole rule, as does a regex on either
  side. A delegate rule without matches takes the root's;
- what the delegate rule leaves unset of rewrite, timeout, retries, fault, mirror,
  mirror percentage, CORS and headers comes from the root rule; names join as
  ``root-delegate``.

Destinations keep the delegate's namespace (short hosts resolve there). A delegate's own
``delegate`` rules are not followed (one level, as Istio). One deliberate difference:
the root matches' ``sourceLabels``, ``sourceNamespace`` and ``gateways`` are judged
before merging (a root match that does not apply to the proxy merges nothing), where
Istio drops them from the merged match. A missing delegate drops the root rule (Istio
too); validation warns about it.
"""

from __future__ import annotations

from meshpilot.api.networking import HTTPMatchRequest, HTTPRoute, StringMatch

_INHERITED = ("rewrite", "timeout", "retries", "fault", "mirror", "mirror_percent",
              "mirror_percentage", "cors_policy", "headers")
_STRING_FIELDS = ("uri", "scheme", "method", "authority")


def merged_rule(root: HTTPRoute, root_matches: list[HTTPMatchRequest], rule: HTTPRoute
                ) -> HTTPRoute | None:
    """The delegate ``rule`` under the ``root`` rule (whose applicable matches are
    ``root_matches``); None when its matches contradict the root's."""
    matches = _merged_matches(root_matches, rule.match)
    if matches is None:
        return None
    update: dict[str, object] = {"match": matches, "name": _joined(root.name, rule.name)}
    for field in _INHERITED:
        if getattr(rule, field) in (None, []):
            update[field] = getattr(root, field)
    if not rule.mirrors and root.mirrors:
        update["mirrors"] = root.mirrors
    return rule.model_copy(update=update)


def _merged_matches(roots: list[HTTPMatchRequest], leaves: list[HTTPMatchRequest]
                    ) -> list[HTTPMatchRequest] | None:
    if not roots:
        return leaves
    if not leaves:
        return roots
    out: list[HTTPMatchRequest] = []
    for leaf in leaves:
        fitting = [root for root in roots if not _conflict(root, leaf)]
        if not fitting:
            return None
        out.extend(_merged_match(root, leaf) for root in fitting)
    return out


def _merged_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    update: dict[str, object] = {"name": _joined(root.name, leaf.name)}
    for field in _STRING_FIELDS:
        if getattr(leaf, field) is None:
            update[field] = getattr(root, field)
    for field in ("headers", "without_headers", "query_params"):
        update[field] = {**getattr(root, field), **getattr(leaf, field)}
    if leaf.port is None:
        update["port"] = root.port
    return leaf.model_copy(update=update)


def _conflict(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> bool:
    if any(_string_conflict(getattr(root, f), getattr(leaf, f)) for f in _STRING_FIELDS):
        return True
    pairs = [(root.headers.get(k), v) for k, v in leaf.headers.items()]
    pairs += [(root.headers.get(k), v) for k, v in leaf.without_headers.items()]
    pairs += [(root.query_params.get(k), v) for k, v in leaf.query_params.items()]
    if any(_string_conflict(r, v) for r, v in pairs):
        return True
    if bool(root.ignore_uri_case) != bool(leaf.ignore_uri_case):
        return True
    return root.port is not None and leaf.port is not None and root.port != leaf.port


def _string_conflict(root: StringMatch | None, leaf: StringMatch | None) -> bool:
    """Whether ``leaf`` can match something ``root`` cannot (Istio's test)."""
    if root is None or leaf is None:
        return False
    if root.regex is not None or leaf.regex is not None:
        return True
    if root.exact is not None:
        return leaf.exact != root.exact
    if root.prefix is not None:
        value = leaf.prefix if leaf.prefix is not None else leaf.exact
        return value is None or not value.startswith(root.prefix)
    return True


def _joined(root: str | None, leaf: str | None) -> str | None:
    if root and leaf:
        return f"{root}-{leaf}"
    return leaf or root

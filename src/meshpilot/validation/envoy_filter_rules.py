"""EnvoyFilter rules beyond its model: what meshpilot applies, and values Envoy can take.

Istio's EnvoyFilter has more ``applyTo`` values, operations and match fields than
meshpilot applies; each one it does not is refused here (MP0086) naming the field and
the values that are applied, so no patch is accepted and then silently not made:

- ``applyTo`` EXTENSION_CONFIG, BOOTSTRAP, LISTENER_FILTER; ``targetRefs``;
  ``match.proxy`` (proxyVersion, metadata); ``patch.filterClass`` other than
  UNSPECIFIED; the listener match's ``portName`` and ``listenerFilter``; the route
  configuration match's ``portName`` and ``gateway``;
- an operation its ``applyTo`` does not take here (:data:`OPERATIONS`).

A patch ``value`` must parse as the Envoy v3 message its ``applyTo`` takes (MP0087, with
protobuf's reason: the unknown field, the bad duration, the unknown ``@type``); an
operation that needs one (all but REMOVE) must have it, and MERGE / REMOVE / REPLACE of
a filter must name it, else it would act on every filter (MP0011).

Whether Envoy takes the config the patches yield is judged with the mesh's config, by
the control plane at apply (MP0088, ``meshpilot.server.envoy_filter_check``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_list, as_mapping

HCM = "envoy.filters.network.http_connection_manager"

OPERATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "LISTENER": ("MERGE", "ADD", "REMOVE"),
    "FILTER_CHAIN": ("MERGE", "ADD", "REMOVE"),
    "NETWORK_FILTER": ("MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER",
                       "INSERT_FIRST", "REPLACE"),
    "HTTP_FILTER": ("MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER",
                    "INSERT_FIRST", "REPLACE"),
    "ROUTE_CONFIGURATION": ("MERGE",),
    "VIRTUAL_HOST": ("MERGE", "ADD", "REMOVE"),
    "HTTP_ROUTE": ("MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"),
    "CLUSTER": ("MERGE", "ADD", "REMOVE", "REPLACE"),
})
"""The operations meshpilot applies, per ``applyTo`` it applies."""

_MATCH_OF: Mapping[str, str] = MappingProxyType({
    "LISTENER": "listener", "FILTER_CHAIN": "listener", "NETWORK_FILTER": "listener",
    "HTTP_FILTER": "listener", "ROUTE_CONFIGURATION": "routeConfiguration",
    "VIRTUAL_HOST": "routeConfiguration", "HTTP_ROUTE": "routeConfiguration",
    "CLUSTER": "cluster",
})
"""The match each ``applyTo`` reads (Istio's pairing)."""

_UNAPPLIED_MATCH: tuple[tuple[Path, str], ...] = (
    (("proxy",), "proxy versions and metadata are not matched: every proxy of the mesh "
                 "runs the same Envoy; select workloads with workloadSelector"),
    (("listener", "portName"), "give the port as listener.portNumber"),
    (("listener", "listenerFilter"), "listener filters are not patched"),
    (("routeConfiguration", "portName"), "give the port as routeConfiguration.portNumber"),
    (("routeConfiguration", "gateway"),
     "gateway route configs are matched by portNumber or name (http.<port>)"),
)


def envoy_filter_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    found: list[Finding] = []
    if as_list(spec.get("targetRefs")):
        found.append(Finding(codes.ENVOY_FILTER_NOT_APPLIED, ("spec", "targetRefs"),
                             "targetRefs are not applied: an EnvoyFilter selects workloads "
                             "with workloadSelector (or all of its namespace without one)"))
    for i, patch in enumerate(as_list(spec.get("configPatches"))):
        found.extend(_patch_findings(as_mapping(patch), ("spec", "configPatches", i)))
    return found


def _patch_findings(patch: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    apply_to = patch.get("applyTo")
    if apply_to not in OPERATIONS:
        yield Finding(codes.ENVOY_FILTER_NOT_APPLIED if apply_to else codes.MISSING_FIELD,
                      (*path, "applyTo"),
                      f"applyTo {apply_to!r} is not applied; use one of "
                      f"{', '.join(OPERATIONS)}" if apply_to else
                      f"a patch needs applyTo: one of {', '.join(OPERATIONS)}")
        return
    body = as_mapping(patch.get("patch"))
    operation = body.get("operation")
    if operation not in OPERATIONS[apply_to]:
        yield Finding(codes.ENVOY_FILTER_NOT_APPLIED if operation else codes.MISSING_FIELD,
                      (*path, "patch", "operation"),
                      f"operation {operation!r} is not applied to {apply_to}; use one of "
                      f"{', '.join(OPERATIONS[apply_to])}")
        return
    if body.get("filterClass") not in (None, "UNSPECIFIED"):
        yield Finding(codes.ENVOY_FILTER_NOT_APPLIED, (*path, "patch", "filterClass"),
                      "filterClass is not applied: place the filter with INSERT_BEFORE or "
                      "INSERT_AFTER and match.listener.filterChain.filter.subFilter.name")
    yield from _match_findings(as_mapping(patch.get("match")), apply_to, (*path, "match"))
    yield from _target_findings(patch, apply_to, operation, path)
    yield from _value_findings(patch, apply_to, operation, path)


def _match_findings(match: Mapping[str, Any], apply_to: str, path: Path) -> Iterator[Finding]:
    for field, why in _UNAPPLIED_MATCH:
        part: Any = match
        for key in field:
            part = as_mapping(part).get(key)
        if part not in (None, "", {}):
            yield Finding(codes.ENVOY_FILTER_NOT_APPLIED, (*path, *field),
                          f"match field {'.'.join(field)} is not applied: {why}")
    wanted = _MATCH_OF[apply_to]
    for other in ("listener", "routeConfiguration", "cluster"):
        if other != wanted and match.get(other) is not None:
            yield Finding(codes.INVALID_VALUE, (*path, other),
                          f"applyTo {apply_to} is matched by match.{wanted}, not "
                          f"match.{other}")


def _filter_match(patch: Mapping[str, Any]) -> Mapping[str, Any]:
    listener = as_mapping(as_mapping(patch.get("match")).get("listener"))
    return as_mapping(as_mapping(listener.get("filterChain")).get("filter"))


def _target_findings(patch: Mapping[str, Any], apply_to: str, operation: str,
                     path: Path) -> Iterator[Finding]:
    """A filter patch that acts on one filter must name it; HTTP filters are in HCM."""
    filt = _filter_match(patch)
    where = (*path, "match", "listener", "filterChain", "filter")
    if apply_to == "HTTP_FILTER" and filt.get("name") not in (None, HCM):
        yield Finding(codes.INVALID_VALUE, (*where, "name"),
                      f"HTTP filters are in the HTTP connection manager: name {HCM} here, "
                      "and the HTTP filter in subFilter.name")
    acts_on_one = operation in ("MERGE", "REMOVE", "REPLACE")
    if apply_to == "HTTP_FILTER" and acts_on_one and \
            not as_mapping(filt.get("subFilter")).get("name"):
        yield Finding(codes.MISSING_FIELD, (*where, "subFilter", "name"),
                      f"{operation} of an HTTP filter names the filter it acts on "
                      "(e.g. envoy.filters.http.router), else it would act on all of them")
    if apply_to == "NETWORK_FILTER" and acts_on_one and not filt.get("name"):
        yield Finding(codes.MISSING_FIELD, (*where, "name"),
                      f"{operation} of a network filter names the filter it acts on "
                      f"(e.g. {HCM}), else it would act on all of them")


def _value_findings(patch: Mapping[str, Any], apply_to: str, operation: str,
                    path: Path) -> Iterator[Finding]:
    value = as_mapping(patch.get("patch")).get("value")
    where = (*path, "patch", "value")
    if value is None:
        if operation != "REMOVE":
            yield Finding(codes.MISSING_FIELD, where,
                          f"{operation} needs a value: the Envoy {apply_to} (v3 API JSON)")
        return
    # imported on first use: the Envoy API's protobuf modules, which the CLI's other
    # commands (which load this module) do not need
    from meshpilot.api.envoy_values import EnvoyValueError, parse_value, value_type

    try:
        parsed = parse_value(as_mapping(value), value_type(apply_to))
    except EnvoyValueError as exc:
        yield Finding(codes.ENVOY_FILTER_VALUE, where, str(exc))
        return
    if operation == "ADD" and apply_to in ("LISTENER", "CLUSTER") and \
            not getattr(parsed, "name", ""):
        yield Finding(codes.MISSING_FIELD, (*where, "name"),
                      f"an added {apply_to.lower()} needs a name")

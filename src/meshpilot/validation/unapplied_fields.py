"""Fields of the Istio kinds that meshpilot accepts and does not act on: said out loud.

meshpilot's rule is that nothing a user applies is stored and silently ignored. Every
field a model accepts was checked against the translation (``xds/translate``, ``mesh``,
``security``); those nothing reads are listed in :data:`TABLE`, each with why and what to
do instead. Most are warnings (MP2016): the object is applied, without that field.
Where leaving a field out would weaken security (traffic Istio would encrypt or verify
sent in plaintext or unverified, a header Istio would overwrite left as the client sent
it) it is refused (MP0046): meshpilot must not look as if it enforced what it does not.

A rule reads the body in wire form (camelCase), as the model writes it back, so defaults
are filled in: an empty list or ``false`` is the same as not writing the field, and is
not reported. When a field becomes applied, its row goes (docs/diagnostics.md lists the
same fields, for users).

Found applied, so not listed: DestinationRule ``workloadSelector`` and every ``tls``
field (what cannot be honoured is refused by the model), ``ignoreUriCase``,
ServiceEntry ``workloadSelector``, and every PeerAuthentication and AuthorizationPolicy
field (CUSTOM and ``targetRef`` are refused elsewhere: MP0035, MP0036).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.codes import Code
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_list, as_mapping

EACH = "[]"
"""In a pattern: every item of a list (the index goes into the path)."""
KEYS = "{}"
"""In a pattern: every key of a mapping (the key goes into the path)."""

Pattern = tuple[str, ...]
When = Callable[[str | int, Any], bool]
"""Whether a value found at a pattern is reported: (last path part, value) -> bool."""

TLS_MODE_LABEL = "security.istio.io/tlsMode"
_SUPPORTED_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


def given(_: str | int, value: Any) -> bool:
    """Written with an effect: not absent, not an empty list, not ``false``. (An empty
    mapping counts: ``tcpKeepalive: {}`` switches keepalive on in Istio.)"""
    return value is not None and value is not False and value != []


def _truthy(_: str | int, value: Any) -> bool:
    return bool(value)


def _equals(wanted: Any) -> When:
    return lambda _, value: value == wanted


def _unsupported_redirect(_: str | int, value: Any) -> bool:
    return value is not None and value not in _SUPPORTED_REDIRECT_CODES


_NAMED_BY_CLIENT = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB", "TLS", "HTTPS"})
"""Port protocols whose connections name their host (request host, or SNI)."""


def _wildcard_passthrough(_: str | int, spec: Any) -> bool:
    """A wildcard host of an entry resolved NONE (the default) with a port whose
    connections name no host (plain TCP, mongo, redis, ...)."""
    spec = as_mapping(spec)
    ports = [as_mapping(p) for p in as_list(spec.get("ports"))]
    return spec.get("resolution", "NONE") == "NONE" and any(
        "*" in str(h) for h in as_list(spec.get("hosts"))) and any(
        str(p.get("protocol") or "").upper() not in _NAMED_BY_CLIENT for p in ports)


def _address_block(_: str | int, value: Any) -> bool:
    """An address that is a block of more than one address (or does not parse)."""
    try:
        return ipaddress.ip_network(str(value), strict=False).num_addresses > 1
    except ValueError:
        return True


def _istio_tls_mode(key: str | int, value: Any) -> bool:
    return key == TLS_MODE_LABEL and value == "istio"


def _mtls_by_account(_: str | int, workload: Any) -> bool:
    """A workload with a ``serviceAccount`` gets mutual TLS in Istio unless its
    ``security.istio.io/tlsMode`` label says otherwise (Istio's rule for entries)."""
    mode = as_mapping(as_mapping(workload).get("labels")).get(TLS_MODE_LABEL, "istio")
    return bool(as_mapping(workload).get("serviceAccount")) and mode == "istio"


def _pseudo_request_header(key: str | int, _: Any) -> bool:
    """Set or added on the request: ``host`` and ``:authority`` become a host rewrite;
    any other ``:`` header Envoy does not let a route edit."""
    name = str(key).lower()
    return name.startswith(":") and name != ":authority"


def _pseudo_or_host(key: str | int, value: Any) -> bool:
    """Removed (the value names the header), or edited on the response (the key does)."""
    name = str(value if isinstance(key, int) else key).lower()
    return name.startswith(":") or name == "host"


@dataclass(frozen=True)
class Unapplied:
    """One field (pattern of wire names) that is not applied, and what to say about it.

    ``why`` is the message; ``{field}`` and ``{value}`` in it are the last path part and
    the value found there. ``when`` decides on the value; a row whose decision needs the
    field's siblings names the field in ``inside`` instead, and ``when`` gets the mapping
    the pattern reaches (the path reported still ends at the field)."""

    pattern: Pattern
    why: str
    when: When = given
    code: Code = codes.UNAPPLIED_FIELD
    inside: str = ""

    def hits(self, body: Mapping[str, Any]) -> Iterator[tuple[Path, Any]]:
        """(path, value) of each place in ``body`` this row reports."""
        for path, value in found_at(body, self.pattern):
            if not self.inside:
                if self.when(path[-1], value):
                    yield path, value
            elif self.inside in as_mapping(value) and self.when(self.inside, value):
                yield (*path, self.inside), as_mapping(value)[self.inside]


def row(*pattern: str, why: str, when: When = given, code: Code = codes.UNAPPLIED_FIELD,
         inside: str = "") -> Unapplied:
    return Unapplied(pattern, why, when, code, inside)


_REFUSED = codes.UNAPPLIED_SECURITY_FIELD


# --- VirtualService ----------------------------------------------------------------------

_HTTP = ("spec", "http", EACH)
_HEADER_PLACES: tuple[Pattern, ...] = ((*_HTTP, "headers"), (*_HTTP, "route", EACH, "headers"))
_HEADER_WHY = ("editing header {field} is not applied: Envoy lets a route edit neither "
               "pseudo-headers (':'-prefixed) nor, on the response or by removal, host; "
               "change the path and host with rewrite.uri and rewrite.authority")
_REMOVED_HEADER_WHY = _HEADER_WHY.replace("{field}", "{value}")


def _header_rows(place: Pattern) -> tuple[Unapplied, ...]:
    return (
        *(row(*place, "request", op, KEYS, why=_HEADER_WHY, when=_pseudo_request_header)
          for op in ("set", "add")),
        *(row(*place, "response", op, KEYS, why=_HEADER_WHY, when=_pseudo_or_host)
          for op in ("set", "add")),
        *(row(*place, side, "remove", EACH, why=_REMOVED_HEADER_WHY, when=_pseudo_or_host)
          for side in ("request", "response")),
    )


VIRTUAL_SERVICE: tuple[Unapplied, ...] = (
    row(*_HTTP, "match", EACH, "statPrefix",
         why="statPrefix is not applied: the route keeps no stats of its own; the istio_* "
             "metrics count requests by service and version"),
    row(*_HTTP, "redirect", "derivePort",
         why="derivePort is not applied: the redirect keeps Envoy's default port handling; "
             "give redirect.port to set the port"),
    row(*_HTTP, "redirect", "redirectCode", when=_unsupported_redirect,
         why="redirectCode {value} is not applied: the redirect answers 302; use 301, 302, "
             "303, 307 or 308"),
    row(*_HTTP, "fault", "delay", "exponentialDelay",
         why="exponentialDelay is not applied: Envoy has no exponential delay, so no delay "
             "is injected; use fixedDelay"),
    row(*_HTTP, "fault", "abort", "http2Error",
         why="http2Error is not applied: no abort is injected; use httpStatus or "
             "grpcStatus"),
    *(row for place in _HEADER_PLACES for row in _header_rows(place)),
)

# --- DestinationRule ---------------------------------------------------------------------

_POLICIES: tuple[Pattern, ...] = (("spec", "trafficPolicy"),
                                  ("spec", "subsets", EACH, "trafficPolicy"))
_PORT_POLICIES: tuple[Pattern, ...] = tuple((*p, "portLevelSettings", EACH) for p in _POLICIES)

_POLICY_FIELDS: tuple[Unapplied, ...] = (
    row("loadBalancer", "simple", when=_equals("PASSTHROUGH"),
         why="simple: PASSTHROUGH is not applied: apps reach services through their "
             "sidecar's HTTP proxy, so there is no original destination to pass through to "
             "and the cluster balances with LEAST_REQUEST; remove it"),
    row("loadBalancer", "consistentHash", "httpCookie", "attributes",
         why="attributes are not applied: a cookie the proxy generates carries name, path "
             "and ttl only; remove them"),
    row("connectionPool", "http", "h2UpgradePolicy", when=_equals("UPGRADE"),
         why="h2UpgradePolicy: UPGRADE is not applied: HTTP/1.1 requests go upstream as "
             "HTTP/1.1; declare the port as http2 or grpc to speak HTTP/2"),
    row("connectionPool", "http", "useClientProtocol",
         why="useClientProtocol is not applied: the upstream protocol follows the port's "
             "protocol; remove it"),
    row("connectionPool", "http", "maxConcurrentStreams", when=_truthy,
         why="maxConcurrentStreams is not applied: Envoy's default limit of streams per "
             "HTTP/2 connection holds; use http2MaxRequests to bound requests"),
)
_WHOLE_POLICY_FIELDS: tuple[Unapplied, ...] = (
    row("tunnel",
         why="tunnel is not applied: connections go straight to the endpoints, not through "
             "a tunnelling proxy; remove it"),
    row("proxyProtocol",
         why="proxyProtocol is not applied: no PROXY protocol header is sent upstream; "
             "remove it"),
)


def _at(places: tuple[Pattern, ...], rows: tuple[Unapplied, ...]) -> tuple[Unapplied, ...]:
    """``rows`` (patterns relative to a traffic policy) at each of ``places``."""
    return tuple(Unapplied((*place, *row.pattern), row.why, row.when, row.code, row.inside)
                 for place in places for row in rows)


DESTINATION_RULE: tuple[Unapplied, ...] = (
    *_at(_POLICIES + _PORT_POLICIES, _POLICY_FIELDS),
    *_at(_POLICIES, _WHOLE_POLICY_FIELDS),
)

# --- Gateway -----------------------------------------------------------------------------

_SERVER = ("spec", "servers", EACH)

GATEWAY: tuple[Unapplied, ...] = (
    row(*_SERVER, "bind",
         why="bind is not applied: the gateway listens on the loopback port endpoints.json "
             "lists for the server's port (ingress_ports); remove it"),
    row(*_SERVER, "defaultEndpoint",
         why="defaultEndpoint is not applied: the gateway forwards by the VirtualServices "
             "bound to it; remove it"),
    row(*_SERVER, "port", "targetPort",
         why="targetPort is not applied on a Gateway server (Istio reads it on ServiceEntry "
             "ports only); remove it"),
)

# --- Sidecar -----------------------------------------------------------------------------

_EGRESS = ("spec", "egress", EACH)
_INGRESS = ("spec", "ingress", EACH)
_POOLS: tuple[Pattern, ...] = (("spec", "inboundConnectionPool"),
                               (*_INGRESS, "connectionPool"))
_POOL_FIELDS: tuple[Unapplied, ...] = tuple(
    Unapplied(r.pattern[1:], r.why, r.when, r.code, r.inside)
    for r in _POLICY_FIELDS if r.pattern[0] == "connectionPool")
"""The connection pool fields nothing applies, relative to a pool (as in a
DestinationRule's)."""
SIDECAR: tuple[Unapplied, ...] = (
    row(*_INGRESS, "bind",
         why="bind is not applied: the ingress listener binds the pod's own address "
             "(POD_IP), where the Service endpoints point; a pod has no other address here; "
             "remove it"),
    row(*_INGRESS, "captureMode", when=_equals("IPTABLES"),
         why="captureMode IPTABLES is not applied: nothing captures traffic here; the "
             "listener binds POD_IP and the port, and callers reach it there, as with NONE"),
    row(*_INGRESS, "port", "targetPort",
         why="targetPort is not applied on a Sidecar ingress port (Istio reads it on "
             "ServiceEntry ports only); the listener hands traffic to defaultEndpoint"),
    row(*_INGRESS, "tls", "httpsRedirect",
         why="httpsRedirect is not applied: a sidecar's ingress listener terminates TLS or "
             "takes plaintext, it does not redirect; remove it"),
    *_at(_POOLS, _POOL_FIELDS),
    *(row(*_EGRESS, field,
           why=f"{field} is not applied: one outbound HTTP proxy listener serves every port, "
               "and the hosts of all egress listeners together are what the sidecar knows")
      for field in ("port", "bind", "captureMode")),
    row("spec", "outboundTrafficPolicy", "egressProxy", code=_REFUSED,
         why="outboundTrafficPolicy.egressProxy is refused: Istio would send the traffic "
             "for hosts outside the registry through that egress proxy; meshpilot sends it "
             "straight to the host it names, past the proxy meant to control it; remove "
             "it (mode ALLOW_ANY or REGISTRY_ONLY is applied)"),
)

# --- ServiceEntry and WorkloadEntry ------------------------------------------------------

_SERVICE_ACCOUNT_WHY = (
    "serviceAccount is refused: Istio would send this workload mutual TLS and verify it "
    "has that identity; meshpilot sends it plaintext (it has no sidecar of meshpilot's), "
    "so the identity would be checked nowhere; remove it, and call the workload over TLS "
    "with a DestinationRule (tls mode SIMPLE, subjectAltNames) if it must be verified")
_TLS_MODE_WHY = (
    "label {field}: istio is refused: Istio would send this workload mutual TLS; "
    "meshpilot sends it plaintext (it has no sidecar of meshpilot's); remove the label, and "
    "use a DestinationRule with tls mode SIMPLE or MUTUAL for TLS")


def _workload_rows(*where: str) -> tuple[Unapplied, ...]:
    """A WorkloadEntry's spec, or one ServiceEntry endpoint (same shape), at ``where``."""
    return (
        row(*where, why=_SERVICE_ACCOUNT_WHY, when=_mtls_by_account, code=_REFUSED,
             inside="serviceAccount"),
        row(*where, "labels", KEYS, why=_TLS_MODE_WHY, when=_istio_tls_mode, code=_REFUSED),
    )


SERVICE_ENTRY: tuple[Unapplied, ...] = (
    row("spec", why="wildcard host with resolution NONE is not applied on its TCP "
                    "ports: connections are not captured, so there is no original "
                    "destination, and a plain TCP connection names no host to pass "
                    "through to (its HTTP ports pass through to the request's host, its "
                    "TLS and HTTPS ports to the SNI name); give endpoints with resolution "
                    "STATIC or DNS, or list the hosts by name",
        when=_wildcard_passthrough, inside="hosts"),
    row("spec", "addresses", EACH, when=_address_block,
         why="address block {value} is not applied: connections to addresses are not "
             "captured, so none made to the block reaches this entry; apps reach its "
             "HTTP ports by host name through their sidecar's HTTP proxy and its TCP "
             "and TLS ports through their sidecar's listener named in the "
             "{{HOST}}_SERVICE_HOST/_PORT variables; list single IPs"),
    row("spec", "subjectAltNames", code=_REFUSED,
         why="subjectAltNames is refused: meshpilot does not verify the entry's endpoints "
             "against it, so a client would accept any identity the mesh's roots vouch "
             "for; list the names in the DestinationRule for this host "
             "(trafficPolicy.tls.subjectAltNames), which is verified"),
    *_workload_rows("spec", "endpoints", EACH),
)

WORKLOAD_ENTRY: tuple[Unapplied, ...] = _workload_rows("spec")

TABLE: Mapping[str, tuple[Unapplied, ...]] = MappingProxyType({
    "DestinationRule": DESTINATION_RULE,
    "Gateway": GATEWAY,
    "ServiceEntry": SERVICE_ENTRY,
    "Sidecar": SIDECAR,
    "VirtualService": VIRTUAL_SERVICE,
    "WorkloadEntry": WORKLOAD_ENTRY,
})
"""Per kind, the fields it accepts that nothing applies. PeerAuthentication,
AuthorizationPolicy and RequestAuthentication have none."""


def found_at(node: Any, pattern: Pattern, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path, value) of everything ``pattern`` reaches in ``node``; a missing or wrongly
    typed part reaches nothing."""
    if not pattern:
        yield path, node
        return
    head, rest = pattern[0], pattern[1:]
    if head == EACH:
        for i, item in enumerate(as_list(node)):
            yield from found_at(item, rest, (*path, i))
    elif head == KEYS:
        for key, value in as_mapping(node).items():
            yield from found_at(value, rest, (*path, str(key)))
    elif head in as_mapping(node):
        yield from found_at(as_mapping(node)[head], rest, (*path, head))


def findings_of(rows: tuple[Unapplied, ...], body: Mapping[str, Any]) -> list[Finding]:
    """The findings of ``rows`` in ``body``: one per place a row reports."""
    return [Finding(row.code, path, row.why.format(field=path[-1], value=value))
            for row in rows for path, value in row.hits(body)]


def unapplied_findings(kind: str, body: Mapping[str, Any]) -> list[Finding]:
    """The findings for the fields of ``body`` (a ``kind`` object) that are not applied."""
    return findings_of(TABLE.get(kind, ()), body)


def rule_for(kind: str) -> Callable[[Mapping[str, Any]], list[Finding]]:
    """The per-kind rule (``body -> findings``) that :mod:`~meshpilot.validation.rules`
    registers."""
    return lambda body: unapplied_findings(kind, body)


def rule_of(rows: tuple[Unapplied, ...]) -> Callable[[Mapping[str, Any]], list[Finding]]:
    """A rule reporting ``rows`` (for kinds whose table lives in a module of its own)."""
    return lambda body: findings_of(rows, body)

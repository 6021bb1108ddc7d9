"""Typed models of Istio's networking.istio.io API (v1alpha3, v1beta1 and v1 share one schema).

meshpilot accepts the YAML users already write for Istio, so field names and nesting follow
Istio's protobuf definitions exactly (camelCase on the wire, snake_case in Python). Beyond
shape and type, the models enforce the checks Istio's admission webhook makes on a single
document (weights, one-of groups, status ranges) plus the ones Envoy would only reveal later
(RE2 regexes), so a bad rule is refused at apply time with the field that is wrong.

Optional scalars default to ``None`` meaning "Istio's default"; lists and maps default to
empty so callers can iterate without guards.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Duration, Labels, Model, Percent, Port, Regex, Resource

NonNegInt = Annotated[int, Field(ge=0)]
"""A count or weight (protobuf uint32/int32 where Istio refuses negatives)."""

IntPercent = Annotated[int, Field(ge=0, le=100)]
"""An integer percentage, as used by legacy fields such as ``mirrorPercent``."""

HTTPStatus = Annotated[int, Field(ge=200, le=599)]
"""An HTTP status Istio accepts for aborts and direct responses."""

# Protocols Istio's protocol.Parse recognises (case-insensitively) for Gateway and
# ServiceEntry ports; anything else becomes "unsupported" and is refused by validation.
_PROTOCOLS = frozenset(
    {
        "HTTP",
        "HTTPS",
        "HTTP2",
        "HTTP_PROXY",
        "GRPC",
        "GRPC-WEB",
        "TCP",
        "TLS",
        "UDP",
        "MONGO",
        "REDIS",
        "MYSQL",
    }
)


def _one_of(model: Model, names: tuple[str, ...], *, required: bool, what: str) -> None:
    """Enforce a protobuf ``oneof``: at most one (or exactly one) of ``names`` is set.

    Wire names are used in the message because that is what the user wrote.
    """
    fields = type(model).model_fields
    wire = [fields[n].alias or n for n in names]
    present = [w for n, w in zip(names, wire, strict=True) if getattr(model, n) is not None]
    if len(present) > 1 or (required and not present):
        need = "exactly one" if required else "at most one"
        raise PydanticCustomError(
            "mp_value",
            "{what} takes {need} of {valid}; got {got}",
            {
                "what": what,
                "need": need,
                "valid": ", ".join(wire),
                "got": ", ".join(present) if present else "none",
            },
        )


def _check_protocol(value: str | None) -> str | None:
    if value is not None and value.upper() not in _PROTOCOLS:
        raise PydanticCustomError(
            "mp_value",
            "protocol {protocol} is not supported; use one of {valid}",
            {"protocol": repr(value), "valid": ", ".join(sorted(_PROTOCOLS))},
        )
    return value


def _check_weights(routes: list[Any]) -> list[Any]:
    """Weights are relative, but two or more destinations that all weigh 0 route nothing.

    Istio refuses this ("total destination weight = 0"); an omitted weight counts as 0.
    """
    if len(routes) > 1 and sum(r.weight or 0 for r in routes) == 0:
        raise PydanticCustomError(
            "mp_weights",
            "all {count} destinations have weight 0 (an omitted weight is 0), so no "
            "traffic would be routed; give at least one destination a positive weight",
            {"count": len(routes)},
        )
    return routes


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _check_export_to(value: list[str]) -> list[str]:
    """Istio's exportTo: ``*`` (every namespace), ``.`` (its own), ``~`` (none, and
    alone), or namespace names; each at most once."""
    bad = [e for e in value if e not in ("*", ".", "~") and not _NAMESPACE.fullmatch(e)]
    if bad or len(set(value)) != len(value) or ("~" in value and len(value) > 1):
        why = (f"{bad[0]!r} is not a namespace name" if bad else "'~' (no namespace) "
               "stands alone" if "~" in value and len(value) > 1 else "an entry repeats")
        raise PydanticCustomError(
            "mp_value",
            "exportTo: {why}; give '*' (every namespace), '.' (this one), '~' (none) or "
            "namespace names, each once",
            {"why": why},
        )
    return value


ExportTo = Annotated[list[str], AfterValidator(_check_export_to)]


# --------------------------------------------------------------------------- shared


class StringMatch(Model):
    """Match a string exactly, by prefix, or by RE2 regex; exactly one must be given."""

    allow_empty: ClassVar[bool] = False

    exact: str | None = None
    prefix: str | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        present = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(present) > 1 or (not present and not self.allow_empty):
            raise PydanticCustomError(
                "mp_value",
                "a string match takes exactly one of exact, prefix, regex; got {got}",
                {"got": ", ".join(present) if present else "none"},
            )
        return self


class PresenceStringMatch(StringMatch):
    """A StringMatch for headers and query parameters, where ``{}`` means "is present".

    Istio documents ``myheader: {}`` as a presence check, so an empty match is valid here.
    """

    allow_empty: ClassVar[bool] = True


class PortSelector(Model):
    """Selects a destination port by number."""

    number: Port


class Percentage(Model):
    """A percentage wrapper (``percentage: {value: 12.5}``) allowing fractions."""

    value: Percent = 0.0


class HeaderOperations(Model):
    """Header edits; ``set`` overwrites, ``add`` appends, ``remove`` deletes."""

    set_: dict[str, str] = Field(default_factory=dict, alias="set")
    add: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class Headers(Model):
    """Header edits for the request sent upstream and the response sent back."""

    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


# --------------------------------------------------------------------------- VirtualService


class Destination(Model):
    """A service (by registry host name), optionally narrowed to a subset and port."""

    host: str = Field(min_length=1)
    subset: str | None = None
    port: PortSelector | None = None


class HTTPMatchRequest(Model):
    """Conditions (ANDed) for an HTTP route; a route's match list is ORed."""

    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, PresenceStringMatch] = Field(default_factory=dict)
    port: Port | None = None
    source_labels: Labels = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    query_params: dict[str, PresenceStringMatch] = Field(default_factory=dict)
    ignore_uri_case: bool | None = None
    without_headers: dict[str, PresenceStringMatch] = Field(default_factory=dict)
    source_namespace: str | None = None
    stat_prefix: str | None = None


class HTTPRouteDestination(Model):
    """A weighted destination of an HTTP route; weights are relative to their siblings."""

    destination: Destination
    weight: NonNegInt | None = None
    headers: Headers | None = None


class HTTPRedirect(Model):
    """Answer with a 3xx redirect instead of forwarding."""

    uri: str | None = None
    authority: str | None = None
    port: Port | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: Annotated[int, Field(ge=300, le=399)] | None = None

    @model_validator(mode="after")
    def _port_one_of(self) -> HTTPRedirect:
        _one_of(self, ("port", "derive_port"), required=False, what="redirect")
        return self


class HTTPBody(Model):
    """A direct response body, given as text or base64 bytes."""

    string_: str | None = Field(default=None, alias="string")
    bytes_: str | None = Field(default=None, alias="bytes")

    @model_validator(mode="after")
    def _body_one_of(self) -> HTTPBody:
        _one_of(self, ("string_", "bytes_"), required=True, what="body")
        return self


class HTTPDirectResponse(Model):
    """Answer directly with a fixed status and body."""

    status: HTTPStatus
    body: HTTPBody | None = None


class Delegate(Model):
    """Hand routing for this match to another VirtualService (by name and namespace)."""

    name: str = Field(min_length=1)
    namespace: str | None = None


class RegexRewrite(Model):
    """Rewrite the path by RE2 substitution (``match`` is what Envoy compiles)."""

    match: Regex
    rewrite: str


class HTTPRewrite(Model):
    """Rewrite the path and/or authority before forwarding."""

    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None

    @model_validator(mode="after")
    def _uri_one_of(self) -> HTTPRewrite:
        _one_of(self, ("uri", "uri_regex_rewrite"), required=False, what="rewrite")
        return self


class HTTPRetry(Model):
    """Retry policy; ``attempts: 0`` disables retries."""

    attempts: NonNegInt | None = None
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None


class FaultDelay(Model):
    """Inject latency before forwarding. ``percent`` is the legacy integer form."""

    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percentage | None = None
    percent: IntPercent | None = None

    @model_validator(mode="after")
    def _delay_one_of(self) -> FaultDelay:
        _one_of(self, ("fixed_delay", "exponential_delay"), required=True, what="fault delay")
        return self


class FaultAbort(Model):
    """Abort requests with an HTTP status, gRPC status or HTTP/2 error."""

    http_status: HTTPStatus | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percentage | None = None

    @model_validator(mode="after")
    def _abort_one_of(self) -> FaultAbort:
        _one_of(
            self, ("http_status", "grpc_status", "http2_error"), required=True, what="fault abort"
        )
        return self


class HTTPFaultInjection(Model):
    """Fault injection for testing resilience; retries and timeouts do not apply to it."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(Model):
    """One of several mirror targets (``mirrors``), each with its own percentage."""

    destination: Destination
    percentage: Percentage | None = None


class CorsPolicy(Model):
    """CORS handling. ``allowOrigin`` is Istio's deprecated exact-match list."""

    allow_origins: list[StringMatch] = Field(default_factory=list)
    allow_origin: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None


class HTTPRoute(Model):
    """An HTTP rule: matches, and one action (route, redirect, directResponse or delegate).

    Istio refuses a rule with no action or with two; that is checked here too.
    """

    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] = Field(default_factory=list)
    mirror_percent: IntPercent | None = None
    mirror_percentage: Percentage | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    @field_validator("route")
    @classmethod
    def _weights(cls, value: list[HTTPRouteDestination]) -> list[HTTPRouteDestination]:
        return _check_weights(value)

    @model_validator(mode="after")
    def _one_action(self) -> HTTPRoute:
        actions = {
            "route": bool(self.route),
            "redirect": self.redirect is not None,
            "directResponse": self.direct_response is not None,
            "delegate": self.delegate is not None,
        }
        present = [k for k, v in actions.items() if v]
        if len(present) != 1:
            raise PydanticCustomError(
                "mp_value",
                "an HTTP route takes exactly one of route, redirect, directResponse, "
                "delegate; got {got}",
                {"got": ", ".join(present) if present else "none"},
            )
        if self.mirror is not None and self.mirrors:
            raise PydanticCustomError("mp_value", "an HTTP route takes mirror or mirrors, not both")
        return self


class RouteDestination(Model):
    """A weighted destination of a TCP or TLS route."""

    destination: Destination
    weight: NonNegInt | None = None


class L4MatchAttributes(Model):
    """Conditions for a TCP route."""

    destination_subnets: list[str] = Field(default_factory=list)
    port: Port | None = None
    source_subnet: str | None = None
    source_labels: Labels = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    source_namespace: str | None = None


class TLSMatchAttributes(Model):
    """Conditions for a TLS (SNI-routed, not terminated) route; sniHosts is required."""

    sni_hosts: list[str] = Field(min_length=1)
    destination_subnets: list[str] = Field(default_factory=list)
    port: Port | None = None
    source_labels: Labels = Field(default_factory=dict)
    gateways: list[str] = Field(default_factory=list)
    source_namespace: str | None = None


class TCPRoute(Model):
    """An opaque-TCP rule."""

    match: list[L4MatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)

    @field_validator("route")
    @classmethod
    def _weights(cls, value: list[RouteDestination]) -> list[RouteDestination]:
        return _check_weights(value)


class TLSRoute(Model):
    """A TLS passthrough rule, routed on SNI."""

    match: list[TLSMatchAttributes] = Field(min_length=1)
    route: list[RouteDestination] = Field(default_factory=list)

    @field_validator("route")
    @classmethod
    def _weights(cls, value: list[RouteDestination]) -> list[RouteDestination]:
        return _check_weights(value)


class VirtualServiceSpec(Model):
    """Routing rules for a set of hosts. ``hosts`` may be empty only for a delegate."""

    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[TLSRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    export_to: ExportTo = Field(default_factory=list)


class VirtualService(Resource):
    spec: VirtualServiceSpec


# --------------------------------------------------------------------------- DestinationRule


class HTTPCookieAttribute(Model):
    name: str
    value: str | None = None


class HTTPCookie(Model):
    """Hash on a cookie; Envoy generates it (with ``ttl``) when absent."""

    name: str = Field(min_length=1)
    path: str | None = None
    ttl: Duration | None = None
    attributes: list[HTTPCookieAttribute] = Field(default_factory=list)


class RingHash(Model):
    minimum_ring_size: NonNegInt | None = None


class MagLev(Model):
    table_size: NonNegInt | None = None


class ConsistentHashLB(Model):
    """Session affinity: one hash key, and optionally one hash algorithm."""

    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: NonNegInt | None = None

    @model_validator(mode="after")
    def _one_of_groups(self) -> ConsistentHashLB:
        keys = ("http_header_name", "http_cookie", "use_source_ip", "http_query_parameter_name")
        _one_of(self, keys, required=False, what="consistentHash")
        _one_of(
            self,
            ("ring_hash", "maglev", "minimum_ring_size"),
            required=False,
            what="consistentHash",
        )
        return self


class LocalityDistribute(Model):
    """Send traffic from ``from`` locality to ``to`` localities by weight."""

    from_: str = Field(alias="from")
    to: dict[str, NonNegInt] = Field(default_factory=dict)


class LocalityFailover(Model):
    """Fail over from one region to another."""

    from_: str = Field(alias="from")
    to: str


class LocalityLoadBalancerSetting(Model):
    distribute: list[LocalityDistribute] = Field(default_factory=list)
    failover: list[LocalityFailover] = Field(default_factory=list)
    failover_priority: list[str] = Field(default_factory=list)
    enabled: bool | None = None


class WarmupConfiguration(Model):
    """Slow-start for new endpoints (newer Istio form of ``warmupDurationSecs``)."""

    duration: Duration
    minimum_percent: Percent | None = None
    aggression: float | None = None


SimpleLB = Literal[
    "UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"
]


class LoadBalancerSettings(Model):
    """Either a simple algorithm or consistent hashing, not both."""

    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: Duration | None = None
    warmup: WarmupConfiguration | None = None

    @model_validator(mode="after")
    def _policy_one_of(self) -> LoadBalancerSettings:
        _one_of(self, ("simple", "consistent_hash"), required=False, what="loadBalancer")
        return self


class TcpKeepalive(Model):
    probes: NonNegInt | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(Model):
    max_connections: NonNegInt | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


class HTTPSettings(Model):
    http1_max_pending_requests: NonNegInt | None = Field(
        default=None, alias="http1MaxPendingRequests"
    )
    http2_max_requests: NonNegInt | None = Field(default=None, alias="http2MaxRequests")
    max_requests_per_connection: NonNegInt | None = None
    max_retries: NonNegInt | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = Field(
        default=None, alias="h2UpgradePolicy"
    )
    use_client_protocol: bool | None = None
    max_concurrent_streams: NonNegInt | None = None


class ConnectionPoolSettings(Model):
    """Circuit-breaker limits for TCP and HTTP connections to the upstream."""

    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(Model):
    """Eject hosts that keep failing. ``consecutiveErrors`` is Istio's deprecated form."""

    consecutive_errors: NonNegInt | None = None
    consecutive_5xx_errors: NonNegInt | None = Field(default=None, alias="consecutive5xxErrors")
    consecutive_gateway_errors: NonNegInt | None = None
    consecutive_local_origin_failures: NonNegInt | None = None
    split_external_local_origin_errors: bool | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: IntPercent | None = None
    min_health_percent: IntPercent | None = None


class ClientTLSSettings(Model):
    """TLS the sidecar originates towards the upstream."""

    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] = Field(default_factory=list)
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None

    @model_validator(mode="after")
    def _honourable(self) -> ClientTLSSettings:
        problem = tls_settings_problem(self)
        if problem is not None:
            field, why = problem
            raise PydanticCustomError("mp_value", "tls.{field} {why}",
                                      {"field": field, "why": why})
        return self


_TLS_ALL_BUT_MODE = ("client_certificate", "private_key", "ca_certificates", "credential_name",
                     "subject_alt_names", "sni", "insecure_skip_verify", "ca_crl")
_TLS_FILE_OR_CREDENTIAL = ("client_certificate", "private_key", "ca_certificates",
                           "credential_name", "ca_crl")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _first_set(settings: ClientTLSSettings, fields: tuple[str, ...], why: str
               ) -> tuple[str, str] | None:
    name = next((f for f in fields if getattr(settings, f)), None)
    return (_camel(name), why) if name else None


def tls_settings_problem(settings: ClientTLSSettings) -> tuple[str, str] | None:
    """(field, why) when a DestinationRule's ``tls`` cannot be honoured as written
    (Istio's own validation, plus what a socket of that mode would drop); None when it
    can. Refused at apply; the translation to Envoy asks the same question."""
    mode = settings.mode or "DISABLE"  # Istio's enum default
    if mode == "DISABLE":
        return _first_set(settings, _TLS_ALL_BUT_MODE, "has no effect with mode DISABLE")
    if mode == "ISTIO_MUTUAL":
        return _first_set(settings, _TLS_FILE_OR_CREDENTIAL,
                          "cannot be set with mode ISTIO_MUTUAL (the workload certificate "
                          "is used)") or _first_set(
            settings, ("insecure_skip_verify",), "ISTIO_MUTUAL always verifies the peer")
    return _simple_or_mutual_problem(settings, mutual=mode == "MUTUAL")


def _simple_or_mutual_problem(settings: ClientTLSSettings, *, mutual: bool
                              ) -> tuple[str, str] | None:
    found = None if mutual else _first_set(
        settings, ("client_certificate", "private_key"),
        "SIMPLE presents no client certificate; use mode MUTUAL")
    if found is None and settings.credential_name:
        found = _first_set(settings, ("client_certificate", "private_key", "ca_certificates"),
                           "cannot be set with credentialName, which holds the certificates") \
            or _first_set(settings, ("ca_crl",),
                          "a CRL file cannot be combined with credentialName")
    elif found is None and mutual:
        missing = next((f for f in ("client_certificate", "private_key")
                        if not getattr(settings, f)), None)
        if missing:
            found = (_camel(missing),
                     "MUTUAL needs a client certificate and private key (or a credentialName)")
    if found is None and settings.insecure_skip_verify:
        found = _first_set(settings, ("ca_certificates", "subject_alt_names", "ca_crl"),
                           "cannot be set with insecureSkipVerify, which verifies nothing")
        if found is None and not mutual:
            found = _first_set(settings, ("credential_name",),
                               "cannot be set with insecureSkipVerify in mode SIMPLE")
    return found


class TunnelSettings(Model):
    """Tunnel TCP over HTTP CONNECT/POST to a proxy (kept loose: rarely used)."""

    protocol: str | None = None
    target_host: str | None = None
    target_port: Port | None = None


class ProxyProtocol(Model):
    version: Literal["V1", "V2"] | None = None


class PortTrafficPolicy(Model):
    """Traffic policy overrides for one destination port."""

    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TrafficPolicy(Model):
    """Policies applied to traffic towards a host (or subset) after routing."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] = Field(default_factory=list)
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None


class Subset(Model):
    """A named group of a service's endpoints, selected by labels."""

    name: str = Field(min_length=1)
    labels: Labels = Field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


class MatchLabelsSelector(Model):
    """DestinationRule's workloadSelector (Kubernetes-style ``matchLabels``)."""

    match_labels: Labels = Field(default_factory=dict)


class DestinationRuleSpec(Model):
    host: str = Field(min_length=1)
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    export_to: ExportTo = Field(default_factory=list)
    workload_selector: MatchLabelsSelector | None = None


class DestinationRule(Resource):
    spec: DestinationRuleSpec


# --------------------------------------------------------------------------- Gateway


class GatewayPort(Model):
    """A port a gateway listens on; the protocol decides how traffic is handled."""

    number: Port
    protocol: str
    name: str | None = None
    target_port: Port | None = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str | None) -> str | None:
        return _check_protocol(value)


class ServerTLSCertificate(Model):
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


TLSProtocol = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


class ServerTLSSettings(Model):
    """TLS a gateway terminates (or passes through) on a server."""

    https_redirect: bool | None = None
    mode: (
        Literal[
            "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
        ]
        | None
    ) = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] = Field(default_factory=list)
    tls_certificates: list[ServerTLSCertificate] = Field(default_factory=list)
    subject_alt_names: list[str] = Field(default_factory=list)
    verify_certificate_spki: list[str] = Field(default_factory=list)
    verify_certificate_hash: list[str] = Field(default_factory=list)
    min_protocol_version: TLSProtocol | None = None
    max_protocol_version: TLSProtocol | None = None
    cipher_suites: list[str] = Field(default_factory=list)


class Server(Model):
    """One listener of a gateway: a port, the hosts it serves and its TLS."""

    port: GatewayPort
    bind: str | None = None
    hosts: list[str] = Field(min_length=1)
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None


class GatewaySpec(Model):
    selector: Labels = Field(default_factory=dict)
    servers: list[Server] = Field(min_length=1)


class Gateway(Resource):
    spec: GatewaySpec


# --------------------------------------------------------------------------- WorkloadEntry


class WorkloadEntrySpec(Model):
    """A non-Kubernetes workload (VM, bare host). Also the shape of ServiceEntry endpoints.

    ``address`` may be omitted only for a workload reached through a network gateway.
    """

    address: str | None = None
    ports: dict[str, Port] = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict)
    network: str | None = None
    locality: str | None = None
    weight: NonNegInt | None = None
    service_account: str | None = None


class WorkloadEntry(Resource):
    spec: WorkloadEntrySpec


# --------------------------------------------------------------------------- ServiceEntry


class ServicePort(Model):
    """A port of a ServiceEntry; unlike a Gateway port, ``name`` is required."""

    number: Port
    protocol: str | None = None
    name: str = Field(min_length=1)
    target_port: Port | None = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str | None) -> str | None:
        return _check_protocol(value)


class WorkloadSelector(Model):
    """ServiceEntry's workloadSelector (plain ``labels``, unlike DestinationRule's)."""

    labels: Labels = Field(default_factory=dict)


class ServiceEntrySpec(Model):
    """Adds a host to the mesh's registry; endpoints or a workloadSelector, not both."""

    hosts: list[str] = Field(min_length=1)
    addresses: list[str] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"] | None = None
    endpoints: list[WorkloadEntrySpec] = Field(default_factory=list)
    workload_selector: WorkloadSelector | None = None
    export_to: ExportTo = Field(default_factory=list)
    subject_alt_names: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _endpoints_or_selector(self) -> ServiceEntrySpec:
        if self.endpoints and self.workload_selector is not None:
            raise PydanticCustomError(
                "mp_value", "a ServiceEntry takes endpoints or workloadSelector, not both"
            )
        if self.resolution == "DNS_ROUND_ROBIN" and len(self.endpoints) > 1:
            raise PydanticCustomError(
                "mp_value", "resolution DNS_ROUND_ROBIN takes at most one endpoint (it "
                "connects to the first address one name resolves to); use DNS for several")
        return self


class ServiceEntry(Resource):
    spec: ServiceEntrySpec



# --------------------------------------------------------------------------- Sidecar


def _check_egress_host(value: str) -> str:
    """Istio's ``namespace/dnsName``: a namespace (``*`` any, ``.`` the Sidecar's own,
    ``~`` none) and a host (``*``, ``*.suffix`` or a name)."""
    namespace, slash, host = value.partition("/")
    ns_ok = namespace in ("*", ".", "~") or bool(_NAMESPACE.fullmatch(namespace))
    host_ok = host == "*" or bool(_EGRESS_HOST.fullmatch(host))
    if not slash or not ns_ok or not host_ok:
        raise PydanticCustomError(
            "mp_value",
            "egress host {value} is not namespace/dnsName: give e.g. './*' (this namespace), "
            "'istio-system/*', '*/api.example.com' or 'prod/*.prod.svc.cluster.local'",
            {"value": repr(value)},
        )
    return value


_EGRESS_HOST = re.compile(r"(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*")
EgressHost = Annotated[str, AfterValidator(_check_egress_host)]


class IstioEgressListener(Model):
    """What a workload's sidecar may reach: ``hosts`` (applied); a ``port``, ``bind`` or
    ``captureMode`` of its own is accepted and warned about (one HTTP proxy listener
    serves every port here)."""

    hosts: list[EgressHost] = Field(min_length=1)
    port: ServicePort | None = None
    bind: str | None = None
    capture_mode: Literal["DEFAULT", "IPTABLES", "NONE"] | None = None


SIDECAR_OUTBOUND_PORT = 15001
"""Where every sidecar's outbound HTTP proxy listens on its pod's address (the mesh
model's ``OUTBOUND_PROXY_PORT``): no Sidecar listener may take it."""


class SidecarPort(Model):
    """The port of a Sidecar listener (Istio's SidecarPort): a number and a protocol; the
    name is a label. ``targetPort`` is accepted (Istio's schema has it) and warned about:
    Istio reads it on ServiceEntry ports only."""

    number: Port
    protocol: str | None = None
    name: str = ""
    target_port: Port | None = None

    @field_validator("number")
    @classmethod
    def _number(cls, value: int) -> int:
        if value == SIDECAR_OUTBOUND_PORT:
            raise PydanticCustomError(
                "mp_value", "port {port} is the sidecar's own outbound HTTP proxy listener "
                "on the pod's address; choose another port", {"port": value})
        return value

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str | None) -> str | None:
        if value is not None and value.upper() in ("UDP", "HTTP_PROXY"):
            raise PydanticCustomError(
                "mp_value",
                "protocol {protocol} is not served by a sidecar's listener; use one of "
                "HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TCP, TLS, MONGO, REDIS, MYSQL",
                {"protocol": repr(value)})
        return _check_protocol(value)


_LOOPBACK_HOSTS = ("127.0.0.1", "0.0.0.0", "[::1]", "[::]", "")
UNIX_PREFIX = "unix://"


def _check_default_endpoint(value: str | None) -> str | None:
    """Istio's forms: ``127.0.0.1:PORT``, ``0.0.0.0:PORT``, ``[::1]:PORT``, ``[::]:PORT``,
    ``:PORT`` or ``unix:///path`` (``unix://@name`` for an abstract socket)."""
    if value is None:
        return value
    if value.startswith(UNIX_PREFIX):
        path = value.removeprefix(UNIX_PREFIX)
        if path.startswith("/") or (path.startswith("@") and len(path) > 1):
            return value
    else:
        host, colon, port = value.rpartition(":")
        if colon and host in _LOOPBACK_HOSTS and port.isdigit() and 1 <= int(port) <= 65535:
            return value
    raise PydanticCustomError(
        "mp_value",
        "defaultEndpoint {value} is not one of 127.0.0.1:PORT (the app on its pod's own "
        "address), 0.0.0.0:PORT (the same here), [::1]:PORT, [::]:PORT, :PORT or "
        "unix:///absolute/path",
        {"value": repr(value)},
    )


DefaultEndpoint = Annotated[str | None, AfterValidator(_check_default_endpoint)]


class IstioIngressListener(Model):
    """An inbound port of the sidecar (Istio's IstioIngressListener): the sidecar listens
    on the pod's address at ``port.number`` and hands what arrives to ``defaultEndpoint``
    (see :mod:`meshpilot.mesh.sidecar_ingress`)."""

    port: SidecarPort
    bind: str | None = None
    capture_mode: Literal["DEFAULT", "IPTABLES", "NONE"] | None = None
    default_endpoint: DefaultEndpoint = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None

    @field_validator("tls")
    @classmethod
    def _tls(cls, value: ServerTLSSettings | None) -> ServerTLSSettings | None:
        """Istio's sidecar ingress TLS: the sidecar terminates it with the user's
        certificate (SIMPLE), verifying client certificates too (MUTUAL,
        OPTIONAL_MUTUAL); one certificate, from credentialName or from files."""
        if value is None:
            return value
        if value.mode not in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
            raise PydanticCustomError(
                "mp_value", "tls.mode {mode} is not served by a sidecar's ingress listener; "
                "give SIMPLE, MUTUAL or OPTIONAL_MUTUAL (mutual TLS between sidecars follows "
                "PeerAuthentication)", {"mode": repr(value.mode or "PASSTHROUGH (unset)")})
        if value.credential_names or value.tls_certificates:
            raise PydanticCustomError(
                "mp_value", "several certificates (credentialNames, tlsCertificates) on one "
                "sidecar ingress listener are not served; give credentialName, or "
                "serverCertificate and privateKey")
        files = value.server_certificate, value.private_key
        if value.credential_name and (any(files) or value.ca_certificates):
            raise PydanticCustomError(
                "mp_value", "tls takes credentialName or certificate files "
                "(serverCertificate, privateKey, caCertificates), not both")
        if not value.credential_name and not all(files):
            raise PydanticCustomError(
                "mp_value", "tls needs credentialName (a kubernetes.io/tls Secret in the "
                "workload's namespace), or serverCertificate and privateKey")
        if value.mode != "SIMPLE" and not (value.credential_name or value.ca_certificates):
            raise PydanticCustomError(
                "mp_value", "tls mode {mode} verifies client certificates: give "
                "caCertificates, or a credentialName whose Secret has ca.crt",
                {"mode": value.mode})
        return value


class OutboundTrafficPolicy(Model):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None
    egress_proxy: dict[str, Any] | None = None


class SidecarSpec(Model):
    workload_selector: WorkloadSelector | None = None
    ingress: list[IstioIngressListener] = Field(default_factory=list)
    egress: list[IstioEgressListener] = Field(default_factory=list)
    outbound_traffic_policy: OutboundTrafficPolicy | None = None
    inbound_connection_pool: ConnectionPoolSettings | None = None

    @field_validator("ingress")
    @classmethod
    def _unique_ports(cls, value: list[IstioIngressListener]) -> list[IstioIngressListener]:
        """One listener per port: Istio refuses two ingress listeners on one port."""
        seen: set[int] = set()
        for listener in value:
            if listener.port.number in seen:
                raise PydanticCustomError(
                    "mp_value", "ingress port {port} is listed twice; give each port once",
                    {"port": listener.port.number})
            seen.add(listener.port.number)
        return value


class Sidecar(Resource):
    """Istio's Sidecar: which services a workload's sidecar knows (its egress hosts),
    so a large mesh keeps each proxy's config to what it calls."""

    spec: SidecarSpec

__all__ = [
    "ClientTLSSettings",
    "ConnectionPoolSettings",
    "ConsistentHashLB",
    "Destination",
    "DestinationRule",
    "DestinationRuleSpec",
    "Gateway",
    "GatewayPort",
    "GatewaySpec",
    "HTTPMatchRequest",
    "HTTPRoute",
    "HTTPRouteDestination",
    "LoadBalancerSettings",
    "OutlierDetection",
    "PresenceStringMatch",
    "RouteDestination",
    "Server",
    "ServerTLSSettings",
    "ServiceEntry",
    "ServiceEntrySpec",
    "ServicePort",
    "Sidecar",
    "StringMatch",
    "Subset",
    "TCPRoute",
    "TLSRoute",
    "TrafficPolicy",
    "VirtualService",
    "VirtualServiceSpec",
    "WorkloadEntry",
    "WorkloadEntrySpec",
]

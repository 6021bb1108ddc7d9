"""Istio's DestinationRule: traffic policies (load balancing, connection pools, outlier
detection, client TLS) and subsets; client TLS is checked as Istio does, field by mode."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Duration, Labels, Model, Percent, Port, Resource
from meshpilot.api.networking_common import ExportTo, IntPercent, NonNegInt, PortSelector, one_of


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
        one_of(self, keys, required=False, what="consistentHash")
        one_of(
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
        one_of(self, ("simple", "consistent_hash"), required=False, what="loadBalancer")
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

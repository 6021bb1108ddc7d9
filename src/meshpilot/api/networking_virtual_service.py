"""Istio's VirtualService: HTTP, TCP and TLS routes, their matches, rewrites, retries,
faults, mirrors and CORS, checked as Istio's admission checks one document."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Duration, Labels, Model, Port, Regex, Resource
from meshpilot.api.networking_common import (
    ExportTo,
    Headers,
    HTTPStatus,
    IntPercent,
    NonNegInt,
    Percentage,
    PortSelector,
    PresenceStringMatch,
    StringMatch,
    check_weights,
    one_of,
)


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
        one_of(self, ("port", "derive_port"), required=False, what="redirect")
        return self


class HTTPBody(Model):
    """A direct response body, given as text or base64 bytes."""

    string_: str | None = Field(default=None, alias="string")
    bytes_: str | None = Field(default=None, alias="bytes")

    @model_validator(mode="after")
    def _body_one_of(self) -> HTTPBody:
        one_of(self, ("string_", "bytes_"), required=True, what="body")
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
        one_of(self, ("uri", "uri_regex_rewrite"), required=False, what="rewrite")
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
        one_of(self, ("fixed_delay", "exponential_delay"), required=True, what="fault delay")
        return self


class FaultAbort(Model):
    """Abort requests with an HTTP status, gRPC status or HTTP/2 error."""

    http_status: HTTPStatus | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percentage | None = None

    @model_validator(mode="after")
    def _abort_one_of(self) -> FaultAbort:
        one_of(
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
        return check_weights(value)

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
        return check_weights(value)


class TLSRoute(Model):
    """A TLS passthrough rule, routed on SNI."""

    match: list[TLSMatchAttributes] = Field(min_length=1)
    route: list[RouteDestination] = Field(default_factory=list)

    @field_validator("route")
    @classmethod
    def _weights(cls, value: list[RouteDestination]) -> list[RouteDestination]:
        return check_weights(value)


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

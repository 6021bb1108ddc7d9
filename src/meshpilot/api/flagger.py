"""Flagger ``flagger.app/v1beta1`` resources: Canary and MetricTemplate (AlertProvider
and the Canary's alerts are in :mod:`.flagger_alerts`).

Field names follow Flagger's Go types (``pkg/apis/flagger/v1beta1``) and its CRD schema.
Match conditions use the Istio ``HTTPMatchRequest`` model; the other Istio fragments a
Canary carries for the generated VirtualService and DestinationRule (trafficPolicy,
retries, headers, corsPolicy, rewrite) are kept as plain mappings here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Duration, Labels, Model, Port, Resource, parse_duration
from meshpilot.api.flagger_alerts import CanaryAlert
from meshpilot.api.kubernetes import PortOrName
from meshpilot.api.metric_query import MetricInterval
from meshpilot.api.names import SERVICE_LABEL, name_problem
from meshpilot.api.networking import HTTPMatchRequest

Weight = Annotated[int, Field(ge=0, le=100)]
"""A traffic weight in percent, 0 to 100."""

HTTPMatchList = list[HTTPMatchRequest]
"""Istio match conditions, typed as in a VirtualService (A/B routing, URI matches)."""

WebhookType = Literal[
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
]

BUILTIN_METRICS = ("request-success-rate", "request-duration")
"""Metrics Flagger computes itself for a mesh provider; others need a templateRef."""

DEFAULT_PROGRESS_DEADLINE_SECONDS = 600


# --- Canary ---------------------------------------------------------------------------


class TargetReference(Model):
    api_version: str
    kind: Literal["Deployment", "DaemonSet", "Service"]
    name: str = Field(min_length=1)


class ScalerReplicas(Model):
    """Flagger's overrides of the primary autoscaler's replica bounds."""

    min_replicas: int | None = Field(default=None, ge=1)
    max_replicas: int | None = Field(default=None, ge=1)


class AutoscalerReference(Model):
    """``autoscalerRef``: the autoscaler of the target, which Flagger copies for the
    primary as ``NAME-primary``. ``primaryScalerQueries`` is for a KEDA ScaledObject."""

    api_version: str | None = None
    kind: str | None = None
    name: str = Field(min_length=1)
    primary_scaler_queries: dict[str, str] | None = None
    primary_scaler_replicas: ScalerReplicas | None = None


class CustomMetadata(Model):
    labels: Labels | None = None
    annotations: dict[str, str] | None = None


class UnmanagedMetadata(Model):
    labels: list[str] | None = None
    annotations: list[str] | None = None


class CanaryService(Model):
    name: str | None = None
    port: Port
    port_name: str | None = None
    target_port: PortOrName | None = None
    app_protocol: str | None = None
    port_discovery: bool = False
    headless: bool | None = None
    traffic_distribution: str | None = None
    timeout: Duration | None = None
    backend_timeout: Duration | None = None
    hosts: list[str] | None = None
    gateways: list[str] | None = None
    gateway_refs: list[dict[str, Any]] | None = None
    delegation: bool | None = None
    match: HTTPMatchList | None = None
    retries: dict[str, Any] | None = None
    rewrite: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None
    cors_policy: dict[str, Any] | None = None
    traffic_policy: dict[str, Any] | None = None
    mirror: list[dict[str, Any]] | None = None
    mesh_name: str | None = None
    backends: list[str] | None = None
    apex: CustomMetadata | None = None
    primary: CustomMetadata | None = None
    canary: CustomMetadata | None = None
    unmanaged_metadata: UnmanagedMetadata | None = None

    @model_validator(mode="after")
    def _delegate_has_no_hosts(self) -> CanaryService:
        if self.delegation and (self.hosts or self.gateways):
            raise PydanticCustomError(
                "mp_value",
                "delegation makes the VirtualService a delegate, which has no hosts or "
                "gateways (the root VirtualService that delegates to it has them); remove "
                "hosts and gateways, or delegation")
        return self


class ThresholdRange(Model):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError(
                "mp_value",
                "thresholdRange min {min} is greater than max {max}",
                {"min": self.min, "max": self.max},
            )
        return self


class TemplateReference(Model):
    name: str = Field(min_length=1)
    namespace: str | None = None


class CanaryMetric(Model):
    name: str = Field(min_length=1)
    interval: MetricInterval | None = None
    threshold: float | None = None
    threshold_range: ThresholdRange | None = None
    query: str | None = None
    template_ref: TemplateReference | None = None
    template_variables: dict[str, str] | None = None

    @model_validator(mode="after")
    def _has_source(self) -> CanaryMetric:
        if self.template_ref is None and not self.query and self.name not in BUILTIN_METRICS:
            raise PydanticCustomError(
                "mp_value",
                "metric {name} is not built in ({builtins}); give it a templateRef "
                "naming a MetricTemplate",
                {"name": repr(self.name), "builtins": ", ".join(BUILTIN_METRICS)},
            )
        return self


class CanaryWebhook(Model):
    name: str = Field(min_length=1)
    type: WebhookType = "rollout"
    url: str = Field(min_length=1)
    timeout: Duration | None = None
    metadata: dict[str, str] | None = None
    mute_alert: bool | None = None
    retries: int | None = Field(default=None, ge=0)
    disable_tls: bool | None = Field(default=None, alias="disableTLS")

    @field_validator("type", mode="before")
    @classmethod
    def _empty_is_rollout(cls, value: Any) -> Any:
        # Flagger's CRD allows "" and treats it as a rollout hook.
        return "rollout" if value == "" else value


class SessionAffinity(Model):
    cookie_name: str = Field(min_length=1)
    primary_cookie_name: str | None = None
    max_age: int | None = Field(default=None, ge=1)
    domain: str | None = None
    path: str | None = None
    http_only: bool | None = None
    secure: bool | None = None
    partitioned: bool | None = None
    same_site: Literal["Strict", "Lax", "None"] | None = None


class CanaryAnalysis(Model):
    interval: Duration | None = None
    iterations: int | None = Field(default=None, ge=0)
    mirror: bool | None = None
    mirror_weight: Weight | None = None
    max_weight: Weight | None = None
    step_weight: Weight | None = None
    step_weights: list[int] | None = None
    step_weight_promotion: Weight | None = None
    threshold: int | None = Field(default=None, ge=0)
    primary_ready_threshold: Weight | None = None
    canary_ready_threshold: Weight | None = None
    alerts: list[CanaryAlert] | None = None
    metrics: list[CanaryMetric] | None = None
    webhooks: list[CanaryWebhook] | None = None
    match: HTTPMatchList | None = None
    session_affinity: SessionAffinity | None = None

    @field_validator("step_weights")
    @classmethod
    def _increasing(cls, value: list[int] | None) -> list[int] | None:
        if not value:
            return value
        for i, weight in enumerate(value):
            if not 0 <= weight <= 100:
                raise PydanticCustomError(
                    "mp_value",
                    "stepWeights[{i}] is {w}; each weight must be from 0 to 100",
                    {"i": i, "w": weight},
                )
            if i and weight <= value[i - 1]:
                raise PydanticCustomError(
                    "mp_value",
                    "stepWeights must be strictly increasing; {prev} is followed by {w}",
                    {"prev": value[i - 1], "w": weight},
                )
        return value

    @property
    def interval_seconds(self) -> float:
        """The analysis interval in seconds: 60 when unset, never below 10 (as Flagger)."""
        if self.interval is None:
            return 60.0
        return max(parse_duration(self.interval), 10.0)

    @property
    def weights(self) -> list[int]:
        """The canary weights Flagger steps through, in order (empty unless progressive)."""
        if self.step_weights:
            return list(self.step_weights)
        step = self.step_weight or 0
        if step <= 0:
            return []
        top = self.max_weight or 100
        out: list[int] = []
        weight = 0
        while weight < top:
            weight = min(weight + step, top)
            out.append(weight)
        return out


class CanarySpec(Model):
    provider: str | None = None
    metrics_server: str | None = None
    target_ref: TargetReference
    autoscaler_ref: AutoscalerReference | None = None
    ingress_ref: dict[str, Any] | None = None
    route_ref: dict[str, Any] | None = None
    upstream_ref: dict[str, Any] | None = None
    service: CanaryService
    analysis: CanaryAnalysis | None = None
    progress_deadline_seconds: int = Field(default=DEFAULT_PROGRESS_DEADLINE_SECONDS, ge=0)
    skip_analysis: bool = False
    revert_on_deletion: bool = False
    suspend: bool = False

    @model_validator(mode="before")
    @classmethod
    def _legacy_canary_analysis(cls, data: Any) -> Any:
        """Flagger's v1alpha3 name ``canaryAnalysis`` is read as ``analysis``."""
        if isinstance(data, dict) and "canaryAnalysis" in data:
            if "analysis" in data:
                raise PydanticCustomError(
                    "mp_value", "set analysis or the older canaryAnalysis, not both"
                )
            data = dict(data)
            data["analysis"] = data.pop("canaryAnalysis")
        return data


MIN_REQUESTS_ANNOTATION = "meshpilot.io/min-requests"
"""Requests a check needs in its window before it may judge (default 20; 0: no rule)."""
MIRROR_FIRST_ANNOTATION = "meshpilot.io/mirror-first"
"""Intervals the canary is judged on mirrored copies of live traffic before any user
request reaches it (progressive and mirror strategies; 0 or absent: off)."""
FAIL_FAST_ANNOTATION = "meshpilot.io/fail-fast"
"""``"false"`` judges the request success rate only at interval ends (default: also as
soon as the failures seen are conclusive)."""
RETRY_ON_PRIMARY_ANNOTATION = "meshpilot.io/retry-on-primary"
"""``"true"``: a GET, HEAD or OPTIONS request the canary's weighted share fails (5xx,
reset, connect failure) is retried once on the primary, so the user sees the primary's
answer while the canary's failure still counts against it (default ``"false"``). Also
read on a VirtualService, where the generated one carries it (the intent is stored)."""
_COUNT_ANNOTATIONS = (MIN_REQUESTS_ANNOTATION, MIRROR_FIRST_ANNOTATION)


def annotation_count(annotations: dict[str, str], key: str) -> int:
    """The whole number an annotation holds (0 when absent); validated at apply."""
    raw = annotations.get(key)
    return int(float(raw)) if raw else 0


class Canary(Resource):
    api_version: str = "flagger.app/v1beta1"
    kind: Literal["Canary"] = "Canary"
    spec: CanarySpec

    @model_validator(mode="after")
    def _meshpilot_annotations(self) -> Canary:
        """meshpilot's own knobs ride on annotations (Flagger's schema has no field for
        them); a value they cannot be read as is refused, not taken as the default."""
        annotations = self.metadata.annotations
        for key in _COUNT_ANNOTATIONS:
            raw = annotations.get(key)
            if raw is not None and not (raw.isdigit() and int(raw) <= 1000):
                raise PydanticCustomError(
                    "mp_value", "annotation {key} is {raw}; give a whole number from 0 to "
                    "1000", {"key": key, "raw": repr(raw)})
        raw = annotations.get(FAIL_FAST_ANNOTATION)
        if raw is not None and raw not in ("true", "false"):
            raise PydanticCustomError(
                "mp_value", "annotation {key} is {raw}; give \"true\" or \"false\"",
                {"key": FAIL_FAST_ANNOTATION, "raw": repr(raw)})
        return self

    @model_validator(mode="after")
    def _generated_names_are_valid(self) -> Canary:
        """The Services the Canary generates (NAME, NAME-primary, NAME-canary) must be
        valid Service names: refused here, not when the controller writes them."""
        for generated in self.service_names:
            problem = name_problem(generated, SERVICE_LABEL)
            if problem:
                raise PydanticCustomError(
                    "mp_value", "the Canary would generate Service {name}, which is not "
                    "valid: {problem}. Service names are {rule}: at most 63 characters, so "
                    "service.name (or the target's name) may have at most 55",
                    {"name": repr(generated), "problem": problem,
                     "rule": SERVICE_LABEL.title})
        return self

    @property
    def mirror_first_intervals(self) -> int:
        return annotation_count(self.metadata.annotations, MIRROR_FIRST_ANNOTATION)

    @property
    def retry_on_primary(self) -> bool:
        """Whether the canary's failed idempotent requests are retried on the primary
        (a value other than "true" or "false" is refused at apply, MP0084)."""
        return self.metadata.annotations.get(RETRY_ON_PRIMARY_ANNOTATION) == "true"

    @property
    def fail_fast(self) -> bool:
        return self.metadata.annotations.get(FAIL_FAST_ANNOTATION) != "false"

    @property
    def strategy(self) -> Literal["ab", "bluegreen", "mirror", "canary"]:
        """The deployment strategy Flagger runs for this Canary.

        Checked in the order Flagger's scheduler dispatches: A/B testing (match
        conditions and iterations), Blue/Green (iterations; Flagger may mirror during
        it), progressive shifting with traffic mirroring (``mirror``), otherwise
        progressive canary traffic shifting.
        """
        analysis = self.spec.analysis
        if analysis is None:
            return "canary"
        if analysis.match and analysis.iterations:
            return "ab"
        if analysis.iterations:
            return "bluegreen"
        if analysis.mirror:
            return "mirror"
        return "canary"

    @property
    def service_names(self) -> tuple[str, str, str]:
        """(apex, primary, canary) Service names, as Flagger generates them."""
        apex = self.spec.service.name or self.spec.target_ref.name
        return apex, f"{apex}-primary", f"{apex}-canary"


# --- MetricTemplate -------------------------------------------------------------------

ProviderType = Literal[
    "prometheus",
    "datadog",
    "cloudwatch",
    "newrelic",
    "graphite",
    "influxdb",
    "dynatrace",
    "keptn",
    "splunk",
    "stackdriver",
    "externalmetrics",
]


class SecretReference(Model):
    name: str = Field(min_length=1)


class MetricTemplateProvider(Model):
    type: ProviderType
    address: str | None = None
    secret_ref: SecretReference | None = None
    region: str | None = None
    headers: dict[str, list[str]] | None = None
    insecure_skip_verify: bool | None = None


class MetricTemplateSpec(Model):
    provider: MetricTemplateProvider
    query: str = Field(min_length=1)


class MetricTemplate(Resource):
    api_version: str = "flagger.app/v1beta1"
    kind: Literal["MetricTemplate"] = "MetricTemplate"
    spec: MetricTemplateSpec

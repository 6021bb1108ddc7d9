"""Argo Rollouts' analysis kinds (``argoproj.io/v1alpha1``): AnalysisTemplate,
ClusterAnalysisTemplate and AnalysisRun.

Field names follow Argo's Go types (``pkg/apis/rollouts/v1alpha1/analysis_types.go``).
Every field of Argo's schema is declared, so a misspelt one is an unknown field (MP0010);
what meshpilot does not act on (other metric providers, dryRun, measurementRetention,
...) is typed loosely here and refused at apply by
:mod:`meshpilot.validation.argo_analysis_fields`, never stored and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Model, Regex, Resource, parse_duration
from meshpilot.api.config import ClusterObjectMeta

DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
"""Argo's default (``defaults.DefaultConsecutiveErrorLimit``)."""
DEFAULT_WEB_TIMEOUT_SECONDS = 10
DEFAULT_PROMETHEUS_TIMEOUT_SECONDS = 30
PROVIDERS = ("prometheus", "web", "job", "kayenta", "datadog", "wavefront", "newRelic",
             "cloudWatch", "graphite", "influxdb", "skywalking", "plugin")


def _duration(value: Any) -> Any:
    """Argo's DurationString: a Go duration (``30s``, ``5m``); a bare number is seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}s"
    if isinstance(value, str):
        try:
            parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("mp_duration", str(exc)) from None
        return value
    raise PydanticCustomError("mp_duration", "give a duration such as 30s or 5m")


Duration = Annotated[str, BeforeValidator(_duration)]


class SecretKeyRef(Model):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class ValueFrom(Model):
    """Where an argument's value comes from: a Secret's key (in a template) or, in a
    Rollout's arguments, the stable or latest revision's pod-template hash."""

    secret_key_ref: SecretKeyRef | None = None
    pod_template_hash_value: Literal["Stable", "Latest"] | None = None
    field_ref: Any = None  # refused by validation.argo_analysis_fields


class Argument(Model):
    name: str = Field(min_length=1)
    value: str | None = None
    value_from: ValueFrom | None = None


class Header(Model):
    key: str = Field(min_length=1)
    value: str


class PrometheusMetric(Model):
    address: str = Field(min_length=1)
    query: str = Field(min_length=1)
    timeout: int | None = Field(default=None, ge=0)
    insecure: bool | None = None
    headers: list[Header] | None = None
    authentication: Any = None
    range_query: Any = None


class WebMetric(Model):
    url: str = Field(min_length=1)
    method: Literal["GET", "POST", "PUT"] | None = None
    headers: list[Header] | None = None
    body: str | None = None
    json_body: Any = None
    timeout_seconds: int | None = Field(default=None, ge=1)
    json_path: str | None = None
    insecure: bool | None = None
    authentication: Any = None

    @model_validator(mode="after")
    def _body_with_method(self) -> WebMetric:
        if (self.body is not None or self.json_body is not None) and (
                self.method or "GET") == "GET":
            raise PydanticCustomError("mp_value", "body and jsonBody need method POST or PUT "
                                      "(Argo's rule)")
        if self.body is not None and self.json_body is not None:
            raise PydanticCustomError("mp_value", "give body or jsonBody, not both")
        return self


class MetricProvider(Model):
    """Exactly one provider (Argo's rule); meshpilot runs prometheus and web."""

    prometheus: PrometheusMetric | None = None
    web: WebMetric | None = None
    job: Any = None
    kayenta: Any = None
    datadog: Any = None
    wavefront: Any = None
    new_relic: Any = None
    cloud_watch: Any = None
    graphite: Any = None
    influxdb: Any = None
    skywalking: Any = None
    plugin: Any = None

    @model_validator(mode="after")
    def _one_provider(self) -> MetricProvider:
        given = [name for name, value in self if value is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "mp_value", "a metric's provider sets exactly one of {names}; this one sets "
                "{n}", {"names": ", ".join(PROVIDERS), "n": len(given)})
        return self


class Metric(Model):
    name: str = Field(min_length=1)
    interval: Duration | None = None
    initial_delay: Duration | None = None
    count: int | None = Field(default=None, ge=0)
    failure_limit: int | None = None
    inconclusive_limit: int | None = Field(default=None, ge=0)
    consecutive_error_limit: int | None = Field(default=None, ge=0)
    consecutive_success_limit: Any = None
    success_condition: str | None = None
    failure_condition: str | None = None
    provider: MetricProvider

    @property
    def effective_count(self) -> int | None:
        """Argo's ``EffectiveCount``: no count and no interval is one measurement; an
        interval without a count measures until the run is terminated (None)."""
        if not self.count:
            return None if self.interval else 1
        return self.count


class DryRun(Model):
    """Metrics (names matching the RE2 pattern, as Go's regexp) measured but not judged."""

    metric_name: Regex


class MeasurementRetention(Model):
    """How many measurements of the matching metrics a run keeps (default 10)."""

    metric_name: Regex
    limit: int = Field(ge=1)


def matches(pattern: str, name: str) -> bool:
    """Go's ``regexp.MatchString``: the RE2 pattern found anywhere in ``name``."""
    import re2

    return re2.search(pattern, name) is not None


class AnalysisTemplateSpec(Model):
    metrics: list[Metric] = Field(min_length=1)
    args: list[Argument] | None = None
    dry_run: list[DryRun] | None = None
    measurement_retention: list[MeasurementRetention] | None = None

    @model_validator(mode="after")
    def _rules_match(self) -> AnalysisTemplateSpec:
        """Argo's rule: each dryRun / measurementRetention rule matches some metric."""
        for field, rules in (("dryRun", self.dry_run), ("measurementRetention",
                                                       self.measurement_retention)):
            for i, rule in enumerate(rules or []):
                if not any(matches(rule.metric_name, m.name) for m in self.metrics):
                    raise PydanticCustomError(
                        "mp_value", "{field}[{i}]: {pattern!r} matches no metric name",
                        {"field": field, "i": i, "pattern": rule.metric_name})
        return self

    def dry_run_metrics(self) -> set[str]:
        return {m.name for m in self.metrics for rule in self.dry_run or []
                if matches(rule.metric_name, m.name)}

    def retention(self, name: str) -> int | None:
        """The measurement limit of metric ``name`` (the last matching rule's)."""
        limits = [r.limit for r in self.measurement_retention or []
                  if matches(r.metric_name, name)]
        return limits[-1] if limits else None

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisTemplateSpec:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PydanticCustomError("mp_value", "metric names must be unique; repeated: "
                                      "{dupes}", {"dupes": ", ".join(dupes)})
        return self


class AnalysisTemplate(Resource):
    api_version: str = "argoproj.io/v1alpha1"
    kind: Literal["AnalysisTemplate"] = "AnalysisTemplate"
    spec: AnalysisTemplateSpec


class ClusterAnalysisTemplate(Resource):
    api_version: str = "argoproj.io/v1alpha1"
    kind: Literal["ClusterAnalysisTemplate"] = "ClusterAnalysisTemplate"
    metadata: ClusterObjectMeta
    spec: AnalysisTemplateSpec


class AnalysisRunSpec(AnalysisTemplateSpec):
    terminate: bool = False
    ttl_strategy: Any = None


class AnalysisRun(Resource):
    """A run of metrics: made by a Rollout's analysis from its templates, or applied by a
    user; meshpilot measures it and writes its status as Argo does."""

    api_version: str = "argoproj.io/v1alpha1"
    kind: Literal["AnalysisRun"] = "AnalysisRun"
    spec: AnalysisRunSpec

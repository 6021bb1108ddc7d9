"""Argo Rollouts ``argoproj.io/v1alpha1`` Rollout: the canary-with-Istio part meshpilot runs.

Field names follow Argo's Go types (``pkg/apis/rollouts/v1alpha1/types.go``). Every field
of Argo's schema is declared, so a misspelt one is an unknown field (MP0010); the fields
meshpilot does not act on are typed loosely here and refused at apply by
:mod:`meshpilot.validation.argo_fields` (MP0057), never stored and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.argo_analysis import DryRun, MeasurementRetention
from meshpilot.api.base import Labels, Model, Resource, parse_duration

POD_TEMPLATE_HASH_LABEL = "rollouts-pod-template-hash"
"""The label Argo puts on a revision's pods and the DestinationRule subsets that select
them (``DefaultRolloutUniqueLabelKey``)."""
MANAGED_BY_ROLLOUTS = "argo-rollouts.argoproj.io/managed-by-rollouts"
"""The annotation Argo puts on a DestinationRule whose subsets it edits."""
DEFAULT_REVISION_HISTORY_LIMIT = 10
FAIL_FAST_MIN_SUCCESS_ANNOTATION = "meshpilot.io/fail-fast-min-success-rate"
"""A meshpilot extension (Argo has no such judgement): the success rate (%) a canary
revision is held to between analysis measurements; it is aborted as soon as its failures
prove it below (``delivery.argo.fail_fast``). Absent: off, as in Argo."""


def _duration(value: Any) -> Any:
    """Argo's pause duration: a whole number of seconds or a duration string (``30s``)."""
    if isinstance(value, bool):
        raise PydanticCustomError("mp_duration", "pause.duration must be seconds or e.g. 30s")
    if isinstance(value, int):
        if value < 0:
            raise PydanticCustomError("mp_range", "pause.duration must not be negative")
        return str(value)
    if isinstance(value, str):
        text = value if not value.isdigit() else f"{value}s"
        try:
            parse_duration(text)
        except ValueError as exc:
            raise PydanticCustomError("mp_duration", str(exc)) from None
        return value
    raise PydanticCustomError("mp_duration", "pause.duration must be seconds or e.g. 30s")


PauseDuration = Annotated[str, BeforeValidator(_duration)]


def pause_seconds(duration: str) -> float:
    return float(duration) if duration.isdigit() else parse_duration(duration)


class RolloutPause(Model):
    duration: PauseDuration | None = None

    @property
    def seconds(self) -> float | None:
        return pause_seconds(self.duration) if self.duration is not None else None


class SetCanaryScale(Model):
    """The canary's pod count apart from its traffic weight (exactly one field)."""

    replicas: int | None = Field(default=None, ge=0)
    weight: int | None = Field(default=None, ge=0, le=100)
    match_traffic_weight: bool | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SetCanaryScale:
        given = [name for name, value in self if value is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "mp_value", "setCanaryScale sets exactly one of replicas, weight, "
                "matchTrafficWeight; this one sets {n}", {"n": len(given)})
        return self


class AnalysisTemplateRef(Model):
    template_name: str = Field(min_length=1)
    cluster_scope: bool = False


class RolloutArgumentValueFrom(Model):
    """A Rollout's analysis argument from the stable or latest revision's hash."""

    pod_template_hash_value: Literal["Stable", "Latest"] | None = None
    field_ref: Any = None  # refused by validation.argo_fields

    @model_validator(mode="after")
    def _one_source(self) -> RolloutArgumentValueFrom:
        if (self.pod_template_hash_value is None) == (self.field_ref is None):
            raise PydanticCustomError("mp_value", "valueFrom sets exactly one of "
                                      "podTemplateHashValue, fieldRef")
        return self


class RolloutArgument(Model):
    name: str = Field(min_length=1)
    value: str | None = None
    value_from: RolloutArgumentValueFrom | None = None


class RolloutAnalysis(Model):
    """Templates to run as one AnalysisRun (a step's, or the background one), with the
    values of their arguments."""

    templates: list[AnalysisTemplateRef] = Field(min_length=1)
    args: list[RolloutArgument] | None = None
    dry_run: list[DryRun] | None = None
    measurement_retention: list[MeasurementRetention] | None = None
    analysis_run_metadata: Any = None


class RolloutAnalysisBackground(RolloutAnalysis):
    starting_step: int | None = Field(default=None, ge=0)


class StringMatch(Model):
    """Istio's StringMatch (exactly one of exact, prefix, regex)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        if sum(v is not None for _, v in self) != 1:
            raise PydanticCustomError("mp_value", "a match sets exactly one of exact, "
                                      "prefix, regex")
        return self


class HeaderRoutingMatch(Model):
    header_name: str = Field(min_length=1)
    header_value: StringMatch


class SetHeaderRoute(Model):
    """A route (one of ``managedRoutes``) sending requests with these headers to the
    canary; without ``match`` the route is removed."""

    name: str = Field(min_length=1)
    match: list[HeaderRoutingMatch] | None = None


class RouteMatch(Model):
    method: StringMatch | None = None
    path: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None


class SetMirrorRoute(Model):
    """A route (one of ``managedRoutes``) that serves matching requests as the weighted
    route does and mirrors ``percentage`` of them to the canary; without ``match`` the
    route is removed."""

    name: str = Field(min_length=1)
    match: list[RouteMatch] | None = None
    percentage: int | None = Field(default=None, ge=0, le=100)


class ManagedRoute(Model):
    name: str = Field(min_length=1)


class CanaryStep(Model):
    """One step; exactly one field is set (Argo's rule)."""

    set_weight: int | None = Field(default=None, ge=0, le=100)
    pause: RolloutPause | None = None
    set_canary_scale: SetCanaryScale | None = None
    analysis: RolloutAnalysis | None = None
    set_header_route: SetHeaderRoute | None = None
    set_mirror_route: SetMirrorRoute | None = None
    # Argo step kinds meshpilot does not run yet: refused by validation.argo_fields.
    experiment: Any = None
    plugin: Any = None

    @model_validator(mode="after")
    def _one_kind(self) -> CanaryStep:
        given = [name for name, value in self if value is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "mp_value", "a step sets exactly one of setWeight, pause, setCanaryScale, "
                "analysis, experiment, setHeaderRoute, setMirrorRoute, plugin; this one "
                "sets {n}", {"n": len(given)})
        return self


class IstioVirtualService(Model):
    name: str = Field(min_length=1)
    routes: list[str] | None = None
    tls_routes: Any = None
    tcp_routes: Any = None


class IstioDestinationRule(Model):
    name: str = Field(min_length=1)
    canary_subset_name: str = Field(min_length=1)
    stable_subset_name: str = Field(min_length=1)


class IstioTrafficRouting(Model):
    virtual_service: IstioVirtualService | None = None
    virtual_services: list[IstioVirtualService] | None = None
    destination_rule: IstioDestinationRule | None = None

    @model_validator(mode="after")
    def _one_place(self) -> IstioTrafficRouting:
        if (self.virtual_service is None) == (not self.virtual_services):
            raise PydanticCustomError(
                "mp_value", "give virtualService or virtualServices (one of them)")
        return self

    @property
    def all_virtual_services(self) -> list[IstioVirtualService]:
        return [self.virtual_service] if self.virtual_service else list(
            self.virtual_services or [])


class TrafficRouting(Model):
    istio: IstioTrafficRouting | None = None
    # Other routers Argo drives: refused (meshpilot is an Istio-compatible mesh).
    nginx: Any = None
    alb: Any = None
    smi: Any = None
    ambassador: Any = None
    app_mesh: Any = None
    traefik: Any = None
    apisix: Any = None
    plugins: Any = None
    managed_routes: list[ManagedRoute] | None = None
    max_traffic_weight: Any = None


DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS = 30
"""Argo's default with traffic routing: an aborted canary keeps its pods this long, so
proxies still sending to it while the split returns to stable are answered."""


class CanaryStrategy(Model):
    canary_service: str | None = None
    stable_service: str | None = None
    steps: list[CanaryStep] = Field(default_factory=list)
    traffic_routing: TrafficRouting | None = None
    analysis: RolloutAnalysisBackground | None = None
    # Accepted and warned about (Argo does not act on them under traffic routing).
    max_surge: int | str | None = None
    max_unavailable: int | str | None = None
    # Declared so they are refused by name (validation.argo_fields), not unknown.
    anti_affinity: Any = None
    canary_metadata: Any = None
    stable_metadata: Any = None
    scale_down_delay_seconds: Any = None
    scale_down_delay_revision_limit: Any = None
    abort_scale_down_delay_seconds: int = Field(default=DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS,
                                                ge=0)
    dynamic_stable_scale: Any = None
    ping_pong: Any = None
    min_pods_per_replica_set: Any = None
    replica_progress_threshold: Any = None

    @model_validator(mode="after")
    def _managed_route_names(self) -> CanaryStrategy:
        """Argo's rule: a setHeaderRoute/setMirrorRoute names one of managedRoutes."""
        managed = {r.name for r in (self.traffic_routing.managed_routes or [])} if (
            self.traffic_routing) else set()
        for step in self.steps:
            route = step.set_header_route or step.set_mirror_route
            if route is not None and route.name not in managed:
                raise PydanticCustomError(
                    "mp_value", "step route {name!r} is not in "
                    "trafficRouting.managedRoutes ({names})",
                    {"name": route.name, "names": ", ".join(sorted(managed)) or "none"})
        return self

    @model_validator(mode="after")
    def _routing_targets(self) -> CanaryStrategy:
        istio = self.traffic_routing.istio if self.traffic_routing else None
        if istio is not None and istio.destination_rule is None and not (
                self.canary_service and self.stable_service):
            raise PydanticCustomError(
                "mp_value", "Istio host-level splitting needs canaryService and "
                "stableService; or give trafficRouting.istio.destinationRule for "
                "subset-level splitting")
        return self


DEFAULT_SCALE_DOWN_DELAY_SECONDS = 30
"""Argo's default for blueGreen.scaleDownDelaySeconds."""


class BlueGreenStrategy(Model):
    """Two Services over whole revisions: ``activeService`` serves users,
    ``previewService`` the next revision until it is promoted."""

    active_service: str = Field(min_length=1)
    preview_service: str | None = None
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: int | None = Field(default=None, ge=1)
    pre_promotion_analysis: RolloutAnalysis | None = None
    post_promotion_analysis: RolloutAnalysis | None = None
    scale_down_delay_seconds: int = Field(default=DEFAULT_SCALE_DOWN_DELAY_SECONDS, ge=0)
    # Declared so they are refused by name (validation.argo_fields), not unknown.
    preview_replica_count: Any = None
    anti_affinity: Any = None
    active_metadata: Any = None
    preview_metadata: Any = None
    scale_down_delay_revision_limit: Any = None
    abort_scale_down_delay_seconds: Any = None
    max_unavailable: Any = None

    @model_validator(mode="after")
    def _two_services(self) -> BlueGreenStrategy:
        if self.preview_service == self.active_service:
            raise PydanticCustomError("mp_value", "previewService and activeService must "
                                      "be two Services")
        return self


class RolloutStrategy(Model):
    canary: CanaryStrategy | None = None
    blue_green: BlueGreenStrategy | None = None

    @model_validator(mode="after")
    def _one_strategy(self) -> RolloutStrategy:
        if (self.canary is None) == (self.blue_green is None):
            raise PydanticCustomError("mp_value", "a Rollout's strategy sets exactly one "
                                      "of canary, blueGreen")
        return self


class LabelSelector(Model):
    match_labels: Labels = Field(default_factory=dict)
    match_expressions: Any = None


DEFAULT_RUN_HISTORY_LIMIT = 5
"""Argo's default for successfulRunHistoryLimit and unsuccessfulRunHistoryLimit."""


class AnalysisRunStrategy(Model):
    """How many of a Rollout's finished AnalysisRuns are kept."""

    successful_run_history_limit: int = Field(default=DEFAULT_RUN_HISTORY_LIMIT, ge=0)
    unsuccessful_run_history_limit: int = Field(default=DEFAULT_RUN_HISTORY_LIMIT, ge=0)


class WorkloadRef(Model):
    """A Deployment whose pod template the Rollout runs (Argo's migration path): the
    Rollout takes the template, and ``scaleDown`` says what becomes of the Deployment
    (``never``, the default: left as it is; ``onsuccess``: scaled to zero once the
    Rollout is Healthy; ``progressively``: scaled down as the Rollout's pods become
    ready)."""

    api_version: Literal["apps/v1"]
    kind: Literal["Deployment"]
    name: str = Field(min_length=1)
    scale_down: Literal["never", "onsuccess", "progressively"] | None = None


class RolloutSpec(Model):
    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector | None = None
    template: dict[str, Any] | None = None
    workload_ref: WorkloadRef | None = None
    revision_history_limit: int = Field(default=DEFAULT_REVISION_HISTORY_LIMIT, ge=0)
    strategy: RolloutStrategy
    min_ready_seconds: Any = None
    paused: bool | None = None
    progress_deadline_seconds: Any = None
    progress_deadline_abort: Any = None
    restart_at: AwareDatetime | None = None
    """When the pods of every revision are restarted (once it has come)."""
    rollback_window: Any = None
    analysis: AnalysisRunStrategy = Field(default_factory=AnalysisRunStrategy)

    @model_validator(mode="after")
    def _template_selected(self) -> RolloutSpec:
        if self.workload_ref is not None:
            if self.template is not None:
                raise PydanticCustomError(
                    "mp_value", "give spec.template or spec.workloadRef, not both: a "
                    "Rollout with workloadRef runs its Deployment's pod template")
            return self  # the Deployment's template is checked when the Rollout runs
        if self.template is None or self.selector is None or not self.selector.match_labels:
            raise PydanticCustomError(
                "mp_value", "a Rollout needs selector.matchLabels and a pod template")
        labels = (self.template.get("metadata") or {}).get("labels") or {}
        missing = {k: v for k, v in self.selector.match_labels.items() if labels.get(k) != v}
        if missing:
            raise PydanticCustomError(
                "mp_value", "selector.matchLabels {missing} are not on "
                "template.metadata.labels; the Rollout would select none of its pods",
                {"missing": missing})
        return self


class Rollout(Resource):
    api_version: str = "argoproj.io/v1alpha1"
    kind: Literal["Rollout"] = "Rollout"
    spec: RolloutSpec

    @property
    def canary(self) -> CanaryStrategy:
        """The canary strategy (validation refuses a Rollout without one)."""
        canary = self.spec.strategy.canary
        if canary is None:
            raise ValueError(f"Rollout {self.metadata.name} has no canary strategy")
        return canary

    @property
    def blue_green(self) -> BlueGreenStrategy | None:
        return self.spec.strategy.blue_green

    @property
    def steps(self) -> list[CanaryStep]:
        """The canary's steps; a blue-green Rollout has none."""
        canary = self.spec.strategy.canary
        return canary.steps if canary is not None else []

    @property
    def istio(self) -> IstioTrafficRouting | None:
        canary = self.spec.strategy.canary
        routing = canary.traffic_routing if canary is not None else None
        return routing.istio if routing else None

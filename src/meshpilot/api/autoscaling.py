"""Kubernetes' HorizontalPodAutoscaler (``autoscaling/v2``, and the older ``v2beta2``,
whose schema is the same) and Kubernetes resource quantities.

Field names and limits follow the Kubernetes API reference. The model accepts every
shape the API server accepts, so a manifest written for Kubernetes loads; which of them
meshpilot computes (CPU, the mesh's request rate) is judged by the validation rules
(MP0070), which can name the field and the valid alternatives.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Model, Resource

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|"
                       r"n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = MappingProxyType({
    None: "1", "n": "1e-9", "u": "1e-6", "m": "1e-3", "k": "1e3", "M": "1e6", "G": "1e9",
    "T": "1e12", "P": "1e15", "E": "1e18", "Ki": str(2**10), "Mi": str(2**20),
    "Gi": str(2**30), "Ti": str(2**40), "Pi": str(2**50), "Ei": str(2**60),
})
"""The multiplier of each suffix (a decimal string: exact)."""


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``100m``, ``1.5``, ``2k``, ``512Mi``) as a number: CPU in
    cores, a rate in events per second. Raises ValueError naming the accepted syntax."""
    if isinstance(value, bool):
        raise ValueError("a quantity is a number or a string such as 100m, 1.5 or 2k")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"quantity {value!r} does not parse; write a number with an optional "
                         "suffix: 100m (thousandths), 1.5, 2k, 512Mi")
    try:
        return float(Decimal(match.group(1)) * Decimal(_SUFFIX[match.group(2)]))
    except InvalidOperation:
        raise ValueError(f"quantity {value!r} does not parse") from None


def _check_quantity(value: Any) -> Any:
    try:
        parse_quantity(value)
    except (ValueError, TypeError) as exc:
        raise PydanticCustomError("mp_value", str(exc)) from None
    return value


Quantity = Annotated[str | int | float, BeforeValidator(_check_quantity)]
"""A Kubernetes quantity kept as written (``100m``), checked to parse."""


class CrossVersionObjectReference(Model):
    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    api_version: str | None = None


class MetricTarget(Model):
    type: Literal["Utilization", "Value", "AverageValue"]
    value: Quantity | None = None
    average_value: Quantity | None = None
    average_utilization: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _value_of_type(self) -> MetricTarget:
        wanted = {"Utilization": "averageUtilization", "Value": "value",
                  "AverageValue": "averageValue"}[self.type]
        given = {"averageUtilization": self.average_utilization, "value": self.value,
                 "averageValue": self.average_value}
        if given[wanted] is None:
            raise PydanticCustomError("mp_value", "target type {type} needs {field}",
                                      {"type": self.type, "field": wanted})
        others = sorted(k for k, v in given.items() if v is not None and k != wanted)
        if others:
            raise PydanticCustomError(
                "mp_value", "target type {type} takes {field} only, not {others}",
                {"type": self.type, "field": wanted, "others": ", ".join(others)})
        return self


class MetricIdentifier(Model):
    name: str = Field(min_length=1)
    selector: dict[str, Any] | None = None


class ResourceMetricSource(Model):
    name: str = Field(min_length=1)
    target: MetricTarget


class ContainerResourceMetricSource(Model):
    name: str = Field(min_length=1)
    container: str = Field(min_length=1)
    target: MetricTarget


class PodsMetricSource(Model):
    metric: MetricIdentifier
    target: MetricTarget


class ObjectMetricSource(Model):
    described_object: CrossVersionObjectReference
    metric: MetricIdentifier
    target: MetricTarget


class ExternalMetricSource(Model):
    metric: MetricIdentifier
    target: MetricTarget


MetricType = Literal["Resource", "Pods", "Object", "External", "ContainerResource"]
_SOURCE_OF = MappingProxyType({"Resource": "resource", "Pods": "pods", "Object": "object",
                               "External": "external",
                               "ContainerResource": "containerResource"})


class MetricSpec(Model):
    type: MetricType
    resource: ResourceMetricSource | None = None
    pods: PodsMetricSource | None = None
    object: ObjectMetricSource | None = None
    external: ExternalMetricSource | None = None
    container_resource: ContainerResourceMetricSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MetricSpec:
        wanted = _SOURCE_OF[self.type]
        given = sorted(f for f in _SOURCE_OF.values()
                       if getattr(self, _snake(f)) is not None)
        if given != [wanted]:
            raise PydanticCustomError(
                "mp_value", "a metric of type {type} needs {wanted} and no other source; "
                "got {got}", {"type": self.type, "wanted": wanted,
                              "got": ", ".join(given) or "none"})
        return self


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


class HPAScalingPolicy(Model):
    type: Literal["Pods", "Percent"]
    value: int = Field(ge=1)
    period_seconds: int = Field(ge=1, le=1800)


class HPAScalingRules(Model):
    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[HPAScalingPolicy] | None = None
    tolerance: Quantity | None = None


class HorizontalPodAutoscalerBehavior(Model):
    scale_up: HPAScalingRules | None = None
    scale_down: HPAScalingRules | None = None


class HorizontalPodAutoscalerSpec(Model):
    scale_target_ref: CrossVersionObjectReference
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(ge=1)
    metrics: list[MetricSpec] | None = None
    behavior: HorizontalPodAutoscalerBehavior | None = None

    @model_validator(mode="after")
    def _min_below_max(self) -> HorizontalPodAutoscalerSpec:
        if self.max_replicas < self.min_replicas:
            raise PydanticCustomError(
                "mp_value", "maxReplicas ({max}) must be at least minReplicas ({min})",
                {"max": self.max_replicas, "min": self.min_replicas})
        return self

    def effective_metrics(self) -> list[MetricSpec]:
        """The metrics to compute: Kubernetes' default (80 % of requested CPU) when none
        are given."""
        if self.metrics:
            return self.metrics
        return [MetricSpec(type="Resource", resource=ResourceMetricSource(
            name="cpu", target=MetricTarget(type="Utilization", average_utilization=80)))]


class HorizontalPodAutoscaler(Resource):
    api_version: str = "autoscaling/v2"
    kind: Literal["HorizontalPodAutoscaler"] = "HorizontalPodAutoscaler"
    spec: HorizontalPodAutoscalerSpec


REQUEST_RATE_METRIC = "istio_requests_per_second"
"""The request-rate metric meshpilot computes from its own telemetry: requests per
second over :data:`RATE_WINDOW_SECONDS`, as the per-second rate of ``istio_requests_total``
that a Prometheus adapter commonly exposes under this name (its rule renames
``<name>_total`` to ``<name>_per_second``). As a ``Pods`` metric: the requests the
target's pods served (``reporter=destination``), per pod; as an ``Object`` metric of a
Service: the requests to that Service."""
RATE_WINDOW_SECONDS = 30.0
"""The window of the request rate: short, so a scale-up follows a burst within a sync
or two, and long enough to smooth a telemetry cycle."""

"""What a HorizontalPodAutoscaler may ask for, beyond its model: the metrics meshpilot
computes (MP0070 refuses the rest, naming what would work).

meshpilot measures a Deployment's CPU from its pods' processes and the request rate
from its own telemetry; memory, external metrics and arbitrary custom metrics would
need a metrics pipeline it does not have. An autoscaler that looked as if it scaled on
them, and never did, is worse than a refusal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.api.autoscaling import REQUEST_RATE_METRIC
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_list, as_mapping

_REFUSED = codes.HPA_NOT_COMPUTED
_COMPUTED = ("Resource cpu (Utilization or AverageValue), Pods "
             f"{REQUEST_RATE_METRIC} (AverageValue), Object {REQUEST_RATE_METRIC} of a "
             "Service (Value or AverageValue)")


def hpa_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    return [*_scale_target(spec), *_metrics(spec)]


def _scale_target(spec: Mapping[str, Any]) -> Iterator[Finding]:
    ref = as_mapping(spec.get("scaleTargetRef"))
    kind, api_version = ref.get("kind"), ref.get("apiVersion")
    if kind != "Deployment":
        yield Finding(_REFUSED, ("spec", "scaleTargetRef", "kind"),
                      f"scaleTargetRef kind {kind!r} is refused: the local runtime scales "
                      "Deployments only; point it at a Deployment (apps/v1)")
    elif api_version not in (None, "apps/v1"):
        yield Finding(_REFUSED, ("spec", "scaleTargetRef", "apiVersion"),
                      f"scaleTargetRef apiVersion {api_version!r} is refused: Deployments "
                      "are apps/v1")


def _metrics(spec: Mapping[str, Any]) -> Iterator[Finding]:
    for i, metric in enumerate(as_list(spec.get("metrics"))):
        metric = as_mapping(metric)
        path: Path = ("spec", "metrics", i)
        kind = metric.get("type")
        if kind == "Resource":
            yield from _resource(as_mapping(metric.get("resource")), (*path, "resource"))
        elif kind == "Pods":
            yield from _rate(as_mapping(metric.get("pods")), (*path, "pods"), ("AverageValue",))
        elif kind == "Object":
            yield from _object(as_mapping(metric.get("object")), (*path, "object"))
        else:
            yield Finding(_REFUSED, (*path, "type"),
                          f"metric type {kind} is refused: meshpilot has no metrics pipeline "
                          f"for it; it computes {_COMPUTED}")


def _resource(source: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    name = source.get("name")
    if name != "cpu":
        yield Finding(_REFUSED, (*path, "name"),
                      f"resource {name!r} is refused: meshpilot measures the CPU time of a "
                      f"pod's processes only; it computes {_COMPUTED}")
        return
    target = as_mapping(source.get("target")).get("type")
    if target == "Value":
        yield Finding(_REFUSED, (*path, "target", "type"),
                      "a Resource metric's target is Utilization or AverageValue, not Value "
                      "(as Kubernetes asks)")


def _rate(source: Mapping[str, Any], path: Path, targets: tuple[str, ...]) -> Iterator[Finding]:
    metric = as_mapping(source.get("metric"))
    if metric.get("name") != REQUEST_RATE_METRIC:
        yield Finding(_REFUSED, (*path, "metric", "name"),
                      f"metric {metric.get('name')!r} is refused: the custom metric meshpilot "
                      f"computes from its own telemetry is {REQUEST_RATE_METRIC}; it "
                      f"computes {_COMPUTED}")
    if metric.get("selector") is not None:
        yield Finding(_REFUSED, (*path, "metric", "selector"),
                      f"metric.selector is refused: {REQUEST_RATE_METRIC} counts every "
                      "request; remove the selector")
    target = as_mapping(source.get("target")).get("type")
    if target not in targets:
        yield Finding(_REFUSED, (*path, "target", "type"),
                      f"target type {target} is refused here; use {' or '.join(targets)}")


def _object(source: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    described = as_mapping(source.get("describedObject"))
    if described.get("kind") != "Service" or described.get("apiVersion") not in (None, "v1"):
        yield Finding(_REFUSED, (*path, "describedObject"),
                      f"an Object metric of a {described.get('kind')} is refused: meshpilot "
                      f"counts {REQUEST_RATE_METRIC} for a Service (apiVersion v1) only")
    yield from _rate(source, path, ("Value", "AverageValue"))

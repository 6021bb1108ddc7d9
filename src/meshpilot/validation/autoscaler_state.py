"""HorizontalPodAutoscalers across objects: what they scale must exist and be
measurable, and a Canary's ``autoscalerRef`` must name one.

All warnings, as for a pod's missing ConfigMap: the objects are applied, and nothing is
scaled until the missing piece is (MP2047); an autoscaler on the CPU utilization of pods
that request no CPU reports FailedGetResourceMetric on every sync (MP2048), which is
better said at apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]


def check_autoscalers(objects: list[StateObject], report: Report, found: Findings) -> None:
    by_key = {(o.key.kind, o.namespace, o.key.name): o for o in objects}
    for obj in objects:
        if not report(obj):
            continue
        if obj.key.kind == "HorizontalPodAutoscaler":
            _check_target(obj, by_key, found)
        elif obj.key.kind == "Canary":
            _check_ref(obj, by_key, found)


def _check_target(hpa: StateObject, by_key: Mapping[tuple[str, str, str], StateObject],
                  found: Findings) -> None:
    ref = as_mapping(hpa.spec.get("scaleTargetRef"))
    name = ref.get("name")
    if ref.get("kind") != "Deployment" or not isinstance(name, str):
        return
    target = by_key.get(("Deployment", hpa.namespace, name))
    if target is None:
        found.add(codes.HPA_TARGET_MISSING, hpa, ("spec", "scaleTargetRef", "name"),
                  f"no Deployment {hpa.namespace}/{name}: nothing is scaled until it exists")
        return
    if _on_cpu_utilization(hpa.spec) and not _requests_cpu(target.spec):
        found.add(codes.HPA_NO_CPU_REQUEST, hpa, ("spec", "metrics"),
                  f"Deployment {hpa.namespace}/{name} has a container without "
                  "resources.requests.cpu: CPU utilization (a percentage of the request) "
                  "cannot be computed; set the request, or target an AverageValue")


def _on_cpu_utilization(spec: Mapping[str, Any]) -> bool:
    metrics = as_list(spec.get("metrics"))
    if not metrics:
        return True  # Kubernetes' default: 80 % of the requested CPU
    return any(as_mapping(as_mapping(m).get("resource")).get("name") == "cpu"
               and as_mapping(as_mapping(as_mapping(m).get("resource")).get("target")).get(
                   "type") == "Utilization" for m in metrics)


def _requests_cpu(spec: Mapping[str, Any]) -> bool:
    pod = as_mapping(as_mapping(spec.get("template")).get("spec"))
    containers = as_list(pod.get("containers"))
    return bool(containers) and all(
        "cpu" in as_mapping(as_mapping(as_mapping(c).get("resources")).get("requests"))
        for c in containers)


def _check_ref(canary: StateObject, by_key: Mapping[tuple[str, str, str], StateObject],
               found: Findings) -> None:
    ref = as_mapping(canary.spec.get("autoscalerRef"))
    name = ref.get("name")
    if not isinstance(name, str) or ref.get("kind", "HorizontalPodAutoscaler") != (
            "HorizontalPodAutoscaler"):
        return
    if ("HorizontalPodAutoscaler", canary.namespace, name) not in by_key:
        found.add(codes.HPA_TARGET_MISSING, canary, ("spec", "autoscalerRef", "name"),
                  f"no HorizontalPodAutoscaler {canary.namespace}/{name}: the primary gets no "
                  "autoscaler until it exists")

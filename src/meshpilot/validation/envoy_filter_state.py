"""EnvoyFilter against the rest of the state: a ``workloadSelector`` that selects nothing.

A filter patches only the proxies of the workloads it selects: those of its namespace,
or of every namespace for one in the root namespace ``istio-system``. When no workload
there carries its selector's labels, it patches nothing (yet); that is said at apply
(MP2057), as Istio's analyzers say it of a Sidecar or a subset, rather than left for the
user to find out from an unchanged proxy. The ingress gateway is a workload too: it
carries :data:`GATEWAY_LABELS` in ``istio-system``.

References (``state_refs``): a filter reads one label of its selector; every workload
provides its labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.shapes import as_mapping
from meshpilot.validation.state_object import Findings, StateObject

ROOT_NAMESPACE = "istio-system"
GATEWAY_LABELS: Mapping[str, str] = MappingProxyType(
    {"istio": "ingressgateway", "app": "istio-ingressgateway"})
"""The built-in ingress gateway's labels (the control plane gives it these)."""


def selector_of(obj: StateObject) -> dict[str, str]:
    labels = as_mapping(as_mapping(obj.spec.get("workloadSelector")).get("labels"))
    return {str(k): str(v) for k, v in labels.items()}


def _workloads(objects: list[StateObject]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(namespace, labels) of every workload: pods' templates, entries, the gateway."""
    yield ROOT_NAMESPACE, GATEWAY_LABELS
    for obj in objects:
        if obj.key.kind in ("Deployment", "Rollout"):
            template = as_mapping(obj.spec.get("template"))
            yield obj.namespace, as_mapping(as_mapping(template.get("metadata")).get("labels"))
        elif obj.key.kind == "WorkloadEntry":
            yield obj.namespace, as_mapping(obj.spec.get("labels"))


def check_envoy_filters(objects: list[StateObject], report: Callable[[StateObject], bool],
                        found: Findings) -> None:
    filters = [o for o in objects if o.key.kind == "EnvoyFilter" and report(o)
               and selector_of(o)]
    if not filters:
        return
    workloads = list(_workloads(objects))
    for obj in filters:
        wanted = selector_of(obj)
        if any((obj.namespace in (ROOT_NAMESPACE, ns)) and
               all(labels.get(k) == v for k, v in wanted.items()) for ns, labels in workloads):
            continue
        where = "any namespace" if obj.namespace == ROOT_NAMESPACE else \
            f"namespace {obj.namespace}"
        shown = ",".join(f"{k}={v}" for k, v in sorted(wanted.items()))
        found.add(codes.ENVOY_FILTER_NO_WORKLOAD, obj, ("spec", "workloadSelector", "labels"),
                  f"no workload in {where} has the labels {shown}: this filter patches "
                  "no proxy until one does")

"""What a HorizontalPodAutoscaler may say, at apply: the shapes Kubernetes accepts load;
what meshpilot cannot compute is refused (MP0070) at its path; what is missing around it
is a warning (MP2047, MP2048).

The accepted cases follow Kubernetes' autoscaling/v2 reference and Flagger's podinfo
``kustomize/podinfo/hpa.yaml`` (its fields and values: ``tests.builders.PODINFO_HPA``);
the request-rate form follows the Prometheus adapter's renaming of
``istio_requests_total`` to ``istio_requests_per_second``.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.builders import PODINFO_HPA

from meshpilot.validation import Plan, plan_apply

PODINFO = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo}
spec:
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:6.0.0
          resources: {requests: {cpu: 100m}}
"""


def plan(*texts: str) -> Plan:
    return plan_apply([("hpa.yaml", "---\n".join(texts))], [])


def codes(p: Plan) -> list[tuple[str, str]]:
    """The autoscaling findings (MP2017, resources not reserved, is another matter)."""
    return [(d.code, d.path) for d in p.diagnostics if d.code != "MP2017"]


def hpa(**spec: Any) -> str:
    doc = yaml.safe_load(PODINFO_HPA)
    doc["spec"].update(spec)
    return yaml.safe_dump(doc)


def test_flaggers_podinfo_autoscaler_applies_unchanged() -> None:
    p = plan(PODINFO_HPA, PODINFO)
    assert p.ok and codes(p) == [], [d.format() for d in p.diagnostics]


def test_v2beta2_and_the_request_rate_forms_apply() -> None:
    rate = [{"type": "Pods", "pods": {"metric": {"name": "istio_requests_per_second"},
                                      "target": {"type": "AverageValue", "averageValue": "10"}}},
            {"type": "Object", "object": {
                "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "podinfo"},
                "metric": {"name": "istio_requests_per_second"},
                "target": {"type": "Value", "value": "100"}}}]
    text = hpa(metrics=rate, behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    p = plan(text.replace("autoscaling/v2", "autoscaling/v2beta2"), PODINFO)
    assert p.ok and codes(p) == [], [d.format() for d in p.diagnostics]


REFUSED = [
    ({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "podinfo"}},
     "spec.scaleTargetRef.kind"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "100Mi"}}}]}, "spec.metrics[0].resource.name"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Value", "value": "1"}}}]}, "spec.metrics[0].resource.target.type"),
    ({"metrics": [{"type": "External", "external": {"metric": {"name": "queue"}, "target": {
        "type": "Value", "value": "1"}}}]}, "spec.metrics[0].type"),
    ({"metrics": [{"type": "Pods", "pods": {"metric": {"name": "http_requests"}, "target": {
        "type": "AverageValue", "averageValue": "1"}}}]}, "spec.metrics[0].pods.metric.name"),
    ({"metrics": [{"type": "Pods", "pods": {
        "metric": {"name": "istio_requests_per_second",
                   "selector": {"matchLabels": {"response_code": "200"}}},
        "target": {"type": "AverageValue", "averageValue": "1"}}}]},
     "spec.metrics[0].pods.metric.selector"),
    ({"metrics": [{"type": "Object", "object": {
        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                            "name": "main"},
        "metric": {"name": "istio_requests_per_second"},
        "target": {"type": "Value", "value": "10"}}}]}, "spec.metrics[0].object.describedObject"),
]


@pytest.mark.parametrize(("spec", "path"), REFUSED, ids=[p for _, p in REFUSED])
def test_what_is_not_computed_is_refused_at_its_path(spec: dict[str, Any], path: str) -> None:
    p = plan(hpa(**spec), PODINFO)
    assert not p.ok and ("MP0070", path) in codes(p), [d.format() for d in p.diagnostics]


def test_model_checks_name_the_field() -> None:
    p = plan(hpa(minReplicas=5))
    assert not p.ok and any("maxReplicas (4) must be at least minReplicas (5)" in d.message
                            for d in p.diagnostics)
    p = plan(hpa(metrics=[{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageValue": "1"}}}]))
    assert not p.ok and any("needs averageUtilization" in d.message for d in p.diagnostics)


def test_missing_target_and_missing_cpu_request_are_warnings() -> None:
    p = plan(PODINFO_HPA)
    assert p.ok and codes(p) == [("MP2047", "spec.scaleTargetRef.name")]
    p = plan(PODINFO_HPA, PODINFO.replace("resources: {requests: {cpu: 100m}}", "args: []"))
    assert p.ok and codes(p) == [("MP2048", "spec.metrics")]


def test_a_canary_autoscaler_ref_to_a_missing_autoscaler_is_a_warning() -> None:
    canary = """\
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}
  service: {port: 9898}
"""
    p = plan(canary, PODINFO)
    assert p.ok and ("MP2047", "spec.autoscalerRef.name") in codes(p)
    p = plan(canary, PODINFO, PODINFO_HPA)
    assert p.ok and not [c for c in codes(p) if c[0].startswith("MP20")]

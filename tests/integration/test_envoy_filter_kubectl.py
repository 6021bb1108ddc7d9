"""The real ``kubectl`` with EnvoyFilter, as an Istio user runs the local rate limit task
("Enabling Rate Limits using Envoy"): ``kubectl apply -f`` of the task's filter, then
``kubectl get envoyfilters`` in its namespace; and a filter meshpilot does not apply is
refused with its code, through kubectl (a control plane without a mesh: no proxy to
judge, the document's own checks only)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tests.conftest import ControlPlane
from tests.integration.test_envoy_filter_envoy_check import RATE_LIMIT
from tests.integration.test_kubectl import kubectl, plane

__all__ = ["plane"]  # the module's control plane fixture


def test_kubectl_applies_and_lists_the_rate_limit_filter(plane: ControlPlane,
                                                          tmp_path: Path) -> None:
    task = tmp_path / "ratelimit.yaml"
    task.write_text(yaml.safe_dump(RATE_LIMIT))
    out = kubectl(plane, "apply", "-f", str(task)).stdout
    assert "envoyfilter.networking.istio.io/filter-local-ratelimit-svc created" in out
    listed = json.loads(kubectl(plane, "get", "envoyfilters", "-n", "istio-system",
                                "-o", "json").stdout)
    [item] = listed["items"]
    patch = item["spec"]["configPatches"][0]
    assert patch["applyTo"] == "HTTP_FILTER" and patch["patch"]["operation"] == "INSERT_BEFORE"

    bootstrap = {**RATE_LIMIT, "metadata": {"name": "boot", "namespace": "istio-system"},
                 "spec": {"configPatches": [{"applyTo": "BOOTSTRAP", "patch": {
                     "operation": "MERGE", "value": {}}}]}}
    bad = tmp_path / "bootstrap.yaml"
    bad.write_text(yaml.safe_dump(bootstrap))
    refused = kubectl(plane, "apply", "-f", str(bad), check=False)
    assert refused.returncode == 1
    assert "MP0086" in refused.stderr and "BOOTSTRAP" in refused.stderr, refused.stderr

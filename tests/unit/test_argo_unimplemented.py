"""Nothing of Argo's schema is accepted and silently ignored: every field meshpilot
declares only so it can be refused by name (typed loosely, ``Any``, in
:mod:`meshpilot.api.argo`) is refused at apply with MP0057 at its path, and every
metric provider of Argo's ``docs/features/analysis.md`` other than prometheus and web
with MP0075. The fields are found by reading the models, so a field added later without
its refusal fails here.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from tests.unit.test_argo_rollout_fields import BASE

from meshpilot.api.argo import BlueGreenStrategy, CanaryStrategy, RolloutSpec, TrafficRouting
from meshpilot.api.argo_analysis import PROVIDERS
from meshpilot.validation import plan_apply

DUMMY: Any = {"x": 1}


def loose_fields(model: type[BaseModel]) -> list[str]:
    """The camelCase names of ``model``'s fields typed ``Any`` (declared to refuse)."""
    return [to_camel(name) for name, info in model.model_fields.items()
            if info.annotation is Any]


def blue_green_base() -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["spec"]["strategy"] = {"blueGreen": {"activeService": "web-active"}}
    return body


PLACES: list[tuple[str, list[str]]] = [
    *((f"spec.{f}", ["spec", f]) for f in loose_fields(RolloutSpec)),
    *((f"spec.strategy.canary.{f}", ["spec", "strategy", "canary", f])
      for f in loose_fields(CanaryStrategy)),
    *((f"spec.strategy.canary.trafficRouting.{f}",
       ["spec", "strategy", "canary", "trafficRouting", f])
      for f in loose_fields(TrafficRouting)),
    *((f"spec.strategy.blueGreen.{f}", ["spec", "strategy", "blueGreen", f])
      for f in loose_fields(BlueGreenStrategy)),
]


def test_the_models_declare_the_fields_argo_has_and_meshpilot_refuses() -> None:
    """The introspection finds Argo's known unimplemented fields (a guard on the guard)."""
    names = {path for path, _ in PLACES}
    for path in ("spec.minReadySeconds", "spec.strategy.canary.canaryMetadata",
                 "spec.strategy.canary.stableMetadata", "spec.strategy.canary.antiAffinity",
                 "spec.strategy.canary.trafficRouting.nginx",
                 "spec.strategy.blueGreen.previewReplicaCount"):
        assert path in names
    assert "spec.workloadRef" not in names  # implemented


@pytest.mark.parametrize(("path", "keys"), PLACES, ids=[p for p, _ in PLACES])
def test_every_loosely_typed_rollout_field_is_refused_by_name(path: str,
                                                              keys: list[str]) -> None:
    body = blue_green_base() if "blueGreen" in keys else copy.deepcopy(BASE)
    node = body
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = DUMMY
    p = plan_apply([("ro.yaml", yaml.safe_dump(body))], [])
    assert not p.ok
    assert ("MP0057", path) in [(d.code, d.path) for d in p.diagnostics], [
        d.format() for d in p.diagnostics]


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p not in ("prometheus", "web")])
def test_every_provider_but_prometheus_and_web_is_refused_by_name(provider: str) -> None:
    template = {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": "t", "namespace": "default"},
                "spec": {"metrics": [{"name": "m", "provider": {provider: DUMMY}}]}}
    p = plan_apply([("at.yaml", yaml.safe_dump(template))], [])
    assert not p.ok
    (d,) = [d for d in p.diagnostics if d.code == "MP0075"]
    assert d.path == f"spec.metrics[0].provider.{provider}"
    assert "prometheus and web" in d.message


def test_the_providers_are_argos() -> None:
    assert {"job", "datadog", "newRelic", "wavefront", "kayenta", "cloudWatch", "graphite",
            "influxdb"} <= set(PROVIDERS)

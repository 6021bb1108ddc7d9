"""``meshpilot.io/retry-on-primary`` on a Canary: judged at apply (MP0084 refuses a bad
value, MP2037 warns where it means nothing, MP2038 where it stands on an Argo Rollout)
and carried by the generated VirtualService.

Flagger has no such knob (it is meshpilot's, like ``meshpilot.io/mirror-first``); the
strategies are told apart in the order Flagger's scheduler dispatches them: A/B testing
(iterations and match), blue-green (iterations), mirroring (mirror), else progressive
traffic shifting, the only one where the canary has a weighted share of user requests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import run_cli
from tests.unit.argo_harness import rollout as rollout_body
from tests.unit.rollout_harness import canary, deployment

from meshpilot.api.flagger import RETRY_ON_PRIMARY_ANNOTATION, Canary
from meshpilot.delivery import objects as gen
from meshpilot.delivery.state import RolloutState
from meshpilot.validation import Plan, plan_apply

KEY = RETRY_ON_PRIMARY_ANNOTATION


def body(value: str | None, analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    out = canary(analysis)
    if value is not None:
        out["metadata"].setdefault("annotations", {})[KEY] = value
    return out


def plan(value: str | None, analysis: dict[str, Any] | None = None) -> Plan:
    return plan_apply([("canary.json", json.dumps(body(value, analysis)))], [])


def codes(p: Plan) -> list[tuple[str, str]]:
    return [(d.code, d.path) for d in p.diagnostics]


PATH = f"metadata.annotations.{KEY}"


@pytest.mark.parametrize("value", ["True", "yes", "1", "", "on"])
def test_a_value_other_than_true_or_false_is_refused(value: str) -> None:
    p = plan(value)
    assert not p.ok
    (d,) = p.diagnostics
    assert d.code == "MP0084" and d.severity.value == "error"
    assert KEY in d.message and '"true"' in d.message and '"false"' in d.message


@pytest.mark.parametrize("value", ["true", "false", None])
def test_true_false_or_absent_is_accepted_quietly_on_a_progressive_canary(
        value: str | None) -> None:
    p = plan(value)
    assert p.ok and codes(p) == []


@pytest.mark.parametrize(("analysis", "strategy"), [
    ({"iterations": 5, "match": [{"headers": {"x-canary": {"exact": "1"}}}]}, "A/B testing"),
    ({"iterations": 5}, "blue-green"),
    ({"mirror": True}, "mirroring"),
])
def test_strategies_without_a_weighted_share_are_warned_about(
        analysis: dict[str, Any], strategy: str) -> None:
    p = plan("true", analysis)
    assert p.ok
    (d,) = p.diagnostics
    assert (d.code, d.path, d.severity.value) == ("MP2037", PATH, "warning")
    assert strategy in d.message
    assert codes(plan("false", analysis)) == []  # off: nothing to say


@pytest.mark.parametrize(("service", "said"), [
    ({"delegation": True}, "service.delegation"),
    ({"gateways": ["istio-system/public"], "hosts": ["app.example.com"]}, "service.gateways"),
])
def test_a_delegate_or_gateway_only_virtual_service_is_warned_about(
        service: dict[str, Any], said: str) -> None:
    b = body("true")
    b["spec"]["service"].update(service)
    p = plan_apply([("canary.json", json.dumps(b))], [])
    assert p.ok
    (d,) = p.diagnostics
    assert (d.code, d.path) == ("MP2037", PATH) and said in d.message
    b["spec"]["service"]["gateways"] = [*service.get("gateways", []), "mesh"]
    if "delegation" not in service:  # with the mesh too, the sidecars retry: no warning
        assert codes(plan_apply([("canary.json", json.dumps(b))], [])) == []


def test_a_virtual_service_with_a_bad_value_is_refused() -> None:
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "app", "namespace": "default", "annotations": {KEY: "yes"}},
          "spec": {"hosts": ["app"], "http": [{"route": [{"destination": {"host": "app"}}]}]}}
    p = plan_apply([("vs.json", json.dumps(vs))], [])
    assert [d.code for d in p.diagnostics] == ["MP0084"] and not p.ok


def test_the_generated_virtual_service_carries_the_intent_only_when_on() -> None:
    state = RolloutState(phase="Progressing", canary_scaled=True, target_replicas=2,
                         canary_weight=10)
    on = Canary.model_validate(body("true"))
    off = Canary.model_validate(body("false"))
    absent = Canary.model_validate(body(None))
    vs_on = gen.virtual_service(on, gen.routing(on, state))
    vs_off = gen.virtual_service(off, gen.routing(off, state))
    vs_absent = gen.virtual_service(absent, gen.routing(absent, state))
    assert vs_on["metadata"]["annotations"][KEY] == "true"
    assert KEY not in vs_off["metadata"]["annotations"]
    assert vs_off == vs_absent  # off is the default: the very same object is written
    assert vs_on["spec"] == vs_off["spec"]  # the routes are the translation's business
    assert on.retry_on_primary and not off.retry_on_primary and not absent.retry_on_primary


def test_the_generated_set_with_the_intent_passes_the_store_validation() -> None:
    target = deployment("v1")
    c = Canary.model_validate(body("true"))
    state = RolloutState(phase="Progressing", canary_scaled=True, target_replicas=2,
                         canary_weight=30, primary_template=target["spec"]["template"])
    objs = [o for o in gen.desired_objects(c, target, state)
            if not (o["kind"] == "Deployment" and o["metadata"]["name"] == "podinfo")]
    sources = [(f"{o['kind']}.json", json.dumps(o)) for o in [body("true"), target, *objs]]
    p = plan_apply(sources)
    assert p.ok and not p.diagnostics, [d.message for d in p.diagnostics]


def test_analyze_shows_them(tmp_path: Path) -> None:
    warned = tmp_path / "warned.json"
    warned.write_text(json.dumps(body("true", {"iterations": 5})))
    r = run_cli("analyze", "-f", str(warned), state_dir=tmp_path / "state")
    assert r.returncode == 0 and "MP2037" in r.stderr + r.stdout, r
    refused = tmp_path / "refused.json"
    refused.write_text(json.dumps(body("ture")))
    r = run_cli("analyze", "-f", str(refused), state_dir=tmp_path / "state")
    assert r.returncode == 1 and "MP0084" in r.stderr + r.stdout, r


def test_on_an_argo_rollout_it_is_warned_about_where_it_stands() -> None:
    """Argo Rollouts only re-weight the user's VirtualService (Argo's Istio traffic
    routing); the annotation is read on that VirtualService, not on the Rollout."""
    body_ = rollout_body()
    body_.setdefault("metadata", {})["annotations"] = {KEY: "true"}
    p = plan_apply([("rollout.yaml", yaml.safe_dump(body_, sort_keys=False))], [])
    found = [d for d in p.diagnostics if d.code == "MP2038"]
    assert p.ok and len(found) == 1, [d.format() for d in p.diagnostics]
    (d,) = found
    assert d.path == PATH and d.line is not None and "VirtualService" in d.message
    plain = rollout_body()
    assert "MP2038" not in [d.code for d in plan_apply(
        [("rollout.yaml", yaml.safe_dump(plain, sort_keys=False))], []).diagnostics]

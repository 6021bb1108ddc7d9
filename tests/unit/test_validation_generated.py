"""A controller's objects are validated without the parse that finds field positions,
and no less strictly than the same objects written as a file: the same findings (only
the line differs: there is none), the same refusals, and nothing shared with the caller.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from meshpilot.validation import Generated, codes, plan_apply

SOURCE = "<delivery-controller>"


def virtual_service(weights: tuple[int, int], host: str = "myapp") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "myapp", "namespace": "default"},
            "spec": {"hosts": [host], "http": [{"route": [
                {"destination": {"host": "myapp-primary"}, "weight": weights[0]},
                {"destination": {"host": "myapp-canary"}, "weight": weights[1]}]}]}}


def findings(plan: Any) -> list[tuple[str, str | None, str, str | None]]:
    return sorted((d.code, d.path, d.message, d.file) for d in plan.diagnostics)


def as_text(*objects: dict[str, Any]) -> tuple[str, str]:
    return SOURCE, yaml.safe_dump_all(objects, sort_keys=False)


def test_a_valid_object_is_planned_as_its_text_is() -> None:
    obj = virtual_service((90, 10))
    generated = plan_apply([Generated(SOURCE, (obj,))])
    parsed = plan_apply([as_text(obj)])
    assert generated.ok and parsed.ok
    assert [o.body for o in generated.objects] == [o.body for o in parsed.objects]
    assert [o.key for o in generated.objects] == [o.key for o in parsed.objects]


def invalid() -> list[dict[str, Any]]:
    """A wrong type, an unknown field, a missing name."""
    wrong_type, unknown, unnamed = (virtual_service((90, 10)) for _ in range(3))
    wrong_type["spec"]["http"][0]["route"][0]["weight"] = "ten"
    unknown["spec"]["htttp"] = []
    del unnamed["metadata"]["name"]
    return [wrong_type, unknown, unnamed]


def test_an_invalid_object_is_refused_with_the_same_findings() -> None:
    for obj in invalid():
        generated = plan_apply([Generated(SOURCE, (obj,))])
        parsed = plan_apply([as_text(obj)])
        assert not generated.ok
        assert findings(generated) == findings(parsed)
        assert all(d.file == SOURCE and d.line == 1 for d in generated.errors)


def test_the_change_is_judged_against_the_state_as_a_file_is() -> None:
    """A duplicate in one apply, and the whole-state rules, apply to generated objects."""
    obj = virtual_service((50, 50))
    twice = plan_apply([Generated(SOURCE, (obj, obj))])
    assert [d.code for d in twice.errors] == [codes.DUPLICATE_OBJECT.code]


def test_the_plan_shares_nothing_with_the_callers_objects() -> None:
    obj = virtual_service((90, 10))
    plan = plan_apply([Generated(SOURCE, (obj,))])
    plan.objects[0].body["spec"]["hosts"].append("changed")
    assert obj["spec"]["hosts"] == ["myapp"]


def test_what_no_text_could_hold_is_refused() -> None:
    cyclic = virtual_service((90, 10))
    cyclic["spec"]["self"] = cyclic
    not_a_number = virtual_service((90, 10))
    not_a_number["spec"]["http"][0]["route"][0]["weight"] = math.nan
    surrogate = virtual_service((90, 10), host="my\ud800app")
    for obj in (cyclic, not_a_number, surrogate, {"kind": object()}):
        plan = plan_apply([Generated(SOURCE, (virtual_service((90, 10)), obj))])
        assert not plan.ok
        assert [(d.code, d.file) for d in plan.errors] == [(codes.PARSE.code, SOURCE)]
        assert "object #2" in plan.errors[0].message
    json.dumps(virtual_service((90, 10)))  # the builder's own objects are plain

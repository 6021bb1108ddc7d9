"""The metric condition language: the expr-lang forms Argo's docs and examples use
(``docs/features/analysis.md``: ``result[0] >= 0.95``, ``len(result) == 0``,
``isNaN(result)``, ``all(result, {# > 0.9})``; Argo's ``utils/evaluate`` functions
``isNaN``, ``isInf``, ``isNil``, ``asInt``, ``asFloat``, ``default``) evaluate as expr
does, and anything else is refused when parsed, never run (no ``eval``)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from meshpilot.api.argo_expressions import ExpressionError, parse


@pytest.mark.parametrize(("text", "result", "expected"), [
    ("result[0] >= 0.95", [0.97], True),
    ("result[0] >= 0.95", [0.5], False),
    ("len(result) == 0", [], True),
    ("isNaN(result)", math.nan, True),
    ("isNaN(result[0]) || result[0] < 1", [2.0], False),
    ("all(result, {# > 0.9})", [0.95, 0.99], True),
    ("all(result, {# > 0.9})", [0.95, 0.5], False),
    ("any(result, {# < 0.1})", [0.95, 0.05], True),
    ("none(result, {# < 0})", [1, 2], True),
    ("len(filter(result, {# > 1})) == 2", [0, 2, 3], True),
    ("count(result, {# > 1}) == 1", [0, 2], True),
    ("map(result, {# * 2})[1] == 4", [1, 2], True),
    ("result.ok == true && result.errors < 3", {"ok": True, "errors": 1}, True),
    ('result["error-rate"] <= 0.01', {"error-rate": 0.02}, False),
    ("!(result.ok) and not false", {"ok": False}, True),
    ("result == 'a && b'", "a && b", True),
    ("result.missing == nil", {}, True),
    ("isNil(result)", None, True),
    ("default(result, 0) < 1", None, True),
    ("asInt(result) == 3 && asFloat('2.5') > 2", "3", True),
    ("isInf(result)", math.inf, True),
    ("result[-1] > 1", [0, 2], True),
    ("(result[0] + result[1]) / 2 >= 0.95 && result[0] % 2 == 1", [2, 0], False),
    ("result in [1, 2]", 2, True),
    ("result not in [1, 2]", 2, False),
])
def test_supported_forms_evaluate_as_expr(text: str, result: Any, expected: bool) -> None:
    assert parse(text).evaluate(result) is expected


@pytest.mark.parametrize(("text", "names"), [
    ("result > 1 ? true : false", "'?'"),
    ("result matches '^ok'", "parse"),
    ("__import__('os').system('true')", "__import__"),
    ("(lambda: True)()", "lambda"),
    ("[x for x in result]", "ListComp"),
    ("result[0:2] == result", "slice"),
    ("other > 1", "'other'"),
    ("all(result, # > 1)", "closure"),
    ("result | len() > 0", "'|'"),
    ("'unclosed", "not closed"),
    ("1 if result else 0", "IfExp"),
])
def test_other_forms_are_refused_when_parsed(text: str, names: str) -> None:
    with pytest.raises(ExpressionError, match=names.replace("(", r"\(").replace("?", r"\?")
                       .replace("|", r"\|")):
        parse(text)


def test_a_condition_reaches_no_python_attribute() -> None:
    # result.x on a non-map is refused at evaluation; attributes are map keys only
    with pytest.raises(ExpressionError, match="cannot index"):
        parse("result.__class__ == nil").evaluate(1.0)
    assert parse("result.__class__ == nil").evaluate({}) is True


@pytest.mark.parametrize(("text", "result"), [
    ("result[0] > 1", []),                # out of range
    ("result > 1", "abc"),                # a type mismatch
    ("result[0]", [1.0]),                 # not a bool
    ("result && true", 1),                # a non-bool logical operand
])
def test_evaluation_errors_are_expression_errors(text: str, result: Any) -> None:
    with pytest.raises(ExpressionError):
        parse(text).evaluate(result)


def test_an_overlong_condition_is_refused() -> None:
    with pytest.raises(ExpressionError, match="longer"):
        parse("result > 1 && " * 300 + "true")

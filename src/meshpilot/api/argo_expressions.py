"""The part of Argo Rollouts' metric condition language (expr-lang, as
``utils/evaluate/evaluate.go`` runs it) that meshpilot evaluates, without ``eval``.

A condition is parsed once into a small tree of allowed forms and interpreted over plain
data (the measurement's ``result``: a number, a list, a mapping, a string). Nothing in a
condition can reach a Python object's attributes, import, loop without bound or call
anything but the functions listed here, because only these forms are interpreted:

- literals: numbers, quoted strings, ``true``, ``false``, ``nil``; ``[a, b]`` lists;
- ``result``, ``result[0]``, ``result["key"]``, ``result.key``;
- arithmetic ``+ - * / % **``, unary ``-``; comparisons ``== != < <= > >=``, ``in``,
  ``not in``; logic ``&&``/``and``, ``||``/``or``, ``!``/``not``;
- functions ``len``, ``abs``, ``min``, ``max``, ``sum``, ``isNaN``, ``isInf``, ``isNil``,
  ``asInt``, ``asFloat``, ``default(result, value)``; and the predicates
  ``all``, ``any``, ``none``, ``filter``, ``map``, ``count`` over a list with a closure
  in braces where ``#`` is the element: ``all(result, {# > 0.9})``.

Anything else (the ternary ``?:``, ``matches``, ``|`` pipes, ``let``, ...) is refused when
the template is applied, naming the form, so a condition never fails only at run time
for being unsupported.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

MAX_LENGTH = 2000
"""Longer conditions are refused (the parser's recursion stays bounded)."""
_ELEMENT = "__element__"
_CONSTANTS = MappingProxyType({"true": True, "false": False, "nil": None})
_PREDICATES = ("all", "any", "none", "filter", "map", "count")


class ExpressionError(ValueError):
    """A condition that is not in the supported language, or fails on its data."""


def _translate(text: str) -> str:
    """expr-lang spelling to the Python tokens the parser reads: ``&&``, ``||``, ``!``
    and ``#`` outside string literals. Quotes are left as written."""
    out: list[str] = []
    i, quote = 0, ""
    while i < len(text):
        ch, nxt = text[i], text[i + 1:i + 2]
        if quote:
            out.append(ch)
            if ch == "\\" and nxt:
                out.append(nxt)
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = "'" if ch == "`" else ch
            out.append(quote)
        elif ch + nxt in ("&&", "||"):
            out.append(" and " if ch == "&" else " or ")
            i += 1
        elif ch == "!" and nxt != "=":
            out.append(" not ")
        elif ch == "#":
            out.append(_ELEMENT)
        elif ch in "?|^;":
            raise ExpressionError(
                f"{ch!r} is not supported (the ternary, pipes, ^ and ; are not; see the "
                "README's Argo Rollouts section for the supported forms)")
        else:
            out.append(ch)
        i += 1
    if quote:
        raise ExpressionError("a string literal is not closed")
    return "".join(out)


_BINARY: Mapping[type[ast.operator], Callable[[Any, Any], Any]] = MappingProxyType({
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Mod: operator.mod, ast.Pow: operator.pow,
})
_COMPARE: Mapping[type[ast.cmpop], Callable[[Any, Any], bool]] = MappingProxyType({
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
})


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(f"{what} needs a number, got {type(value).__name__}")
    return float(value)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ExpressionError(f"asFloat: {value!r} is not a number") from None


def _as_int(value: Any) -> int:
    try:
        return int(float(value)) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise ExpressionError(f"asInt: {value!r} is not a number") from None


def _length(value: Any) -> int:
    if isinstance(value, list | str | dict):
        return len(value)
    raise ExpressionError(f"len needs a list, map or string, got {type(value).__name__}")


_FUNCTIONS: Mapping[str, Callable[..., Any]] = MappingProxyType({
    "len": _length,
    "abs": lambda v: abs(_number(v, "abs")),
    "min": lambda *v: min(v[0] if len(v) == 1 else v),
    "max": lambda *v: max(v[0] if len(v) == 1 else v),
    "sum": lambda v: sum(_number(x, "sum") for x in v),
    "isNaN": lambda v: math.isnan(_number(v, "isNaN")),
    "isInf": lambda v, sign=0: math.isinf(_number(v, "isInf")) and (
        sign == 0 or (sign > 0) == (v > 0)),
    "asInt": _as_int,
    "asFloat": _as_float,
})
_RESULT_FUNCTIONS = ("isNil", "default")
"""Functions of the result itself, as Argo binds them."""


@dataclass(frozen=True)
class Condition:
    """A parsed condition; ``evaluate(result)`` gives its truth for one measurement."""

    text: str
    tree: ast.expr

    def evaluate(self, result: Any) -> bool:
        value = _Interpreter(result).run(self.tree)
        if not isinstance(value, bool):
            raise ExpressionError(f"the condition {self.text!r} gives "
                                  f"{type(value).__name__}, not a bool")
        return value


def parse(text: str) -> Condition:
    """The condition ``text``; raises ExpressionError naming what is not supported."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the condition is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(_translate(text).strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"does not parse: {exc.msg}") from None
    _check(tree, in_closure=False)
    return Condition(text, tree)


def _check_name(node: ast.Name, in_closure: bool) -> None:
    allowed = ("result", *_CONSTANTS, *((_ELEMENT,) if in_closure else ()))
    if node.id not in allowed:
        shown = "#" if node.id == _ELEMENT else node.id
        raise ExpressionError(f"unknown name {shown!r} (result, true, false, nil"
                              f"{' and #' if in_closure else ''} are known)")


def _check_constant(node: ast.Constant, in_closure: bool) -> None:
    if isinstance(node.value, bool) or not isinstance(node.value, int | float | str):
        raise ExpressionError(f"literal {node.value!r} is not supported")


def _check_operator(node: ast.AST, in_closure: bool) -> None:
    if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY:
        raise ExpressionError(f"operator {type(node.op).__name__} is not supported")
    if isinstance(node, ast.Compare) and any(type(o) not in _COMPARE for o in node.ops):
        raise ExpressionError("only ==, !=, <, <=, >, >=, in and not in compare")
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not | ast.USub | ast.UAdd):
        raise ExpressionError(f"operator {type(node.op).__name__} is not supported")
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        raise ExpressionError("slices are not supported; index one element")
    for child in ast.iter_child_nodes(node):
        _check(child, in_closure)


_CHECKS: Mapping[type[ast.AST], Callable[[Any, bool], None]] = MappingProxyType({
    ast.Name: _check_name, ast.Constant: _check_constant,
    **{t: _check_operator for t in (ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare,
                                   ast.List, ast.Subscript, ast.Attribute)},
})


def _check(node: ast.AST, in_closure: bool) -> None:
    """Refuse every form the interpreter does not handle, before anything runs."""
    if isinstance(node, ast.Call):
        _check_call(node, in_closure)
        return
    if isinstance(node, ast.Load | ast.operator | ast.unaryop | ast.cmpop | ast.boolop):
        return
    check = _CHECKS.get(type(node))
    if check is None:
        raise ExpressionError(f"{type(node).__name__} is not supported in a condition")
    check(node, in_closure)


def _check_call(node: ast.Call, in_closure: bool) -> None:
    name = node.func.id if isinstance(node.func, ast.Name) else ""
    known = (*_FUNCTIONS, *_RESULT_FUNCTIONS, *_PREDICATES)
    if name not in known or node.keywords:
        raise ExpressionError(f"function {name or ast.unparse(node.func)!r} is not "
                              f"supported (supported: {', '.join(known)})")
    if name in _PREDICATES:
        closure = node.args[1] if len(node.args) == 2 else None
        if not (isinstance(closure, ast.Set) and len(closure.elts) == 1):
            raise ExpressionError(f"{name} takes a list and a closure: {name}(result, "
                                  "{# > 0.9})")
        _check(node.args[0], in_closure)
        _check(closure.elts[0], in_closure=True)
        return
    for arg in node.args:
        _check(arg, in_closure)


class _Interpreter:
    """Interprets a checked tree over plain data."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def run(self, node: ast.expr, element: Any = None) -> Any:
        try:
            return self._eval(node, element)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ArithmeticError, IndexError, KeyError) as exc:
            raise ExpressionError(f"{ast.unparse(node)!r}: {exc}") from None

    def _eval(self, node: ast.expr, element: Any) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return element if node.id == _ELEMENT else (
                self.result if node.id == "result" else _CONSTANTS[node.id])
        handler = {
            ast.List: self._list, ast.BoolOp: self._bool, ast.UnaryOp: self._unary,
            ast.BinOp: self._binary, ast.Compare: self._compare, ast.Subscript: self._item,
            ast.Attribute: self._attribute, ast.Call: self._call,
        }.get(type(node))
        if handler is None:
            raise ExpressionError(f"{type(node).__name__} is not supported")
        return handler(node, element)

    def _list(self, node: ast.List, element: Any) -> list[Any]:
        return [self._eval(e, element) for e in node.elts]

    def _bool(self, node: ast.BoolOp, element: Any) -> bool:
        want = isinstance(node.op, ast.Or)
        for value in node.values:
            if _truth(self._eval(value, element)) == want:
                return want
        return not want

    def _unary(self, node: ast.UnaryOp, element: Any) -> Any:
        value = self._eval(node.operand, element)
        if isinstance(node.op, ast.Not):
            return not _truth(value)
        _number(value, "a sign")
        return -value if isinstance(node.op, ast.USub) else value

    def _binary(self, node: ast.BinOp, element: Any) -> Any:
        return _BINARY[type(node.op)](self._eval(node.left, element),
                                      self._eval(node.right, element))

    def _item(self, node: ast.Subscript, element: Any) -> Any:
        return _index(self._eval(node.value, element), self._eval(node.slice, element))

    def _attribute(self, node: ast.Attribute, element: Any) -> Any:
        return _index(self._eval(node.value, element), node.attr)

    def _compare(self, node: ast.Compare, element: Any) -> bool:
        left = self._eval(node.left, element)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._eval(right_node, element)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _call(self, node: ast.Call, element: Any) -> Any:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        if name in _PREDICATES:
            items = self._eval(node.args[0], element)
            if not isinstance(items, list):
                raise ExpressionError(f"{name} needs a list, got {type(items).__name__}")
            closure = node.args[1]
            assert isinstance(closure, ast.Set)
            return _predicate(name, items, lambda x: self._eval(closure.elts[0], x))
        args = [self._eval(a, element) for a in node.args]
        if name == "isNil":
            return self.result is None
        if name == "default":
            return args[1] if args and args[0] is None else (args[0] if args else None)
        return _FUNCTIONS[name](*args)


def _predicate(name: str, items: list[Any], closure: Callable[[Any], Any]) -> Any:
    if name == "map":
        return [closure(x) for x in items]
    truths = [_truth(closure(x)) for x in items]
    if name == "filter":
        return [x for x, t in zip(items, truths, strict=True) if t]
    if name == "count":
        return sum(truths)
    return {"all": all(truths), "any": any(truths), "none": not any(truths)}[name]


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"a logical operand is {type(value).__name__}, not a bool")
    return value


def _index(container: Any, key: Any) -> Any:
    """``a[i]`` on a list (negative from the end, as expr), ``a[k]``/``a.k`` on a map."""
    if isinstance(container, list):
        if isinstance(key, bool) or not isinstance(key, int):
            raise ExpressionError(f"a list is indexed by an integer, not {key!r}")
        if not -len(container) <= key < len(container):
            raise ExpressionError(f"index {key} out of range (the list has "
                                  f"{len(container)} element(s))")
        return container[key]
    if isinstance(container, dict):
        return container.get(key)  # expr gives nil for a missing key
    raise ExpressionError(f"cannot index {type(container).__name__} with {key!r}")

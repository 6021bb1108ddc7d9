"""A request body as JSON, refused with its position when it is not text we can keep.

Python's ``json`` module is lenient where the control plane cannot be: it decodes
bytes with ``surrogatepass``, turns an escaped half of a UTF-16 surrogate pair
(``"\\ud800"``) into a string that cannot be encoded again (so the response, or the
store, fails later with a 500), and recurses until Python's recursion limit. Here the
body must be UTF-8, nested at most :data:`~meshpilot.api.yaml_bounds.MAX_DEPTH` levels,
and hold whole characters only; each refusal names the line and column.
"""

from __future__ import annotations

import json
import re
from typing import Any

from meshpilot.api.yaml_bounds import MAX_DEPTH
from meshpilot.validation import codes


class BadBody(ValueError):
    """Why a body is refused; ``code`` is the diagnostic code when it has its own."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


_BRACKET_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]')
_U_ESCAPE = re.compile(r"(\\+)u([0-9a-fA-F]{4})")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _too_deep_at(text: str) -> int:
    """Offset of the first bracket that opens level MAX_DEPTH + 1 (strings skipped)."""
    depth = 0
    for match in _BRACKET_OR_STRING.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif token in "]}":
            depth -= 1
    return 0


def _lone_surrogate_at(text: str) -> int:
    """Offset of the first ``\\uXXXX`` escape that is half a surrogate pair alone."""
    high = -1  # offset of a high half still waiting for its low half
    high_end = -1
    for match in _U_ESCAPE.finditer(text):
        if len(match.group(1)) % 2 == 0:
            continue  # an escaped backslash followed by a plain 'u'
        start, unit = match.end(1) - 1, int(match.group(2), 16)
        if high >= 0:
            if start == high_end and 0xDC00 <= unit <= 0xDFFF:
                high = -1
                continue
            return high
        if 0xD800 <= unit <= 0xDBFF:
            high, high_end = start, match.end()
        elif 0xDC00 <= unit <= 0xDFFF:
            return start
    return max(high, 0)


def _check_shape(value: Any) -> str:
    """"depth" or "surrogate" for the first limit ``value`` breaks, else ""."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "surrogate"
            continue
        children = (list(item.keys()) + list(item.values()) if isinstance(item, dict)
                    else item if isinstance(item, list) else ())
        if children and depth > MAX_DEPTH:
            return "depth"
        stack.extend((child, depth + 1) for child in children)
    return ""


def parse_json(raw: bytes, what: str = "request body") -> Any:
    """``raw`` as JSON (empty: None), or :class:`BadBody` saying where and why."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"{what} is not UTF-8: byte {exc.start} ({raw[exc.start]:#04x}) "
                      f"{exc.reason}", code=codes.PARSE.code) from None
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadBody(f"{what} is not JSON: {exc.msg} at line {exc.lineno}, column "
                      f"{exc.colno}", code=codes.PARSE.code) from None
    except RecursionError:
        value, problem = None, "depth"
    else:
        problem = _check_shape(value)
    if problem == "depth":
        raise BadBody(f"{what} is nested more than {MAX_DEPTH} levels deep at "
                      f"{_where(text, _too_deep_at(text))}; no manifest needs that many",
                      code=codes.TOO_DEEP.code)
    if problem == "surrogate":
        at = _lone_surrogate_at(text)
        raise BadBody(f"{what} is not JSON we can keep: at {_where(text, at)}, "
                      f"{text[at:at + 6]} is half of a UTF-16 surrogate pair without its "
                      "other half, which is no character: write the character itself, or "
                      "both halves (\\ud83d\\ude00 is one emoji)", code=codes.PARSE.code)
    return value

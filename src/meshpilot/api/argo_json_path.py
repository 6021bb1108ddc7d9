"""The part of Kubernetes' JSONPath (as Argo's web metric provider reads ``jsonPath``)
that meshpilot follows: ``{$}``, ``{$.a.b}``, ``{$.a[0].b}``, ``{$.a[-1]}``,
``{$["key with space"]}``.

Filters, wildcards, unions and ranges are refused when the template is applied, so a
path never fails for being unsupported only when a measurement is taken.
"""

from __future__ import annotations

import json
import re
from typing import Any

_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_-]*)|\[(-?\d+)\]|\[(?:"([^"]*)"|'([^']*)')\]""")


class JsonPathError(ValueError):
    """A path outside the supported forms, or one that finds nothing in a document."""


def parse(text: str) -> tuple[str | int, ...]:
    """The steps of ``text`` (keys and list indexes)."""
    inner = text.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    if not inner.startswith("$"):
        raise JsonPathError(f"{text!r} must start with $ (e.g. {{$.data.ok}})")
    steps: list[str | int] = []
    pos = 1
    while pos < len(inner):
        match = _STEP.match(inner, pos)
        if match is None:
            raise JsonPathError(
                f"{text!r}: {inner[pos:]!r} is not supported (supported: .key, [index], "
                "[\"key\"]; filters, wildcards, unions and ranges are not)")
        key, index, dq, sq = match.groups()
        steps.append(int(index) if index is not None else (key or dq or sq or ""))
        pos = match.end()
    return tuple(steps)


def find(steps: tuple[str | int, ...], document: Any) -> Any:
    """The value at ``steps`` in ``document``; raises JsonPathError when absent."""
    value = document
    for step in steps:
        if (isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(
                value)) or (isinstance(step, str) and isinstance(value, dict) and step in value):
            value = value[step]
        else:
            raise JsonPathError(f"{step!r} not found in {json.dumps(value)[:200]}")
    return value

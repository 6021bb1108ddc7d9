"""Reading a body that may not have passed its model: a rule that runs on what was
written sees a wrongly typed part as empty, and the model reports the type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []

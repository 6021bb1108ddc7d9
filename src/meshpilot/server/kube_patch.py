"""PATCH bodies of the three kinds kubectl sends, applied to the stored object.

- ``application/merge-patch+json`` (RFC 7386): what kubectl sends for kinds it has no Go
  type for (Istio's, Flagger's); applied with the json-merge-patch library.
- ``application/json-patch+json`` (RFC 6902, ``kubectl patch --type=json``): the jsonpatch
  library.
- ``application/strategic-merge-patch+json``: what kubectl sends for Kubernetes' own
  kinds (Deployment, Service, ...). No Python library does it, so this module does the
  part of it the kinds meshpilot stores use: a merge patch in which a list of objects
  with a merge key (containers by ``name``, container ports by ``containerPort``, ...)
  is merged element by element, plus the ``$patch``, ``$setElementOrder/``,
  ``$retainKeys`` and ``$deleteFromPrimitiveList/`` directives kubectl's three-way
  patches contain. A list without a merge key is replaced whole, as in a merge patch.

The result is a new object; the stored one is never modified in place.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import json_merge_patch
import jsonpatch

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
CONTENT_TYPES = (MERGE_PATCH, JSON_PATCH, STRATEGIC)

# Field name → the keys that identify an element of that list, the first one an element
# has wins (``ports`` are keyed by containerPort in a container, by port in a Service).
MERGE_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "ports": ("containerPort", "port"), "env": ("name",), "volumes": ("name",),
    "volumeMounts": ("mountPath",), "imagePullSecrets": ("name",), "secrets": ("name",),
    "hostAliases": ("ip",), "conditions": ("type",),
    "topologySpreadConstraints": ("topologyKey",),
})
_DIRECTIVE = "$patch"
_ORDER = "$setElementOrder/"
_RETAIN = "$retainKeys"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList/"


class PatchError(ValueError):
    """A patch that cannot be applied; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def apply_patch(current: dict[str, Any], body: bytes, content_type: str) -> dict[str, Any]:
    """``current`` with the patch in ``body`` applied, per ``content_type``."""
    media = content_type.split(";")[0].strip()
    if media not in CONTENT_TYPES:
        raise PatchError(f"PATCH takes {', '.join(CONTENT_TYPES)}; not {media or 'none'}",
                         status=415)
    try:
        patch = json.loads(body)
    except ValueError as exc:
        raise PatchError(f"the patch is not JSON: {exc}") from None
    if media == JSON_PATCH:
        try:
            result = jsonpatch.apply_patch(current, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException,
                TypeError, KeyError) as exc:
            raise PatchError(f"the JSON patch does not apply: {exc}") from None
    elif not isinstance(patch, dict):
        raise PatchError("a merge patch is one JSON object")
    elif media == MERGE_PATCH:
        result = json_merge_patch.merge(copy.deepcopy(current), patch)
    else:
        result = strategic_merge(current, patch)
    if not isinstance(result, dict):
        raise PatchError("the patch does not leave an object")
    return result


def strategic_merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` merged into a copy of ``current`` by the strategic merge rules above."""
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != _DIRECTIVE}
    if directive not in (None, "merge"):
        raise PatchError(f"unsupported $patch {directive!r} on an object")
    result = copy.deepcopy(current)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            if value.get(_DIRECTIVE) == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result[key], value)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        else:
            result[key] = _without_directives(value)
    _apply_list_directives(result, patch)
    if isinstance(patch.get(_RETAIN), list):
        keep = set(patch[_RETAIN])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _without_directives(value: Any) -> Any:
    """A patch value that becomes new content, directives dropped."""
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value
                if not (isinstance(v, dict) and v.get(_DIRECTIVE) == "delete")]
    return copy.deepcopy(value)


def _key_of(field: str, element: Any) -> tuple[str, Any] | None:
    """The (merge key, value) identifying ``element`` of list ``field``, if it has one."""
    if not isinstance(element, dict):
        return None
    for name in MERGE_KEYS.get(field, ()):
        if name in element:
            return name, element[name]
    return None


def _merge_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    """A keyed list merged element by element; any other list replaced by the patch's."""
    if not patch or _key_of(field, patch[0]) is None:
        return [] if not patch else _without_directives(patch)
    result = copy.deepcopy(current)
    for element in patch:
        key = _key_of(field, element)
        if key is None:
            raise PatchError(f"an element of {field} has no merge key "
                             f"({' or '.join(MERGE_KEYS[field])})")
        at = next((i for i, e in enumerate(result) if _key_of(field, e) == key), None)
        if element.get(_DIRECTIVE) == "delete":
            if at is not None:
                del result[at]
        elif at is None:
            result.append(_without_directives(element))
        else:
            result[at] = strategic_merge(result[at], element)
    return result


def _apply_list_directives(result: dict[str, Any], patch: dict[str, Any]) -> None:
    """``$setElementOrder/F`` puts F's elements in the order given (others after them);
    ``$deleteFromPrimitiveList/F`` removes the values given from a list of scalars."""
    for key, value in patch.items():
        if key.startswith(_ORDER) and isinstance(value, list):
            field = key[len(_ORDER):]
            if isinstance(result.get(field), list):
                result[field] = _ordered(field, result[field], value)
        elif key.startswith(_DELETE_PRIMITIVES) and isinstance(value, list):
            field = key[len(_DELETE_PRIMITIVES):]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]


def _ordered(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    def rank(element: Any) -> int:
        key = _key_of(field, element)
        wanted = key[1] if key else element
        for i, entry in enumerate(order):
            if (isinstance(entry, dict) and wanted in entry.values()) or entry == wanted:
                return i
        return len(order)

    return sorted(items, key=rank)

"""Sets of field paths, as Kubernetes' server-side apply tracks who set what.

A path is a tuple of steps spelt as in ``metadata.managedFields[].fieldsV1``: ``f:spec``
for a map key, ``k:{"name":"app"}`` for the element of an associative list (a list of
objects with a merge key, the same lists :mod:`kube_patch` merges by key). Maps are
followed down to their leaves; any other list is atomic (one leaf, owned whole), as in
a CustomResourceDefinition's schema without list annotations, which is how Istio's and
Flagger's lists behave under server-side apply.

Everything here is pure and works on plain JSON values; nothing is modified in place.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from meshpilot.server.kube_patch import MERGE_KEYS

Path = tuple[str, ...]
FieldSet = frozenset[Path]

_SELF = "."  # fieldsV1's mark for "this node itself", beside its children


def _list_key(field: str, element: Any) -> str | None:
    """``k:{...}`` of an element of associative list ``field``, or None if the list is
    atomic or the element has no merge key."""
    if not isinstance(element, dict):
        return None
    for name in MERGE_KEYS.get(field, ()):
        if name in element:
            return "k:" + json.dumps({name: element[name]}, separators=(",", ":"))
    return None


def _associative(field: str, items: list[Any]) -> bool:
    return bool(items) and all(_list_key(field, e) is not None for e in items)


def leaves(value: Any, prefix: Path = (), field: str = "") -> set[Path]:
    """The paths ``value`` sets below ``prefix``: its leaves, and each element of an
    associative list (so that owning an element is owning its being there)."""
    if isinstance(value, dict):
        if not value:
            return {prefix}
        found: set[Path] = set()
        for key, item in value.items():
            found |= leaves(item, (*prefix, f"f:{key}"), key)
        return found
    if isinstance(value, list) and _associative(field, value):
        found = set()
        for element in value:
            step = (*prefix, str(_list_key(field, element)))
            found |= {step} | leaves(element, step, "")
        return found
    return {prefix}


def object_fields(body: dict[str, Any]) -> FieldSet:
    """What a client sets in ``body``: every leaf but apiVersion, kind, status and the
    metadata the server owns or that names the object (only labels and annotations)."""
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    owned = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "status",
                                                       "metadata")}
    kept = {k: meta[k] for k in ("labels", "annotations") if meta.get(k)}
    if kept:
        owned["metadata"] = kept
    return frozenset(leaves(owned))


def _child(value: Any, step: str) -> tuple[bool, Any]:
    """(found, the child of ``value`` at ``step``)."""
    if step.startswith("f:") and isinstance(value, dict):
        name = step[2:]
        return name in value, value.get(name)
    if step.startswith("k:") and isinstance(value, list):
        wanted = json.loads(step[2:])
        for element in value:
            if isinstance(element, dict) and all(element.get(k) == v for k, v in wanted.items()):
                return True, element
    return False, None


def value_at(body: Any, path: Path) -> tuple[bool, Any]:
    """(whether ``body`` has ``path``, its value there)."""
    value = body
    for step in path:
        found, value = _child(value, step)
        if not found:
            return False, None
    return True, value


def without(body: dict[str, Any], path: Path) -> dict[str, Any]:
    """A copy of ``body`` with ``path`` removed, and the maps that removing it left
    empty removed too (nobody set them as such)."""
    result = copy.deepcopy(body)
    _remove(result, path)
    return result


def _remove(node: Any, path: Path) -> bool:
    """Remove ``path`` under ``node``; whether ``node`` is now an empty map or list."""
    if not path:
        return False
    step, rest = path[0], path[1:]
    found, child = _child(node, step)
    if not found:
        return False
    if not rest or _remove(child, rest):
        if isinstance(node, dict):
            node.pop(step[2:], None)
        else:
            node.remove(child)
    return isinstance(node, dict | list) and not node


def merged(live: Any, applied: Any, field: str = "") -> Any:
    """``applied`` laid over ``live``: maps merged key by key, associative lists element
    by element (live elements the applied list lacks stay), anything else replaced."""
    if isinstance(live, dict) and isinstance(applied, dict):
        result = copy.deepcopy(live)
        for key, value in applied.items():
            result[key] = merged(live.get(key), value, key)
        return result
    if (isinstance(live, list) and isinstance(applied, list)
            and _associative(field, applied) and _associative(field, live)):
        result_list = copy.deepcopy(live)
        for element in applied:
            key = _list_key(field, element)
            at = next((i for i, e in enumerate(result_list) if _list_key(field, e) == key),
                      None)
            if at is None:
                result_list.append(copy.deepcopy(element))
            else:
                result_list[at] = merged(result_list[at], element)
        return result_list
    return copy.deepcopy(applied)


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """The nested ``fieldsV1`` form of a set of paths: a path that is also the parent
    of another carries ``.``."""
    tree: dict[str, Any] = {}
    nodes = []
    for path in sorted(paths):
        node = tree
        for step in path:
            node = node.setdefault(step, {})
        nodes.append(node)
    for node in nodes:
        if node:
            node.setdefault(_SELF, {})
    return tree


def from_fields_v1(tree: Any, prefix: Path = ()) -> FieldSet:
    """The set of paths a ``fieldsV1`` tree names (each leaf, and each ``.``-marked
    node)."""
    if not isinstance(tree, dict):
        return frozenset()
    found: set[Path] = set()
    if not tree and prefix:
        found.add(prefix)
    for step, child in tree.items():
        if step == _SELF:
            found.add(prefix)
        else:
            found |= from_fields_v1(child, (*prefix, step))
    return frozenset(found)


def shown(path: Path) -> str:
    """A path as the API server prints it in a conflict: ``.spec.containers[name="app"]
    .image``."""
    out = []
    for step in path:
        if step.startswith("k:"):
            out.append("[" + ",".join(f"{k}={json.dumps(v)}"
                                      for k, v in json.loads(step[2:]).items()) + "]")
        else:
            out.append("." + step[2:])
    return "".join(out)

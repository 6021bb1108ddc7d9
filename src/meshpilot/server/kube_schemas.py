"""OpenAPI v3 schemas of the served kinds, generated from meshpilot's own models.

``kubectl explain virtualservice.spec.http.route`` walks these (``properties``, ``items``,
``allOf: [{$ref}]`` as the API server writes a described reference), so they come from
the pydantic models that validate every write: what explain shows is what is accepted.
Descriptions are a field's ``Field(description=...)`` or the docstring under its
attribute, else the docstring of the model it holds. A list that strategic merge patch
merges by key (containers by ``name``, ...) carries Kubernetes' patch extensions, which
kubectl reads to compute ``kubectl apply``'s patch for Deployments and Services.

Pydantic writes JSON Schema; OpenAPI 3.0 has no ``type: null``, so an optional field
(``anyOf [X, null]``) becomes X, as Kubernetes' own schemas show optional fields.
"""

from __future__ import annotations

import ast
import inspect
import sys
import typing
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from meshpilot.api.kinds import KindInfo
from meshpilot.server.kube_patch import MERGE_KEYS

_DROP = ("title", "default")
_TOP: Mapping[str, str] = MappingProxyType({
    "apiVersion": "APIVersion defines the versioned schema of this representation of an "
                  "object.",
    "kind": "Kind is a string value representing the REST resource this object represents.",
    "metadata": "Standard object's metadata: name, namespace, labels, annotations and what "
                "the server sets.",
    "status": "Written by meshpilot (a rollout's phase, a Deployment's pods); ignored on "
              "apply.",
})


def schema_name(info: KindInfo, version: str) -> str:
    """The kind's schema's name in its group-version document."""
    return f"{info.group or 'core'}.{version}.{info.kind}"


def kind_schemas(info: KindInfo, version: str,
                 parsed: ModuleDocs | None = None) -> dict[str, dict[str, Any]]:
    """The kind's schema and every schema it refers to, by name; ``parsed`` keeps the
    models' modules' attribute docstrings between calls."""
    root = schema_name(info, version)
    prefix = f"{root}."
    raw = info.model.model_json_schema(by_alias=True,
                                       ref_template=prefix + "{model}")
    docs = _field_docs(info.model, {} if parsed is None else parsed)
    out: dict[str, dict[str, Any]] = {}
    for name, schema in raw.pop("$defs", {}).items():
        out[prefix + name] = _converted(schema, docs.get(name, {}))
    top = _converted(raw, docs.get(info.model.__name__, {}))
    for field, text in _TOP.items():
        if field in top.get("properties", {}):
            top["properties"][field].setdefault("description", text)
    top["x-kubernetes-group-version-kind"] = [
        {"group": info.group, "version": version, "kind": info.kind}]
    out[root] = top
    return out


def _converted(schema: dict[str, Any], docs: dict[str, str]) -> dict[str, Any]:
    """A model's schema in OpenAPI 3.0 form, its properties described by ``docs``."""
    out = _node(schema)
    for name, prop in out.get("properties", {}).items():
        if name in docs:
            prop.setdefault("description", docs[name])
        _merge_extensions(name, prop)
    return out


_SCHEMA_KEYS = frozenset({"type", "allOf", "$ref", "anyOf", "oneOf", "enum", "properties"})
_VERBATIM = frozenset({"required", "enum", "examples", "discriminator"})


def _node(schema: Any) -> Any:
    """One JSON Schema node (and what it holds) in OpenAPI 3.0 form."""
    if isinstance(schema, list):
        return [_node(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    single = _optional_of(schema)
    if single is not None:
        return _node(single)
    schema = _int_or_string(schema)
    out = {"$ref": "#/components/schemas/" + schema["$ref"]} if "$ref" in schema else {}
    for key, value in schema.items():
        if key in _DROP or key in ("$ref", "const") or (
                key == "additionalProperties" and value is False):
            continue
        out[key] = _child(key, value)
    if "$ref" in out and len(out) > 1:  # OpenAPI ignores a $ref's siblings
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if not out.keys() & _SCHEMA_KEYS:
        # any value (a field typed Any): what a CRD says with preserve-unknown-fields
        out.update({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    return out


def _child(key: str, value: Any) -> Any:
    if key in ("properties", "patternProperties") and isinstance(value, dict):
        return {name: _node(prop) for name, prop in value.items()}
    return value if key in _VERBATIM else _node(value)


def _options(schema: dict[str, Any]) -> list[Any] | None:
    options = schema.get("anyOf")
    return [o for o in options if o != {"type": "null"}] if isinstance(options, list) else None


def _optional_of(schema: dict[str, Any]) -> dict[str, Any] | None:
    """For ``anyOf [X, null]`` (an optional field), X with the node's other keys."""
    kept = _options(schema)
    if kept is None or len(kept) != 1:
        return None
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept[0]}


def _int_or_string(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf`` without ``null``, marked as Kubernetes' IntOrString when it is one."""
    kept = _options(schema)
    if kept is None:
        return schema
    out = {**schema, "anyOf": kept}
    if sorted(o.get("type", "") for o in kept) == ["integer", "string"]:
        out["x-kubernetes-int-or-string"] = True
    return out


def _merge_extensions(name: str, prop: dict[str, Any]) -> None:
    """Kubernetes' strategic-merge extensions on a list merged by key."""
    keys = MERGE_KEYS.get(name)
    if prop.get("type") == "array" and keys:
        prop["x-kubernetes-patch-strategy"] = "merge"
        prop["x-kubernetes-patch-merge-key"] = keys[0]


def _field_docs(model: type[BaseModel], parsed: ModuleDocs) -> dict[str, dict[str, str]]:
    """Model name → wire field name → description, for ``model`` and the models its
    fields hold."""
    found: dict[str, dict[str, str]] = {}
    for cls in _models(model, set()):
        attr_docs = _attribute_docstrings(cls, parsed)
        described: dict[str, str] = {}
        for attr, field in cls.model_fields.items():
            text = field.description or attr_docs.get(attr) or _held_doc(field.annotation)
            if text:
                described[field.alias or attr] = text
        found[cls.__name__] = described
    return found


def _models(model: type[BaseModel], seen: set[type]) -> Iterator[type[BaseModel]]:
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        for held in _held_models(field.annotation):
            yield from _models(held, seen)


def _held_models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _held_models(arg)


def _held_doc(annotation: Any) -> str:
    """The first paragraph of the docstring of the model a field holds (its own, not
    one inherited from a base class). Not for a list: explain shows the list's items'
    description under the field's already."""
    if typing.get_origin(annotation) is list:
        return ""
    for held in _held_models(annotation):
        doc = inspect.cleandoc(held.__dict__.get("__doc__") or "")
        return " ".join(doc.split("\n\n")[0].split())
    return ""


ModuleDocs = dict[str, dict[str, dict[str, str]]]
"""Module name → class name → attribute → its docstring: each module parsed once."""


def _attribute_docstrings(cls: type, parsed: ModuleDocs) -> dict[str, str]:
    """``name: T = ...`` followed by a string: that string, by attribute name (what
    pydantic's ``use_attribute_docstrings`` reads, without changing the models)."""
    module = cls.__module__
    if module not in parsed:
        parsed[module] = _module_docs(sys.modules.get(module))
    return parsed[module].get(cls.__qualname__, {})


def _module_docs(module: Any) -> dict[str, dict[str, str]]:
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return {}
    found: dict[str, dict[str, str]] = {}
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        docs = found.setdefault(cls.name, {})
        for node, after in zip(cls.body, cls.body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return found

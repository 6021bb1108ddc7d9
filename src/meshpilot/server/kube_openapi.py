"""The OpenAPI v3 documents kubectl downloads before it applies a file or explains a
field, and the one OpenAPI v2 (Swagger 2.0) document older clients and schema-driven
tools read instead.

kubectl refuses to apply without a schema for the objects' kinds (``failed to download
openapi``), and ``kubectl explain`` reads its fields and descriptions from there: each
kind's schema is generated from its model (:mod:`kube_schemas`). Each object's path
declares that its writes take ``fieldValidation``, so kubectl leaves checking fields to
the server, which meshpilot does on every write, all or nothing and with its own
diagnostics (MPxxxx codes, the valid alternatives).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from meshpilot.api.kinds import KINDS, KindInfo
from meshpilot.server.kube_schemas import ModuleDocs, kind_schemas


def _path(group: str, version: str) -> str:
    """The discovery path of a group-version, as the OpenAPI index names it."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _item_path(info: KindInfo, version: str) -> dict[str, Any]:
    """The object's path with its write operations. kubectl looks here for a PATCH of
    the kind that takes ``fieldValidation``: finding it, it leaves the checking of fields
    to the server (which meshpilot does on every write) instead of checking them itself
    against a schema."""
    # one object here, where a schema's extension is a list of them
    gvk = {"group": info.group, "version": version, "kind": info.kind}
    operation = {"x-kubernetes-group-version-kind": gvk,
                 "parameters": [{"name": "fieldValidation", "in": "query",
                                 "schema": {"type": "string"}}],
                 "responses": {"200": {"description": "OK"}}}
    return {"patch": operation, "put": operation}


def group_version_document(group: str, version: str,
                           parsed: ModuleDocs | None = None) -> dict[str, Any] | None:
    """``/openapi/v3/apis/{group}/{version}``: one schema and one object path per kind
    served there, or None when meshpilot serves nothing at that group-version."""
    kinds = [info for info in KINDS if info.group == group and version in info.versions]
    if not kinds:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "meshpilot", "version": f"{group or 'core'}/{version}"},
        "paths": {info.object_path("{namespace}", "{name}", version): _item_path(info, version)
                  for info in kinds},
        "components": {"schemas": {
            name: schema for info in kinds
            for name, schema in kind_schemas(info, version, parsed).items()}},
    }


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


V3_REF = "#/components/schemas/"
V2_REF = "#/definitions/"


def as_v2(node: Any) -> Any:
    """A v3 schema as Swagger 2.0 writes it: references under ``#/definitions/``; what
    2.0 cannot say (``nullable``, ``anyOf``/``oneOf``) said as its extension or left
    open (any value), never as a wrong type."""
    if isinstance(node, list):
        return [as_v2(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith(V3_REF):
            out[key] = V2_REF + value[len(V3_REF):]
        elif key == "nullable":
            out["x-nullable"] = value
        elif key not in ("anyOf", "oneOf"):
            out[key] = as_v2(value)
    return out


def _v2_operation(info: KindInfo, version: str) -> dict[str, Any]:
    gvk = {"group": info.group, "version": version, "kind": info.kind}
    return {"x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": "fieldValidation", "in": "query", "type": "string"}],
            "responses": {"200": {"description": "OK"}}}


class OpenAPIDocuments:
    """The index and the group-version documents, each built once: they follow from
    the models, which do not change while the process runs, and building them all (to
    hash them for the index) takes a noticeable fraction of a second."""

    def __init__(self) -> None:
        self._documents: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._index: dict[str, Any] | None = None
        self._v2: dict[str, Any] | None = None
        self._parsed: ModuleDocs = {}

    def document(self, group: str, version: str) -> dict[str, Any] | None:
        """:func:`group_version_document`, kept."""
        key = (group, version)
        if key not in self._documents:
            self._documents[key] = group_version_document(group, version, self._parsed)
        return self._documents[key]

    def index(self) -> dict[str, Any]:
        """``/openapi/v3``: every group-version's document, each URL carrying a hash of
        its content so kubectl's cache of it is invalidated when it changes."""
        if self._index is None:
            paths: dict[str, Any] = {}
            for info in KINDS:
                for version in info.versions:
                    path = _path(info.group, version)
                    document = self.document(info.group, version)
                    if path in paths or document is None:
                        continue
                    paths[path] = {
                        "serverRelativeURL": f"/openapi/v3/{path}?hash={_digest(document)}"}
            self._index = {"paths": paths}
        return self._index

    def swagger(self) -> dict[str, Any]:
        """``/openapi/v2``: every served kind's schema and object path in one Swagger 2.0
        document, from the same v3 documents (so both always describe the same fields)."""
        if self._v2 is None:
            definitions: dict[str, Any] = {}
            paths: dict[str, Any] = {}
            for info in KINDS:
                for version in info.versions:
                    document = self.document(info.group, version)
                    if document is None:
                        continue
                    for name, schema in document["components"]["schemas"].items():
                        definitions.setdefault(name, as_v2(schema))
                    operation = _v2_operation(info, version)
                    paths[info.object_path("{namespace}", "{name}", version)] = {
                        "patch": operation, "put": operation}
            self._v2 = {"swagger": "2.0",
                        "info": {"title": "meshpilot", "version": "v1"},
                        "paths": paths, "definitions": definitions}
        return self._v2

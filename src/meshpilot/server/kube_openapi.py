"""The OpenAPI v3 documents kubectl downloads before it applies a file.

kubectl refuses to apply without a schema for the objects' kinds (``failed to download
openapi``). What it would check there, meshpilot checks itself on every write, all or
nothing and with its own diagnostics (MPxxxx codes, the valid alternatives), so each
kind's schema here is an object that keeps unknown fields: kubectl passes the file on
and the control plane is the one judge of it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from meshpilot.api.kinds import KINDS, KindInfo


def _path(group: str, version: str) -> str:
    """The discovery path of a group-version, as the OpenAPI index names it."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema(info: KindInfo, version: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{info.kind}: checked by meshpilot's validation when written",
        "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-group-version-kind": [
            {"group": info.group, "version": version, "kind": info.kind}],
    }


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


def group_version_document(group: str, version: str) -> dict[str, Any] | None:
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
        "components": {"schemas": {f"{group or 'core'}.{version}.{info.kind}":
                                   _schema(info, version) for info in kinds}},
    }


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def index() -> dict[str, Any]:
    """``/openapi/v3``: every group-version's document, each URL carrying a hash of its
    content so kubectl's cache of it is invalidated when it changes."""
    paths: dict[str, Any] = {}
    for info in KINDS:
        for version in info.versions:
            path = _path(info.group, version)
            if path in paths:
                continue
            document = group_version_document(info.group, version)
            assert document is not None  # info itself is served there
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={_digest(document)}"}
    return {"paths": paths}

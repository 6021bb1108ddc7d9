"""The OpenAPI v3 documents generated from meshpilot's models (kube_openapi, kube_schemas).

They follow the shape the Kubernetes API server serves at /openapi/v3/apis/{group}/{version}
and that kubectl explain and kubectl apply read: components/schemas with the kind's
schema marked by x-kubernetes-group-version-kind, described references as
``allOf: [{$ref}]``, no JSON Schema ``null`` type (OpenAPI 3.0 has none), and the
strategic-merge extensions (x-kubernetes-patch-merge-key) on keyed lists of built-in
kinds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshpilot.api.kinds import KINDS
from meshpilot.server.kube_openapi import OpenAPIDocuments


@pytest.fixture(scope="module")
def documents() -> OpenAPIDocuments:
    return OpenAPIDocuments()


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def at(schemas: dict[str, Any], schema: dict[str, Any], *path: str) -> dict[str, Any]:
    """The schema of a field path, following refs and list items."""
    for name in path:
        node = schema["properties"][name]
        while True:
            if "items" in node:
                node = node["items"]
            elif "allOf" in node:
                node = node["allOf"][0]
            elif "$ref" in node:
                node = schemas[node["$ref"].rsplit("/", 1)[1]]
            else:
                break
        schema = node
    return schema


def test_every_served_kind_has_a_schema_whose_refs_resolve(documents: OpenAPIDocuments) -> None:
    index = documents.index()["paths"]
    for info in KINDS:
        for version in info.versions:
            path = f"apis/{info.group}/{version}" if info.group else f"api/{version}"
            assert index[path]["serverRelativeURL"].startswith(f"/openapi/v3/{path}?hash=")
            document = documents.document(info.group, version)
            assert document is not None
            schemas = document["components"]["schemas"]
            root = schemas[f"{info.group or 'core'}.{version}.{info.kind}"]
            assert root["x-kubernetes-group-version-kind"] == [
                {"group": info.group, "version": version, "kind": info.kind}]
            assert "metadata" in root["properties"]
            for ref in refs(document):
                assert ref.removeprefix("#/components/schemas/") in schemas, ref
            assert '"null"' not in json.dumps(document)


def test_explain_paths_reach_the_models_fields(documents: OpenAPIDocuments) -> None:
    document = documents.document("networking.istio.io", "v1")
    assert document is not None
    schemas = document["components"]["schemas"]
    vs = schemas["networking.istio.io.v1.VirtualService"]
    route = at(schemas, vs, "spec", "http", "route")
    assert set(route["properties"]) == {"destination", "weight", "headers"}
    assert route["required"] == ["destination"]
    assert "weighted destination" in route["description"]  # the model's docstring
    # an optional field is its type, not anyOf with null
    assert at(schemas, vs, "spec", "http", "route", "weight")["type"] == "integer"


def test_keyed_lists_of_built_in_kinds_carry_the_merge_key(documents: OpenAPIDocuments) -> None:
    document = documents.document("apps", "v1")
    assert document is not None
    schemas = document["components"]["schemas"]
    deployment = schemas["apps.v1.Deployment"]
    pod = at(schemas, deployment, "spec", "template", "spec")
    containers = pod["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    container = at(schemas, pod, "containers")
    assert container["properties"]["env"]["x-kubernetes-patch-merge-key"] == "name"
    assert container["properties"]["ports"]["x-kubernetes-patch-merge-key"] == "containerPort"


def test_documents_are_built_once(documents: OpenAPIDocuments) -> None:
    assert documents.document("apps", "v1") is documents.document("apps", "v1")
    assert documents.document("nothing.example", "v1") is None


def test_the_v2_document_describes_every_kind_with_resolving_refs(
        documents: OpenAPIDocuments) -> None:
    """/openapi/v2 (Swagger 2.0, as the API server serves it to older clients and
    schema tools): every served kind's definition, marked with its group-version-kind,
    every $ref under #/definitions/ and resolving there, no v3-only keyword left."""
    swagger = documents.swagger()
    assert swagger["swagger"] == "2.0"
    definitions = swagger["definitions"]
    marked = {(g["group"], g["version"], g["kind"])
              for schema in definitions.values()
              for g in schema.get("x-kubernetes-group-version-kind", [])}
    for info in KINDS:
        for version in info.versions:
            assert (info.group, version, info.kind) in marked, (info.kind, version)
    text = json.dumps(swagger)
    assert "#/components/" not in text
    assert '"nullable"' not in text and '"oneOf"' not in text and '"anyOf"' not in text
    for ref in refs(swagger):
        assert ref.startswith("#/definitions/") and ref.split("/")[-1] in definitions, ref

"""Kubernetes core/v1 ConfigMap and Namespace.

A ConfigMap is plain configuration that pods read as environment variables or as files
(``configMapKeyRef``, ``envFrom``, a ``configMap`` volume); the local runtime resolves
those references when it starts a pod (see :mod:`meshpilot.runtime.pod_config`).

A Namespace is cluster-scoped: it is stored with an empty namespace, and a namespaced
object does not need one to exist (meshpilot has no admission step that would refuse
it), so applying one is about letting real manifests, which carry them, apply whole.
Its labels are kept; which of them meshpilot acts upon is said by the validator's
warnings (``istio-injection`` is not: every pod gets a sidecar).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Model, ObjectMeta, Resource
from meshpilot.api.credentials import Base64Value, SecretKey


class ConfigMap(Resource):
    """``data`` holds UTF-8 text, ``binaryData`` base64; a key may be in only one of
    them, because both become the same file name in a mounted volume."""

    api_version: str = "v1"
    kind: Literal["ConfigMap"] = "ConfigMap"
    data: dict[SecretKey, str] = Field(default_factory=dict)
    binary_data: dict[SecretKey, Base64Value] = Field(default_factory=dict)
    immutable: bool | None = None

    @model_validator(mode="after")
    def _keys_once(self) -> ConfigMap:
        both = sorted(set(self.data) & set(self.binary_data))
        if both:
            raise PydanticCustomError(
                "mp_value", "key {keys} is in both data and binaryData; keep it in one",
                {"keys": ", ".join(both)})
        return self

    def decoded(self) -> dict[str, bytes]:
        """Every key with its value as bytes (``data`` encoded UTF-8)."""
        import base64

        out = {k: v.encode("utf-8") for k, v in self.data.items()}
        out.update({k: base64.b64decode(v) for k, v in self.binary_data.items()})
        return out


_NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ClusterObjectMeta(ObjectMeta):
    """ObjectMeta of a cluster-scoped object: no namespace (stored as "")."""

    namespace: str = ""

    # named as ObjectMeta's namespace check, so that it replaces it: "" is right here
    @field_validator("namespace", mode="before")
    @classmethod
    def _valid_namespace(cls, value: Any) -> Any:
        if value not in (None, ""):
            raise PydanticCustomError(
                "mp_value", "this kind is cluster-scoped: remove metadata.namespace")
        return ""


class NamespaceSpec(Model):
    finalizers: list[str] | None = None


class Namespace(Resource):
    """A namespace's name is a DNS label (at most 63 characters), as Kubernetes asks."""

    api_version: str = "v1"
    kind: Literal["Namespace"] = "Namespace"
    metadata: ClusterObjectMeta
    spec: NamespaceSpec | None = None

    @field_validator("metadata")
    @classmethod
    def _dns_label(cls, meta: ClusterObjectMeta) -> ClusterObjectMeta:
        if len(meta.name) > 63 or not _NAMESPACE_NAME.match(meta.name):
            raise PydanticCustomError(
                "mp_value", "namespace name {name} must be a DNS label: at most 63 "
                "lowercase letters, digits and '-'", {"name": repr(meta.name)})
        return meta

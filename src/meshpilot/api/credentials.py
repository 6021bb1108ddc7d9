"""Kubernetes core/v1 Secret and ServiceAccount: where key material is kept, and the
identity a workload runs as.

A ServiceAccount is a name: a workload running as ``sa`` in namespace ``ns`` is
``spiffe://<trust-domain>/ns/<ns>/sa/<sa>`` to its peers. A Secret holds values, such as
a gateway's certificate and key (``kubernetes.io/tls``). Its values are credentials, so
they are marked SENSITIVE_FIELDS: a diagnostic names the key and the problem, never the
value. Whether a TLS Secret's certificate and key parse and belong together is checked
by the validator (it reports the exact key at fault); this module checks the shape.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Model, Resource

SecretType = Literal["kubernetes.io/tls", "Opaque", "generic"]
TLS_SECRET: SecretType = "kubernetes.io/tls"

_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_KEY_MAX = 253


def _check_key(value: str) -> str:
    """Kubernetes' rule for data keys: they become file names in a mounted volume."""
    if not _KEY.match(value) or len(value) > _KEY_MAX or value in (".", ".."):
        raise PydanticCustomError(
            "mp_value",
            "key {key} is not a valid Secret key: use letters, digits, '-', '_' and '.' "
            "(at most 253 characters), e.g. tls.crt",
            {"key": repr(value)},
        )
    return value


def _check_base64(value: Any) -> Any:
    """Decodes, or says so without repeating the value (it is a credential)."""
    if not isinstance(value, str):
        raise PydanticCustomError("mp_type", "a data value must be a base64 string")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError(
            "mp_value",
            "not valid base64; data values are base64-encoded (put plain text under "
            "stringData instead)",
        ) from None
    return value


SecretKey = Annotated[str, AfterValidator(_check_key)]
Base64Value = Annotated[str, BeforeValidator(_check_base64)]


class Secret(Resource):
    """``data`` values are base64; ``stringData`` values are plain text and win over a
    ``data`` value of the same key, as in Kubernetes."""

    SENSITIVE_FIELDS: ClassVar[frozenset[str]] = frozenset({"data", "stringData"})

    api_version: str = "v1"
    kind: Literal["Secret"] = "Secret"
    type: SecretType = "Opaque"
    data: dict[SecretKey, Base64Value] = Field(default_factory=dict)
    string_data: dict[SecretKey, str] = Field(default_factory=dict)

    def __repr_args__(self) -> Any:
        """Its fields for ``repr``, the values of ``data`` and ``stringData`` replaced by
        their keys: a Secret that ends up in a log or a traceback shows no credential."""
        for name, value in super().__repr_args__():
            if name in ("data", "string_data") and isinstance(value, dict):
                yield name, {key: "<redacted>" for key in value}
            else:
                yield name, value

    def value(self, key: str) -> bytes | None:
        """The decoded value of ``key`` (``stringData`` first), or None."""
        if key in self.string_data:
            return self.string_data[key].encode("utf-8")
        if key in self.data:
            return base64.b64decode(self.data[key])
        return None

    def decoded(self) -> dict[str, bytes]:
        """Every key with its decoded value."""
        keys = dict.fromkeys([*self.data, *self.string_data])
        return {key: value for key in keys if (value := self.value(key)) is not None}


class ObjectReference(Model):
    """Kubernetes' ObjectReference, as ``ServiceAccount.secrets`` lists them."""

    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class LocalObjectReference(Model):
    name: str = Field(min_length=1)


class ServiceAccount(Resource):
    """An identity workloads run as (``serviceAccountName`` in a pod template). The
    optional fields are accepted so that Kubernetes manifests apply unchanged; they are
    about Kubernetes API tokens and image pulls, which a mesh without Kubernetes has no
    use for."""

    api_version: str = "v1"
    kind: Literal["ServiceAccount"] = "ServiceAccount"
    automount_service_account_token: bool | None = None
    secrets: list[ObjectReference] | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None

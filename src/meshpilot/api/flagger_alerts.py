"""Flagger's alerting API: the ``AlertProvider`` kind and a Canary's ``analysis.alerts``.

Field names and defaults follow Flagger's Go types (``pkg/apis/flagger/v1beta1/alert.go``
and ``CanaryAlert`` in ``canary.go``) and its CRD, so a file written for Flagger applies
unchanged. A provider is a chat service's incoming webhook; where its address is a
credential (a Slack webhook URL is one), it lives in a Secret named by ``secretRef``,
whose ``address`` key then wins over ``spec.address``, and whose ``token`` key, if any,
is sent as a bearer token (to Slack only, as Flagger does).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Model, Resource

AlertProviderType = Literal["slack", "msteams", "discord", "rocket", "gchat"]
"""The provider types Flagger's notifier factory builds (``pkg/notifier/factory.go``);
its CRD refuses any other."""

AlertSeverity = Literal["info", "warn", "error"]

DEFAULT_USERNAME = "flagger"
DEFAULT_CHANNEL = "general"


def _check_url(value: str | None, field: str) -> str | None:
    """An absolute http(s) URL with a host, as the notifier must POST to it. The value
    is never repeated in the message: a webhook URL is often itself the credential."""
    if value is None or value == "":
        return value
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        valid = False
    if not valid:
        raise PydanticCustomError(
            "mp_value", "{field} must be an absolute http:// or https:// URL with a host",
            {"field": field})
    return value


class LocalObjectReference(Model):
    name: str = Field(min_length=1)


class AlertProviderSpec(Model):
    type: AlertProviderType
    channel: str | None = None
    username: str | None = None
    address: str | None = None
    proxy: str | None = None
    secret_ref: LocalObjectReference | None = None

    @field_validator("address")
    @classmethod
    def _address_is_url(cls, value: str | None) -> str | None:
        return _check_url(value, "address")

    @field_validator("proxy")
    @classmethod
    def _proxy_is_url(cls, value: str | None) -> str | None:
        return _check_url(value, "proxy")

    @model_validator(mode="after")
    def _has_an_address(self) -> AlertProviderSpec:
        # Flagger's CRD: type with address, or type with secretRef.
        if not self.address and self.secret_ref is None:
            raise PydanticCustomError(
                "mp_value", "give the provider's webhook address, or a secretRef naming a "
                "Secret whose key 'address' holds it")
        return self


class AlertProvider(Resource):
    api_version: str = "flagger.app/v1beta1"
    kind: Literal["AlertProvider"] = "AlertProvider"
    spec: AlertProviderSpec


class ProviderReference(Model):
    name: str = Field(min_length=1)
    namespace: str | None = None


class CanaryAlert(Model):
    name: str = Field(min_length=1)
    severity: AlertSeverity = "info"
    provider_ref: ProviderReference

    @field_validator("severity", mode="before")
    @classmethod
    def _empty_is_info(cls, value: Any) -> Any:
        # Flagger's CRD allows "" and documents info as the default.
        return "info" if value == "" else value

"""Istio security resources: ``security.istio.io`` PeerAuthentication and AuthorizationPolicy.

Field names follow the Istio reference (istio.io/latest/docs/reference/config/security/).
Besides field-level typing, the models apply the checks Istio's own validation webhook
makes, so a policy that istiod would refuse is refused at apply time too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Labels, Model, Resource

MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]
Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


class WorkloadSelector(Model):
    """Selects the workloads a policy applies to, by their labels."""

    match_labels: Labels = Field(default_factory=dict)


# --- PeerAuthentication ---------------------------------------------------------------


class MutualTls(Model):
    mode: MtlsMode = "UNSET"


class PeerAuthenticationSpec(Model):
    selector: WorkloadSelector | None = None
    mtls: MutualTls | None = None
    port_level_mtls: dict[str, MutualTls] | None = None

    @field_validator("port_level_mtls")
    @classmethod
    def _port_keys(cls, value: dict[str, MutualTls] | None) -> dict[str, MutualTls] | None:
        for key in value or {}:
            if not (key.isdigit() and 1 <= int(key) <= 65535):
                raise PydanticCustomError(
                    "mp_value",
                    "portLevelMtls key {key} is not a port number from 1 to 65535",
                    {"key": repr(key)},
                )
        return value

    @model_validator(mode="after")
    def _port_level_needs_selector(self) -> PeerAuthenticationSpec:
        if self.port_level_mtls and not (self.selector and self.selector.match_labels):
            raise PydanticCustomError(
                "mp_value",
                "portLevelMtls requires a workload selector (selector.matchLabels), as Istio does",
            )
        return self


class PeerAuthentication(Resource):
    api_version: str = "security.istio.io/v1"
    kind: Literal["PeerAuthentication"] = "PeerAuthentication"
    spec: PeerAuthenticationSpec = Field(default_factory=PeerAuthenticationSpec)


# --- AuthorizationPolicy --------------------------------------------------------------


class Source(Model):
    principals: list[str] | None = None
    not_principals: list[str] | None = None
    request_principals: list[str] | None = None
    not_request_principals: list[str] | None = None
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = None
    service_accounts: list[str] | None = None
    not_service_accounts: list[str] | None = None
    ip_blocks: list[str] | None = None
    not_ip_blocks: list[str] | None = None
    remote_ip_blocks: list[str] | None = None
    not_remote_ip_blocks: list[str] | None = None


class Operation(Model):
    hosts: list[str] | None = None
    not_hosts: list[str] | None = None
    ports: list[str] | None = None
    not_ports: list[str] | None = None
    methods: list[str] | None = None
    not_methods: list[str] | None = None
    paths: list[str] | None = None
    not_paths: list[str] | None = None


class RuleFrom(Model):
    source: Source

    @model_validator(mode="after")
    def _not_empty(self) -> RuleFrom:
        if not self.source.model_dump(exclude_none=True):
            raise PydanticCustomError("mp_value", "from.source must set at least one field")
        return self


class RuleTo(Model):
    operation: Operation

    @model_validator(mode="after")
    def _not_empty(self) -> RuleTo:
        if not self.operation.model_dump(exclude_none=True):
            raise PydanticCustomError("mp_value", "to.operation must set at least one field")
        return self


class Condition(Model):
    key: str = Field(min_length=1)
    values: list[str] | None = None
    not_values: list[str] | None = None

    @model_validator(mode="after")
    def _has_values(self) -> Condition:
        if not self.values and not self.not_values:
            raise PydanticCustomError(
                "mp_value",
                "condition {key} needs values or notValues",
                {"key": repr(self.key)},
            )
        return self


class Rule(Model):
    from_: list[RuleFrom] | None = Field(default=None, alias="from")
    to: list[RuleTo] | None = None
    when: list[Condition] | None = None


class ExtensionProvider(Model):
    name: str = Field(min_length=1)


class AuthorizationPolicySpec(Model):
    """An empty spec is valid: with the default action ALLOW it denies all requests."""

    selector: WorkloadSelector | None = None
    # Gateway/Service attachment (group, kind, name, namespace); kept loose.
    target_ref: dict[str, Any] | None = None
    target_refs: list[dict[str, Any]] | None = None
    action: Action = "ALLOW"
    provider: ExtensionProvider | None = None
    rules: list[Rule] | None = None

    @model_validator(mode="after")
    def _istio_checks(self) -> AuthorizationPolicySpec:
        if self.action == "CUSTOM" and self.provider is None:
            raise PydanticCustomError(
                "mp_value", "action CUSTOM needs a provider naming the extension provider"
            )
        if self.action != "CUSTOM" and self.provider is not None:
            raise PydanticCustomError("mp_value", "provider may only be set when action is CUSTOM")
        if self.selector is not None and (self.target_ref or self.target_refs):
            raise PydanticCustomError(
                "mp_value", "selector and targetRef/targetRefs are mutually exclusive"
            )
        if self.target_ref and self.target_refs:
            raise PydanticCustomError("mp_value", "set targetRef or targetRefs, not both")
        return self


class AuthorizationPolicy(Resource):
    api_version: str = "security.istio.io/v1"
    kind: Literal["AuthorizationPolicy"] = "AuthorizationPolicy"
    spec: AuthorizationPolicySpec = Field(default_factory=AuthorizationPolicySpec)

"""Istio's EnvoyFilter (``networking.istio.io`` v1alpha3): patches to the generated Envoy
config of the workloads it selects.

The shapes follow Istio's ``EnvoyFilter`` message. Every enum value Istio defines is
accepted by the model, so a document written for Istio parses; what meshpilot does not
apply (some ``applyTo`` values, operations, match fields) is refused by
:mod:`meshpilot.validation.envoy_filter_rules` with the field and the values that are
applied, never accepted and ignored. A patch ``value`` is Envoy v3 API JSON (snake_case
or camelCase, ``@type`` for ``Any``), parsed by :mod:`meshpilot.api.envoy_values`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from meshpilot.api.base import Labels, Model, Port, Resource

ApplyTo = Literal[
    "INVALID", "LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER",
    "ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG",
    "BOOTSTRAP", "LISTENER_FILTER",
]
Operation = Literal[
    "INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST",
    "REPLACE",
]
PatchContext = Literal["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"]
RouteAction = Literal["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"]
FilterClass = Literal["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"]


class SubFilterMatch(Model):
    name: str | None = None


class FilterMatch(Model):
    name: str | None = None
    sub_filter: SubFilterMatch | None = None


class FilterChainMatch(Model):
    name: str | None = None
    sni: str | None = None
    transport_protocol: str | None = None
    application_protocols: str | None = None
    filter: FilterMatch | None = None
    destination_port: int | None = None


class ListenerMatch(Model):
    port_number: int | None = Field(default=None, ge=0, le=65535)
    port_name: str | None = None
    filter_chain: FilterChainMatch | None = None
    listener_filter: str | None = None
    name: str | None = None


class RouteMatch(Model):
    name: str | None = None
    action: RouteAction | None = None


class VirtualHostMatch(Model):
    name: str | None = None
    domain_name: str | None = None
    route: RouteMatch | None = None


class RouteConfigurationMatch(Model):
    port_number: int | None = Field(default=None, ge=0, le=65535)
    port_name: str | None = None
    gateway: str | None = None
    vhost: VirtualHostMatch | None = None
    name: str | None = None


class ClusterMatch(Model):
    port_number: Port | None = None
    service: str | None = None
    subset: str | None = None
    name: str | None = None


class ProxyMatch(Model):
    proxy_version: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class ObjectMatch(Model):
    """Which part of the generated config a patch applies to (Istio's
    ``EnvoyConfigObjectMatch``); at most one of listener, routeConfiguration, cluster."""

    context: PatchContext | None = None
    proxy: ProxyMatch | None = None
    listener: ListenerMatch | None = None
    route_configuration: RouteConfigurationMatch | None = None
    cluster: ClusterMatch | None = None


class Patch(Model):
    operation: Operation | None = None
    value: dict[str, Any] | None = None
    filter_class: FilterClass | None = None


class ConfigPatch(Model):
    apply_to: ApplyTo | None = None
    match: ObjectMatch | None = None
    patch: Patch | None = None


class EnvoyFilterSelector(Model):
    labels: Labels = Field(default_factory=dict)


class EnvoyFilterSpec(Model):
    workload_selector: EnvoyFilterSelector | None = None
    target_refs: list[dict[str, Any]] = Field(default_factory=list)
    config_patches: list[ConfigPatch] = Field(default_factory=list)
    priority: int = 0


class EnvoyFilter(Resource):
    """Patches to the Envoy config of the workloads it selects (all of its namespace's
    without a selector; in the root namespace ``istio-system``, of every namespace)."""

    spec: EnvoyFilterSpec

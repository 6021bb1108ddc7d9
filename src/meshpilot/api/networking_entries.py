"""Istio's WorkloadEntry and ServiceEntry: workloads and services outside the mesh's own
Deployments, added to its registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Labels, Model, Port, Resource
from meshpilot.api.networking_common import ExportTo, NonNegInt, check_protocol


class WorkloadEntrySpec(Model):
    """A non-Kubernetes workload (VM, bare host). Also the shape of ServiceEntry endpoints.

    ``address`` may be omitted only for a workload reached through a network gateway.
    """

    address: str | None = None
    ports: dict[str, Port] = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict)
    network: str | None = None
    locality: str | None = None
    weight: NonNegInt | None = None
    service_account: str | None = None


class WorkloadEntry(Resource):
    spec: WorkloadEntrySpec




class ServicePort(Model):
    """A port of a ServiceEntry; unlike a Gateway port, ``name`` is required."""

    number: Port
    protocol: str | None = None
    name: str = Field(min_length=1)
    target_port: Port | None = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str | None) -> str | None:
        return check_protocol(value)


class WorkloadSelector(Model):
    """ServiceEntry's workloadSelector (plain ``labels``, unlike DestinationRule's)."""

    labels: Labels = Field(default_factory=dict)


class ServiceEntrySpec(Model):
    """Adds a host to the mesh's registry; endpoints or a workloadSelector, not both."""

    hosts: list[str] = Field(min_length=1)
    addresses: list[str] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"] | None = None
    endpoints: list[WorkloadEntrySpec] = Field(default_factory=list)
    workload_selector: WorkloadSelector | None = None
    export_to: ExportTo = Field(default_factory=list)
    subject_alt_names: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _endpoints_or_selector(self) -> ServiceEntrySpec:
        if self.endpoints and self.workload_selector is not None:
            raise PydanticCustomError(
                "mp_value", "a ServiceEntry takes endpoints or workloadSelector, not both"
            )
        if self.resolution == "DNS_ROUND_ROBIN" and len(self.endpoints) > 1:
            raise PydanticCustomError(
                "mp_value", "resolution DNS_ROUND_ROBIN takes at most one endpoint (it "
                "connects to the first address one name resolves to); use DNS for several")
        return self


class ServiceEntry(Resource):
    spec: ServiceEntrySpec

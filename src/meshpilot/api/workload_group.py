"""Istio's WorkloadGroup: the template hosts outside the local runtime join the mesh by.

A WorkloadGroup is to a joined host what a Deployment's pod template is to a pod: the
labels, ports, service account and network every member gets, and the readiness probe
its node agent runs. A host joins with ``meshpilot host join --group NS/NAME``; its
agent registers a WorkloadEntry made from the template plus its own address (Istio's
auto-registration), so the Services whose selectors match take it as an endpoint.

The shapes follow Istio's ``networking.istio.io`` WorkloadGroup: ``template`` is a
WorkloadEntry spec without ``address`` (each member brings its own; Istio refuses an
address in the template), and ``probe`` has exactly one of ``httpGet``, ``tcpSocket``,
``exec`` or ``grpc``, with Kubernetes' timing fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Labels, Model, Port, Resource
from meshpilot.api.networking import WorkloadEntrySpec

AUTO_REGISTRATION_ANNOTATION = "istio.io/autoRegistrationGroup"
"""On a WorkloadEntry a host agent registered: the WorkloadGroup it joined (Istio's
annotation). Such an entry has a sidecar of the mesh in front of it."""


class GroupMeta(Model):
    """Labels and annotations every member's WorkloadEntry carries (``spec.metadata``)."""

    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ProbeHeader(Model):
    name: str = Field(min_length=1)
    value: str = ""


class HttpProbe(Model):
    """GET ``scheme://host:port/path`` on the member's host; 2xx and 3xx are ready."""

    path: str | None = None
    port: Port
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] | None = None
    http_headers: list[ProbeHeader] = Field(default_factory=list)


class TcpProbe(Model):
    """Ready when a TCP connection to ``host:port`` opens."""

    host: str | None = None
    port: Port


class ExecProbe(Model):
    """Ready when ``command`` exits 0 (run on the member's host, by its agent)."""

    command: list[str] = Field(min_length=1)


class GrpcProbe(Model):
    port: Port
    service: str | None = None


class ReadinessProbe(Model):
    """Istio's ReadinessProbe: one check, and when and how often its agent runs it."""

    initial_delay_seconds: int = Field(default=0, ge=0)
    timeout_seconds: int = Field(default=1, ge=1)
    period_seconds: int = Field(default=10, ge=1)
    success_threshold: int = Field(default=1, ge=1)
    failure_threshold: int = Field(default=3, ge=1)
    http_get: HttpProbe | None = None
    tcp_socket: TcpProbe | None = None
    exec: ExecProbe | None = None
    grpc: GrpcProbe | None = None

    @model_validator(mode="after")
    def _one_check(self) -> ReadinessProbe:
        given = [name for name, value in (("httpGet", self.http_get),
                                          ("tcpSocket", self.tcp_socket),
                                          ("exec", self.exec), ("grpc", self.grpc))
                 if value is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "mp_value",
                "a probe needs exactly one of httpGet, tcpSocket, exec or grpc; got {got}",
                {"got": ", ".join(given) or "none"})
        return self


class WorkloadGroupSpec(Model):
    metadata: GroupMeta = Field(default_factory=GroupMeta)
    template: WorkloadEntrySpec
    probe: ReadinessProbe | None = None

    @model_validator(mode="after")
    def _no_template_address(self) -> WorkloadGroupSpec:
        if self.template.address:
            raise PydanticCustomError(
                "mp_value",
                "template.address cannot be set: each host that joins the group registers "
                "its own address (host join --address); remove it")
        return self


class WorkloadGroup(Resource):
    spec: WorkloadGroupSpec


__all__ = [
    "AUTO_REGISTRATION_ANNOTATION",
    "ExecProbe",
    "GroupMeta",
    "GrpcProbe",
    "HttpProbe",
    "ProbeHeader",
    "ReadinessProbe",
    "TcpProbe",
    "WorkloadGroup",
    "WorkloadGroupSpec",
]

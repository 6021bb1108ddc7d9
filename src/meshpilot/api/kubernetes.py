"""The Kubernetes kinds a mesh without Kubernetes still reads: core/v1 Service, apps/v1
Deployment.

Field names follow the Kubernetes API reference. The fields meshpilot acts on (ports,
selectors, containers, probes, rollout strategy) are typed strictly; the rest of the pod
spec (volumes, affinity, security contexts, ...) is accepted loosely so real manifests
load, but unknown field names are still refused at every level that is modelled, so a
misspelt ``comand`` fails instead of silently running the image's default command.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Labels, Model, ObjectMeta, Port, Resource
from meshpilot.api.names import SERVICE_LABEL, NameRule

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_port_or_name(value: Any) -> Any:
    """Kubernetes IntOrString for ports: a number 1-65535 or an IANA_SVC_NAME."""
    if isinstance(value, bool):
        raise PydanticCustomError("mp_type", "port must be a number or a port name")
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise PydanticCustomError("mp_range", "port {port} is outside 1-65535", {"port": value})
        return value
    if isinstance(value, str):
        return _check_port_name(value)
    raise PydanticCustomError("mp_type", "port must be a number or a port name")


def _check_port_name(value: str) -> str:
    """An IANA_SVC_NAME: at most 15 of [a-z0-9-], at least one letter, no edge '-'."""
    if len(value) > 15 or not _PORT_NAME.match(value) or not re.search("[a-z]", value):
        raise PydanticCustomError(
            "mp_value",
            "port name {name} is not valid: at most 15 lowercase letters, digits "
            "and '-', with at least one letter",
            {"name": repr(value)},
        )
    return value


PortName = Annotated[str, AfterValidator(_check_port_name)]


PortOrName = Annotated[int | str, BeforeValidator(_check_port_or_name)]
"""A port number (1-65535) or a named container port (``http``)."""

_INT_OR_PERCENT = re.compile(r"^\d+%$")


def _check_int_or_percent(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("mp_type", "must be a number or a percentage like 25%")
    if isinstance(value, int):
        if value < 0:
            raise PydanticCustomError("mp_range", "must not be negative")
        return value
    if isinstance(value, str) and _INT_OR_PERCENT.match(value):
        return value
    raise PydanticCustomError(
        "mp_value", "{value} must be a number or a percentage like 25%", {"value": repr(value)}
    )


IntOrPercent = Annotated[int | str, BeforeValidator(_check_int_or_percent)]

Protocol = Literal["TCP", "UDP", "SCTP"]


# --- Service --------------------------------------------------------------------------


class ServicePort(Model):
    name: str | None = Field(default=None, max_length=63, pattern=_DNS_LABEL)
    port: Port
    target_port: PortOrName | None = None
    protocol: Protocol = "TCP"
    app_protocol: str | None = None
    node_port: Port | None = None


class ServiceSpec(Model):
    selector: Labels | None = None
    ports: list[ServicePort] = Field(default_factory=list)
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    external_ips: list[str] | None = Field(default=None, alias="externalIPs")
    external_name: str | None = None
    session_affinity: Literal["None", "ClientIP"] | None = None
    session_affinity_config: dict[str, Any] | None = None
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[str] | None = None
    load_balancer_class: str | None = None
    allocate_load_balancer_node_ports: bool | None = None
    external_traffic_policy: Literal["Cluster", "Local"] | None = None
    internal_traffic_policy: Literal["Cluster", "Local"] | None = None
    health_check_node_port: Port | None = None
    publish_not_ready_addresses: bool | None = None
    ip_families: list[Literal["IPv4", "IPv6"]] | None = None
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None
    traffic_distribution: str | None = None

    @model_validator(mode="after")
    def _k8s_checks(self) -> ServiceSpec:
        if self.type == "ExternalName" and not self.external_name:
            raise PydanticCustomError("mp_value", "type ExternalName requires externalName")
        if len(self.ports) > 1:
            unnamed = [str(p.port) for p in self.ports if not p.name]
            if unnamed:
                raise PydanticCustomError(
                    "mp_value",
                    "a Service with several ports must name each one; unnamed: {ports}",
                    {"ports": ", ".join(unnamed)},
                )
        names: set[str] = set()
        seen: set[tuple[int, str]] = set()
        for p in self.ports:
            if p.name:
                if p.name in names:
                    raise PydanticCustomError(
                        "mp_value", "duplicate port name {name}", {"name": repr(p.name)}
                    )
                names.add(p.name)
            if (p.port, p.protocol) in seen:
                raise PydanticCustomError(
                    "mp_value",
                    "duplicate port {port}/{protocol}",
                    {"port": p.port, "protocol": p.protocol},
                )
            seen.add((p.port, p.protocol))
        return self


class ServiceMeta(ObjectMeta):
    """A Service's name is the first label of its host name (NAME.NS.svc.cluster.local):
    a DNS-1035 label, as Kubernetes asks."""

    NAME_RULE: ClassVar[NameRule] = SERVICE_LABEL


class Service(Resource):
    api_version: str = "v1"
    kind: Literal["Service"] = "Service"
    metadata: ServiceMeta
    spec: ServiceSpec = Field(default_factory=ServiceSpec)


# --- Pod template ---------------------------------------------------------------------


class HTTPHeader(Model):
    name: str
    value: str


class HTTPGetAction(Model):
    path: str | None = None
    port: PortOrName
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(Model):
    port: PortOrName
    host: str | None = None


class ExecAction(Model):
    command: list[str] | None = None


class GRPCAction(Model):
    port: Port
    service: str | None = None


class Probe(Model):
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int | None = Field(default=None, ge=0)
    period_seconds: int | None = Field(default=None, ge=1)
    timeout_seconds: int | None = Field(default=None, ge=1)
    success_threshold: int | None = Field(default=None, ge=1)
    failure_threshold: int | None = Field(default=None, ge=1)
    termination_grace_period_seconds: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        handlers = [
            name
            for name, value in (
                ("httpGet", self.http_get),
                ("tcpSocket", self.tcp_socket),
                ("exec", self.exec),
                ("grpc", self.grpc),
            )
            if value is not None
        ]
        if len(handlers) != 1:
            raise PydanticCustomError(
                "mp_value",
                "a probe needs exactly one of httpGet, tcpSocket, exec or grpc; got {got}",
                {"got": ", ".join(handlers) or "none"},
            )
        return self


class ObjectFieldSelector(Model):
    field_path: str = Field(min_length=1)
    api_version: str | None = None


class KeySelector(Model):
    """``configMapKeyRef`` / ``secretKeyRef``: one key of a ConfigMap or Secret in the
    pod's namespace. ``optional``: a missing object or key leaves the variable unset
    instead of keeping the pod from starting."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1)
    optional: bool | None = None


class EnvVarSource(Model):
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: dict[str, Any] | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None
    file_key_ref: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        given = [name for name, value in (
            ("fieldRef", self.field_ref), ("resourceFieldRef", self.resource_field_ref),
            ("configMapKeyRef", self.config_map_key_ref), ("secretKeyRef", self.secret_key_ref),
            ("fileKeyRef", self.file_key_ref)) if value is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "mp_value", "valueFrom needs exactly one of fieldRef, resourceFieldRef, "
                "configMapKeyRef, secretKeyRef or fileKeyRef; got {got}",
                {"got": ", ".join(given) or "none"})
        return self


class EnvVar(Model):
    name: str = Field(min_length=1)
    value: str | None = None
    value_from: EnvVarSource | None = None


class ObjectRef(Model):
    """``configMapRef`` / ``secretRef`` of ``envFrom``: every key of the object."""

    name: str = Field(min_length=1)
    optional: bool | None = None


class EnvFromSource(Model):
    prefix: str | None = None
    config_map_ref: ObjectRef | None = None
    secret_ref: ObjectRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise PydanticCustomError(
                "mp_value", "envFrom needs exactly one of configMapRef or secretRef")
        return self


class VolumeMount(Model):
    name: str = Field(min_length=1)
    mount_path: str = Field(min_length=1)
    sub_path: str | None = None
    sub_path_expr: str | None = None
    read_only: bool | None = None
    recursive_read_only: str | None = None
    mount_propagation: str | None = None


class KeyToPath(Model):
    key: str = Field(min_length=1)
    path: str = Field(min_length=1)
    mode: int | None = Field(default=None, ge=0, le=0o777)


class ConfigMapVolumeSource(Model):
    name: str = Field(min_length=1)
    items: list[KeyToPath] | None = None
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class SecretVolumeSource(Model):
    secret_name: str = Field(min_length=1)
    items: list[KeyToPath] | None = None
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class EmptyDirVolumeSource(Model):
    medium: str | None = None
    size_limit: str | int | None = None


OTHER_VOLUME_TYPES = (
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi",
    "downwardAPI", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk",
    "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs", "persistentVolumeClaim",
    "photonPersistentDisk", "portworxVolume", "projected", "quobyte", "rbd", "scaleIO",
    "storageos", "vsphereVolume",
)
"""Volume types accepted so that manifests load, and warned about: no local equivalent."""


class Volume(Model):
    """One volume of a pod: ``configMap``, ``secret`` and ``emptyDir`` are made by the
    local runtime (a directory per pod); the other types are accepted loosely and the
    validator warns that nothing is mounted for them."""

    name: str = Field(min_length=1, max_length=63, pattern=_DNS_LABEL)
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    empty_dir: EmptyDirVolumeSource | None = None
    aws_elastic_block_store: dict[str, Any] | None = None
    azure_disk: dict[str, Any] | None = None
    azure_file: dict[str, Any] | None = None
    cephfs: dict[str, Any] | None = None
    cinder: dict[str, Any] | None = None
    csi: dict[str, Any] | None = None
    downward_api: dict[str, Any] | None = Field(default=None, alias="downwardAPI")
    ephemeral: dict[str, Any] | None = None
    fc: dict[str, Any] | None = None
    flex_volume: dict[str, Any] | None = None
    flocker: dict[str, Any] | None = None
    gce_persistent_disk: dict[str, Any] | None = None
    git_repo: dict[str, Any] | None = None
    glusterfs: dict[str, Any] | None = None
    host_path: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    iscsi: dict[str, Any] | None = None
    nfs: dict[str, Any] | None = None
    persistent_volume_claim: dict[str, Any] | None = None
    photon_persistent_disk: dict[str, Any] | None = None
    portworx_volume: dict[str, Any] | None = None
    projected: dict[str, Any] | None = None
    quobyte: dict[str, Any] | None = None
    rbd: dict[str, Any] | None = None
    scale_io: dict[str, Any] | None = Field(default=None, alias="scaleIO")
    storageos: dict[str, Any] | None = None
    vsphere_volume: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_type(self) -> Volume:
        given = [(field.alias or name) for name, field in type(self).model_fields.items()
                 if name != "name" and getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "mp_value", "volume {name} needs exactly one volume type (configMap, "
                "secret, emptyDir, ...); got {got}",
                {"name": repr(self.name), "got": ", ".join(given) or "none"})
        return self


class ContainerPort(Model):
    name: PortName | None = None
    container_port: Port
    protocol: Protocol = "TCP"
    host_port: Port | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")


class Container(Model):
    name: str = Field(min_length=1, max_length=63, pattern=_DNS_LABEL)
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    ports: list[ContainerPort] | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    resources: dict[str, Any] | None = None
    resize_policy: list[dict[str, Any]] | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    volume_mounts: list[VolumeMount] | None = None
    volume_devices: list[dict[str, Any]] | None = None
    lifecycle: dict[str, Any] | None = None
    security_context: dict[str, Any] | None = None
    termination_message_path: str | None = None
    termination_message_policy: Literal["File", "FallbackToLogsOnError"] | None = None
    restart_policy: str | None = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None

    @model_validator(mode="after")
    def _unique_port_names(self) -> Container:
        names = [p.name for p in self.ports or () if p.name]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PydanticCustomError(
                "mp_value",
                "container {name} names port {ports} more than once",
                {"name": repr(self.name), "ports": ", ".join(dupes)},
            )
        return self


class PodTemplateMetadata(Model):
    name: str | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodSpec(Model):
    containers: list[Container] = Field(min_length=1)
    init_containers: list[dict[str, Any]] | None = None
    ephemeral_containers: list[dict[str, Any]] | None = None
    restart_policy: Literal["Always", "OnFailure", "Never"] | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    service_account_name: str | None = None
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    volumes: list[Volume] | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    topology_spread_constraints: list[dict[str, Any]] | None = None
    security_context: dict[str, Any] | None = None
    image_pull_secrets: list[dict[str, Any]] | None = None
    host_network: bool | None = None
    host_pid: bool | None = Field(default=None, alias="hostPID")
    host_ipc: bool | None = Field(default=None, alias="hostIPC")
    host_users: bool | None = None
    share_process_namespace: bool | None = None
    hostname: str | None = None
    subdomain: str | None = None
    host_aliases: list[dict[str, Any]] | None = None
    dns_policy: str | None = None
    dns_config: dict[str, Any] | None = None
    set_hostname_as_fqdn: bool | None = Field(default=None, alias="setHostnameAsFQDN")
    enable_service_links: bool | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    preemption_policy: str | None = None
    scheduler_name: str | None = None
    runtime_class_name: str | None = None
    overhead: dict[str, Any] | None = None
    readiness_gates: list[dict[str, Any]] | None = None
    scheduling_gates: list[dict[str, Any]] | None = None
    resource_claims: list[dict[str, Any]] | None = None
    resources: dict[str, Any] | None = None
    os: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _unique_container_names(self) -> PodSpec:
        names = [c.name for c in self.containers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PydanticCustomError(
                "mp_value",
                "container name {names} used more than once",
                {"names": ", ".join(dupes)},
            )
        volumes = [v.name for v in self.volumes or ()]
        twice = sorted({n for n in volumes if volumes.count(n) > 1})
        if twice:
            raise PydanticCustomError(
                "mp_value", "volume name {names} used more than once",
                {"names": ", ".join(twice)})
        return self


class PodTemplateSpec(Model):
    metadata: PodTemplateMetadata = Field(default_factory=PodTemplateMetadata)
    spec: PodSpec


# --- Deployment -----------------------------------------------------------------------


class LabelSelectorRequirement(Model):
    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in ("In", "NotIn")
        if needs_values and not self.values:
            raise PydanticCustomError(
                "mp_value", "operator {op} needs values", {"op": self.operator}
            )
        if not needs_values and self.values:
            raise PydanticCustomError(
                "mp_value", "operator {op} takes no values", {"op": self.operator}
            )
        return self

    def matches(self, labels: Labels) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in (self.values or [])
        return self.key not in labels or labels[self.key] not in (self.values or [])


class LabelSelector(Model):
    match_labels: Labels | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None

    def matches(self, labels: Labels) -> bool:
        if any(labels.get(k) != v for k, v in (self.match_labels or {}).items()):
            return False
        return all(req.matches(labels) for req in self.match_expressions or ())

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


class RollingUpdate(Model):
    max_surge: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None


class DeploymentStrategy(Model):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdate | None = None

    @model_validator(mode="after")
    def _recreate_has_no_rolling_update(self) -> DeploymentStrategy:
        if self.type == "Recreate" and self.rolling_update is not None:
            raise PydanticCustomError(
                "mp_value", "rollingUpdate may not be set when strategy type is Recreate"
            )
        ru = self.rolling_update
        if ru is not None and ru.max_surge in (0, "0%") and ru.max_unavailable in (0, "0%"):
            raise PydanticCustomError("mp_value", "maxSurge and maxUnavailable may not both be 0")
        return self


class DeploymentSpec(Model):
    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy | None = None
    min_ready_seconds: int | None = Field(default=None, ge=0)
    revision_history_limit: int | None = Field(default=None, ge=0)
    progress_deadline_seconds: int | None = Field(default=None, ge=1)
    paused: bool | None = None

    @model_validator(mode="after")
    def _selector_matches_template(self) -> DeploymentSpec:
        if self.selector.is_empty:
            raise PydanticCustomError(
                "mp_value", "selector must not be empty; set selector.matchLabels"
            )
        labels = self.template.metadata.labels
        if not self.selector.matches(labels):
            wanted = self.selector.match_labels or {}
            missing = {k: v for k, v in wanted.items() if labels.get(k) != v}
            detail = (
                ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
                if missing
                else "matchExpressions"
            )
            raise PydanticCustomError(
                "mp_value",
                "selector does not match template labels: template.metadata.labels "
                "{labels} do not satisfy {detail}",
                {"labels": dict(sorted(labels.items())), "detail": detail},
            )
        restart = self.template.spec.restart_policy
        if restart not in (None, "Always"):
            raise PydanticCustomError(
                "mp_value",
                "a Deployment's pods must use restartPolicy Always, not {policy}",
                {"policy": restart},
            )
        deadline, min_ready = self.progress_deadline_seconds, self.min_ready_seconds
        if deadline is not None and min_ready is not None and deadline <= min_ready:
            raise PydanticCustomError(
                "mp_value", "progressDeadlineSeconds must be greater than minReadySeconds"
            )
        return self


class Deployment(Resource):
    api_version: str = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec

    @property
    def containers(self) -> list[Container]:
        return self.spec.template.spec.containers

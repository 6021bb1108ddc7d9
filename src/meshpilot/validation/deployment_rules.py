"""Deployment and Namespace rules: what the local runtime does not act on, said out loud.

A Deployment's pods are local processes with a sidecar, so much of a Kubernetes pod
spec has nothing to act upon: scheduling, resources, security contexts, most volume
types. The model accepts those fields so that real manifests apply whole; each one that
is set gets a warning (MP2017) naming the field and what happens instead, because a
field silently dropped is a promise silently broken. Turning sidecar injection off
(MP2018) is not honoured either: every pod is given a sidecar.

Errors (MP0047) are the mounts the runtime cannot make as written: a mount of a volume
the pod does not declare, or a path that would leave the volume's directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

from meshpilot.api.kubernetes import OTHER_VOLUME_TYPES
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.placement_rules import placement_findings
from meshpilot.validation.shapes import as_list, as_mapping

_SCHEDULING = "pods go to the node their nodeName or hostname selector names"
_SECURITY = "pods run as the user running meshpilot, with no sandbox"
_NO_IMAGES = "images are not pulled: the image map or the command says what runs"

DEPLOYMENT_IGNORED: Mapping[str, str] = MappingProxyType({
    "minReadySeconds": "a pod is available as soon as it is ready",
    "revisionHistoryLimit": "old revisions are not kept",
    "progressDeadlineSeconds": "a rollout that does not progress is not marked failed",
    "paused": "rollouts are not paused: a new template rolls out at once",
})

POD_IGNORED: Mapping[str, str] = MappingProxyType({
    "initContainers": "init containers are not run; put the step in the command",
    "ephemeralContainers": "ephemeral containers are not run",
    "activeDeadlineSeconds": "pods run until stopped",
    "automountServiceAccountToken": "no Kubernetes API token is mounted",
    "tolerations": _SCHEDULING, "topologySpreadConstraints": _SCHEDULING,
    "priorityClassName": _SCHEDULING, "priority": _SCHEDULING,
    "preemptionPolicy": _SCHEDULING, "schedulerName": _SCHEDULING,
    "schedulingGates": _SCHEDULING, "runtimeClassName": _SCHEDULING, "overhead": _SCHEDULING,
    "securityContext": _SECURITY, "hostUsers": _SECURITY,
    "imagePullSecrets": _NO_IMAGES,
    "hostNetwork": "each pod has its own loopback address",
    "hostPID": "processes are not isolated", "hostIPC": "processes are not isolated",
    "shareProcessNamespace": "processes are not isolated",
    "hostname": "the host's name is the pod's", "subdomain": "no pod DNS records",
    "hostAliases": "/etc/hosts is the host's", "dnsPolicy": "name lookups are the host's",
    "dnsConfig": "name lookups are the host's", "setHostnameAsFQDN": "the host's name is the pod's",
    "enableServiceLinks": "no service environment variables are set",
    "readinessGates": "readiness is the containers' readiness probes",
    "resourceClaims": "resources are not limited or reserved",
    "resources": "resources are not limited or reserved", "os": _SCHEDULING,
})

CONTAINER_IGNORED: Mapping[str, str] = MappingProxyType({
    "livenessProbe": "only readinessProbe is run: a process that exits is restarted",
    "startupProbe": "only readinessProbe is run",
    "resources": "resources are not limited or reserved (requests.cpu is read only as the "
                 "base of a HorizontalPodAutoscaler's CPU utilization)",
    "resizePolicy": "resources are not limited or reserved",
    "imagePullPolicy": _NO_IMAGES,
    "volumeDevices": "no block devices are attached",
    "lifecycle": "postStart and preStop hooks are not run (stopping is SIGTERM, then SIGKILL)",
    "securityContext": _SECURITY,
    "terminationMessagePath": "the container's output is in the pod log",
    "terminationMessagePolicy": "the container's output is in the pod log",
    "restartPolicy": "sidecar containers are not run specially",
    "stdin": "standard input is /dev/null", "stdinOnce": "standard input is /dev/null",
    "tty": "no terminal is attached",
})

MOUNT_IGNORED: Mapping[str, str] = MappingProxyType({
    "subPathExpr": "the mount is made without its subPath",
    "mountPropagation": "mounts are symbolic links",
    "recursiveReadOnly": "mounts are symbolic links",
})

FIELD_PATHS = frozenset({"metadata.name", "metadata.namespace", "status.podIP",
                         "status.hostIP", "spec.nodeName"})
"""``fieldRef`` paths the runtime fills in (and ``metadata.labels['...']``)."""

_OFF = frozenset({"false", "disabled"})


def _ignored(body: Mapping[str, Any], table: Mapping[str, str], path: Path,
             what: str) -> Iterator[Finding]:
    for field, why in table.items():
        if body.get(field) not in (None, False, [], {}):
            yield Finding(codes.POD_FIELD_IGNORED, (*path, field),
                          f"{what} {field} is not acted on: {why}")


def deployment_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    out = list(_ignored(spec, DEPLOYMENT_IGNORED, ("spec",), "Deployment"))
    if as_mapping(spec.get("strategy")).get("rollingUpdate"):
        out.append(Finding(codes.POD_FIELD_IGNORED, ("spec", "strategy", "rollingUpdate"),
                           "rollingUpdate is not acted on: pods roll one at a time, a new one "
                           "ready before an old one stops (maxSurge 1, maxUnavailable 0)"))
    template = as_mapping(spec.get("template"))
    out += _injection(as_mapping(template.get("metadata")), ("spec", "template", "metadata"))
    out += pod_findings(as_mapping(template.get("spec")), ("spec", "template", "spec"))
    return out


def _injection(meta: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    for where in ("labels", "annotations"):
        value = as_mapping(meta.get(where)).get("sidecar.istio.io/inject")
        if isinstance(value, str) and value.lower() in _OFF:
            yield Finding(codes.INJECTION_NOT_APPLIED,
                          (*path, where, "sidecar.istio.io/inject"),
                          "sidecar.istio.io/inject is not applied: every meshpilot pod runs "
                          "with a sidecar")


def pod_findings(pod: Mapping[str, Any], path: Path) -> list[Finding]:
    out = list(_ignored(pod, POD_IGNORED, path, "pod"))
    out += placement_findings(pod, path)
    volumes = {str(as_mapping(v).get("name")): as_mapping(v)
               for v in as_list(pod.get("volumes"))}
    for i, volume in enumerate(as_list(pod.get("volumes"))):
        out += _volume(as_mapping(volume), (*path, "volumes", i))
    for i, c in enumerate(as_list(pod.get("containers"))):
        where = (*path, "containers", i)
        container = as_mapping(c)
        out += _ignored(container, CONTAINER_IGNORED, where, "container")
        out += _container_ports(container, where)
        out += _env(container, where)
        out += _mounts(container, volumes, where)
    return out


def _container_ports(c: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    for i, port in enumerate(as_list(c.get("ports"))):
        for field in ("hostPort", "hostIP"):
            if as_mapping(port).get(field) is not None:
                yield Finding(codes.POD_FIELD_IGNORED, (*path, "ports", i, field),
                              f"{field} is not acted on: the app listens on the pod's own "
                              "address, reached through its sidecar")


def _env(c: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    for i, var in enumerate(as_list(c.get("env"))):
        source = as_mapping(as_mapping(var).get("valueFrom"))
        where = (*path, "env", i, "valueFrom")
        for field in ("resourceFieldRef", "fileKeyRef"):
            if field in source:
                yield Finding(codes.POD_FIELD_IGNORED, (*where, field),
                              f"{field} is not acted on: the variable is not set")
        field_path = as_mapping(source.get("fieldRef")).get("fieldPath")
        if isinstance(field_path, str) and not _known_field(field_path):
            yield Finding(codes.POD_FIELD_IGNORED, (*where, "fieldRef", "fieldPath"),
                          f"fieldPath {field_path} is not filled in: the variable is not set "
                          f"(known: {', '.join(sorted(FIELD_PATHS))}, metadata.labels['...'])")


def _known_field(path: str) -> bool:
    return path in FIELD_PATHS or (path.startswith("metadata.labels['") and path.endswith("']"))


def _volume(volume: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    for kind in OTHER_VOLUME_TYPES:
        if kind in volume:
            yield Finding(codes.POD_FIELD_IGNORED, (*path, kind),
                          f"{kind} volumes are not made: a mount of volume "
                          f"{volume.get('name')} is left out (configMap, secret and emptyDir "
                          "are made, in the pod's directory)")
    for field in ("medium", "sizeLimit"):
        if field in as_mapping(volume.get("emptyDir")):
            yield Finding(codes.POD_FIELD_IGNORED, (*path, "emptyDir", field),
                          f"emptyDir {field} is not acted on: the volume is a directory on "
                          "the host's disk, unbounded")
    source = as_mapping(volume.get("configMap") or volume.get("secret"))
    which = "configMap" if "configMap" in volume else "secret"
    for i, item in enumerate(as_list(source.get("items"))):
        item_path = as_mapping(item).get("path")
        if isinstance(item_path, str) and not _relative(item_path):
            yield Finding(codes.BAD_VOLUME_MOUNT, (*path, which, "items", i, "path"),
                          f"path {item_path!r} must be relative and must not contain '..'")


def _relative(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(p.parts) and not p.is_absolute() and ".." not in p.parts


def _mounts(c: Mapping[str, Any], volumes: Mapping[str, Mapping[str, Any]],
            path: Path) -> Iterator[Finding]:
    seen: set[str] = set()
    for i, m in enumerate(as_list(c.get("volumeMounts"))):
        mount, where = as_mapping(m), (*path, "volumeMounts", i)
        yield from _ignored(mount, MOUNT_IGNORED, where, "volumeMount")
        yield from _mount_errors(mount, volumes, where, seen)


def _mount_errors(mount: Mapping[str, Any], volumes: Mapping[str, Mapping[str, Any]],
                  where: Path, seen: set[str]) -> Iterator[Finding]:
    name, target = mount.get("name"), str(mount.get("mountPath") or "")
    if name not in volumes:
        yield Finding(codes.BAD_VOLUME_MOUNT, (*where, "name"),
                      f"no volume {name!r} in the pod; volumes: "
                      f"{', '.join(sorted(volumes)) or 'none'}")
    if not target.startswith("/") or not target.strip("/") or ".." in target.split("/"):
        yield Finding(codes.BAD_VOLUME_MOUNT, (*where, "mountPath"),
                      f"mountPath {target!r} must be an absolute path other than / "
                      "without '..'")
    elif target.rstrip("/") in seen:
        yield Finding(codes.BAD_VOLUME_MOUNT, (*where, "mountPath"),
                      f"mountPath {target!r} is mounted twice in this container")
    seen.add(target.rstrip("/"))
    sub = mount.get("subPath")
    if isinstance(sub, str) and sub and not _relative(sub):
        yield Finding(codes.BAD_VOLUME_MOUNT, (*where, "subPath"),
                      f"subPath {sub!r} must be relative and must not contain '..'")


def namespace_findings(body: Mapping[str, Any]) -> list[Finding]:
    """A Namespace's labels that Istio reads to decide on injection: not applied."""
    labels = as_mapping(as_mapping(body.get("metadata")).get("labels"))
    out = []
    injection = labels.get("istio-injection")
    if isinstance(injection, str) and injection.lower() in _OFF:
        out.append(Finding(codes.INJECTION_NOT_APPLIED,
                           ("metadata", "labels", "istio-injection"),
                           "istio-injection=disabled is not applied: pods in this namespace "
                           "run with a sidecar, as every meshpilot pod does"))
    if labels.get("istio.io/dataplane-mode") == "ambient":
        out.append(Finding(codes.INJECTION_NOT_APPLIED,
                           ("metadata", "labels", "istio.io/dataplane-mode"),
                           "ambient mode is not applied: pods in this namespace run with a "
                           "sidecar"))
    return out

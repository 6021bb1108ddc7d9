"""Deployments across objects: a ConfigMap or Secret a pod template reads must exist.

A non-optional reference (``configMapKeyRef``, ``secretKeyRef``, ``envFrom``, a
``configMap`` or ``secret`` volume) to an object that is not in the Deployment's
namespace is a warning (MP2019), not an error: the pods are created and wait, as
Kubernetes' do (CreateContainerConfigError), and start as soon as it is applied. Apply
them in one file and no warning is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.finding import Path
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]
Reference = tuple[Path, str, str]  # (where, kind, name)


def check_pod_config(objects: list[StateObject], report: Report, found: Findings) -> None:
    deployments = [o for o in objects if o.key.kind == "Deployment" and report(o)]
    if not deployments:
        return
    have = {(o.key.kind, o.namespace, o.key.name) for o in objects
            if not o.key.group and o.key.kind in ("ConfigMap", "Secret")}
    for dep in deployments:
        pod = as_mapping(as_mapping(dep.spec.get("template")).get("spec"))
        for path, kind, name in config_references(pod, ("spec", "template", "spec")):
            if (kind, dep.namespace, name) not in have:
                found.add(codes.POD_CONFIG_MISSING, dep, path,
                          f"no {kind} {dep.namespace}/{name}: the pods wait, not started "
                          f"(CreateContainerConfigError), until it is applied; mark the "
                          "reference optional: true if they may run without it")


def config_references(pod: Mapping[str, Any], path: Path) -> Iterator[Reference]:
    for i, c in enumerate(as_list(pod.get("containers"))):
        yield from _container_references(as_mapping(c), (*path, "containers", i))
    for i, v in enumerate(as_list(pod.get("volumes"))):
        volume, where = as_mapping(v), (*path, "volumes", i)
        for field, kind, name_field in (("configMap", "ConfigMap", "name"),
                                        ("secret", "Secret", "secretName")):
            source = as_mapping(volume.get(field))
            if source and not source.get("optional") and isinstance(source.get(name_field),
                                                                     str):
                yield (*where, field, name_field), kind, source[name_field]


def _container_references(c: Mapping[str, Any], path: Path) -> Iterator[Reference]:
    for i, var in enumerate(as_list(c.get("env"))):
        source = as_mapping(as_mapping(var).get("valueFrom"))
        for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            ref = as_mapping(source.get(field))
            if ref and not ref.get("optional") and isinstance(ref.get("name"), str):
                yield (*path, "env", i, "valueFrom", field, "name"), kind, ref["name"]
    for i, src in enumerate(as_list(c.get("envFrom"))):
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            ref = as_mapping(as_mapping(src).get(field))
            if ref and not ref.get("optional") and isinstance(ref.get("name"), str):
                yield (*path, "envFrom", i, field, "name"), kind, ref["name"]

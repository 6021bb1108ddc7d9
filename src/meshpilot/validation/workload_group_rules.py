"""WorkloadGroup and auto-registered WorkloadEntry rules: what a joined host acts on.

A host that joins a group (``meshpilot host join``) runs a sidecar of the mesh, so its
WorkloadEntry is reached over mutual TLS as the group's ``serviceAccount``: unlike a
hand-written entry (a process with no sidecar, whose ``serviceAccount`` is refused, see
:mod:`meshpilot.validation.unapplied_fields`), the identity is applied. An entry says it
was registered that way with Istio's annotation ``istio.io/autoRegistrationGroup``.

What the agent does not do is said at apply: a ``grpc`` probe is refused (MP0065; the
agent runs httpGet, tcpSocket and exec). The template's ``locality`` and ``network`` are
the entry's, and the joined sidecar's own (see :mod:`meshpilot.mesh.networks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meshpilot.api.workload_group import AUTO_REGISTRATION_ANNOTATION
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.shapes import as_mapping
from meshpilot.validation.state_object import Findings, StateObject
from meshpilot.validation.unapplied_fields import WORKLOAD_ENTRY, findings_of, row

WORKLOAD_GROUP = (
    row("spec", "probe", "grpc", code=codes.PROBE_NOT_RUN,
        why="a grpc probe is not run by the host agent, so readiness would never be "
            "checked; use httpGet, tcpSocket or exec"),
)

_AUTO_REGISTERED_ENTRY = tuple(r for r in WORKLOAD_ENTRY
                               if r.code is not codes.UNAPPLIED_SECURITY_FIELD)
"""An auto-registered entry's rows: its identity is applied (it has a sidecar)."""


def auto_registered(body: Mapping[str, Any]) -> bool:
    annotations = as_mapping(as_mapping(body.get("metadata")).get("annotations"))
    return bool(annotations.get(AUTO_REGISTRATION_ANNOTATION))


def workload_group_findings(body: Mapping[str, Any]) -> list[Finding]:
    return findings_of(WORKLOAD_GROUP, body)


def workload_entry_findings(body: Mapping[str, Any]) -> list[Finding]:
    """A hand-written entry gets every WorkloadEntry row; an auto-registered one not the
    refusals that exist because such an entry has no sidecar."""
    return findings_of(_AUTO_REGISTERED_ENTRY if auto_registered(body) else WORKLOAD_ENTRY,
                       body)


def check_members(objects: list[StateObject], report: Callable[[StateObject], bool],
                  found: Findings) -> None:
    """An auto-registered entry whose group is not there (MP2043): the control plane
    keeps it healthy only while a joined host reports for it and deletes it after the
    grace period, so one written by hand would silently never serve."""
    groups = {(o.namespace, o.key.name) for o in objects if o.key.kind == "WorkloadGroup"}
    for obj in objects:
        if obj.key.kind != "WorkloadEntry" or not report(obj) or not auto_registered(obj.body):
            continue
        group = str(as_mapping(as_mapping(obj.body.get("metadata")).get("annotations"))
                    .get(AUTO_REGISTRATION_ANNOTATION))
        if (obj.namespace, group) not in groups:
            found.add(codes.MEMBER_WITHOUT_GROUP, obj,
                      ("metadata", "annotations", AUTO_REGISTRATION_ANNOTATION),
                      f"no WorkloadGroup {obj.namespace}/{group}: this entry is an endpoint "
                      "only while a host that joined reports for it, and is deleted after "
                      "the grace period when none does; apply the group and join hosts "
                      "with `meshpilot host join`, or remove the annotation")

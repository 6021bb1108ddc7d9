"""``kubectl get``'s columns: the list (or one object) as a meta.k8s.io/v1 Table.

kubectl asks for a Table in its Accept header and prints the server's columns, so
the columns users know from Istio's, Flagger's and Kubernetes' own printers come from
here: VirtualService GATEWAYS/HOSTS/AGE, Canary STATUS/WEIGHT/LASTTRANSITIONTIME,
Deployment READY/UP-TO-DATE/AVAILABLE/AGE, Pod READY/STATUS/RESTARTS/AGE/IP, and
NAME/AGE for any other kind. Cells are
computed from the object as served (a Deployment's ``status`` filled in from the
runtime by the caller); a column whose field is absent shows an empty cell.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from starlette.requests import Request

Body = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    name: str
    description: str
    cell: Callable[[Body, datetime], Any]
    type: str = "string"
    format: str = ""
    priority: int = 0  # 1: shown with -o wide only

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


def wants_table(request: Request) -> bool:
    """Whether the Accept header asks for a meta.k8s.io Table (kubectl get does)."""
    for part in request.headers.get("accept", "").split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip()
                  for p in part.split(";")[1:]}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return True
    return False


def _field(*path: str) -> Callable[[Body], Any]:
    def get(body: Body) -> Any:
        value: Any = body
        for name in path:
            value = value.get(name) if isinstance(value, Mapping) else None
        return value
    return get


def _shown(value: Any) -> Any:
    """A cell: scalars as they are, lists and maps as compact JSON (as kubectl shows a
    custom resource's list column), absent as empty."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def field_column(name: str, description: str, *path: str, type: str = "string",
                 priority: int = 0) -> Column:
    get = _field(*path)
    return Column(name, description, lambda body, _now: _shown(get(body)), type=type,
                  priority=priority)


def age(seconds: float) -> str:
    """A duration as kubectl shows ages: the two largest units while they say something
    (``45s``, ``3m20s``, ``5h12m``, ``3d4h``), one unit for long ones (``120d``)."""
    s = max(int(seconds), 0)
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _since(stamp: Any, now: datetime) -> str:
    if not isinstance(stamp, str) or not stamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return age((now - then).total_seconds())


NAME = Column("Name", "the object's name", lambda body, _now: _field("metadata", "name")(body),
              format="name")
AGE = Column("Age", "time since the object was created",
             lambda body, now: _since(_field("metadata", "creationTimestamp")(body), now),
             type="date")


def _ready(body: Body, _now: datetime) -> str:
    status = body.get("status") or {}
    return f"{status.get('readyReplicas', 0)}/{_field('spec', 'replicas')(body) or 0}"


def _count(name: str) -> Callable[[Body, datetime], int]:
    return lambda body, _now: int((body.get("status") or {}).get(name) or 0)


def _ports(body: Body, _now: datetime) -> str:
    ports = _field("spec", "ports")(body) or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports
                    if isinstance(p, Mapping)) or "<none>"


def _pod_ready(body: Body, _now: datetime) -> str:
    """Ready containers / containers: the app and its sidecar are one unit here."""
    return "1/1" if (body.get("status") or {}).get("ready") else "0/1"


def _owner(body: Body, _now: datetime) -> str:
    owners = (body.get("metadata") or {}).get("ownerReferences") or [{}]
    return str(owners[0].get("name", "")) if isinstance(owners[0], Mapping) else ""


def _pod_age(body: Body, now: datetime) -> str:
    started = (body.get("status") or {}).get("startedAt")
    if not isinstance(started, int | float):
        return "<unknown>"
    return age(now.timestamp() - started)
def _reference(body: Body, _now: datetime) -> str:
    ref = _field("spec", "scaleTargetRef")(body) or {}
    return f"{ref.get('kind')}/{ref.get('name')}"


def _target_of(metric: Mapping[str, Any]) -> tuple[str, str, str]:
    """(metric key, wanted, prefix) of one spec.metrics entry, as kubectl prints it."""
    kind = str(metric.get("type", ""))
    source = metric.get(kind[:1].lower() + kind[1:]) or {}
    target = source.get("target") or {}
    name = source.get("name") or (source.get("metric") or {}).get("name", "")
    if target.get("type") == "Utilization":
        return f"{kind}/{name}", f"{target.get('averageUtilization')}%", f"{name}: "
    wanted = target.get("averageValue", target.get("value"))
    return f"{kind}/{name}", str(wanted), f"{name}: " if kind == "Resource" else ""


def _current_of(metric: Mapping[str, Any]) -> tuple[str, str]:
    kind = str(metric.get("type", ""))
    source = metric.get(kind[:1].lower() + kind[1:]) or {}
    name = source.get("name") or (source.get("metric") or {}).get("name", "")
    current = source.get("current") or {}
    if "averageUtilization" in current:
        return f"{kind}/{name}", f"{current['averageUtilization']}%"
    return f"{kind}/{name}", str(current.get("averageValue", current.get("value", "")))


def _targets(body: Body, _now: datetime) -> str:
    """``cpu: 12%/50%`` per metric, ``<unknown>`` before the first measurement."""
    current = dict(_current_of(m) for m in
                   (_field("status", "currentMetrics")(body) or []) if isinstance(m, Mapping))
    cells = []
    for metric in _field("spec", "metrics")(body) or []:
        if isinstance(metric, Mapping):
            key, wanted, prefix = _target_of(metric)
            cells.append(f"{prefix}{current.get(key) or '<unknown>'}/{wanted}")
    return ", ".join(cells) or "<none>"


COLUMNS: Mapping[str, tuple[Column, ...]] = MappingProxyType({
    "VirtualService": (
        NAME, field_column("Gateways", "the gateways the routes apply to", "spec", "gateways"),
        field_column("Hosts", "the destination hosts", "spec", "hosts"), AGE),
    "DestinationRule": (NAME, field_column("Host", "the service it applies to",
                                           "spec", "host"), AGE),
    "ServiceEntry": (
        NAME, field_column("Hosts", "the hosts it adds", "spec", "hosts"),
        field_column("Location", "inside or outside the mesh", "spec", "location"),
        field_column("Resolution", "how endpoints are found", "spec", "resolution"), AGE),
    "PeerAuthentication": (NAME, field_column("Mode", "the mTLS mode", "spec", "mtls", "mode"),
                           AGE),
    "AuthorizationPolicy": (NAME, field_column("Action", "ALLOW, DENY, AUDIT or CUSTOM",
                                               "spec", "action"), AGE),
    "Canary": (
        NAME, field_column("Status", "the rollout's phase", "status", "phase"),
        field_column("Weight", "the canary's traffic weight", "status", "canaryWeight",
                     type="integer"),
        field_column("FailedChecks", "failed checks in this rollout", "status",
                     "failedChecks", type="integer", priority=1),
        field_column("Interval", "time between steps", "spec", "analysis", "interval",
                     priority=1),
        field_column("StepWeight", "weight added each step", "spec", "analysis",
                     "stepWeight", type="integer", priority=1),
        field_column("LastTransitionTime", "when the phase last changed", "status",
                     "lastTransitionTime")),
    "Deployment": (
        NAME, Column("Ready", "ready pods / wanted replicas", _ready),
        Column("Up-to-date", "pods of the current template", _count("updatedReplicas"),
               type="integer"),
        Column("Available", "ready pods", _count("availableReplicas"), type="integer"), AGE),
    "Service": (NAME, Column("Port(s)", "the ports it serves", _ports), AGE),
    "Pod": (
        NAME, Column("Ready", "ready containers / containers", _pod_ready),
        field_column("Status", "the pod's phase", "status", "phase"),
        field_column("Restarts", "restarts of its app", "status", "restartCount",
                     type="integer"),
        Column("Age", "time since its processes started", _pod_age, type="date"),
        field_column("IP", "the pod's address", "status", "podIP", priority=1),
        field_column("Node", "the node it runs on (localhost: the control plane's host)",
                     "spec", "nodeName", priority=1),
        Column("Deployment", "the Deployment it belongs to", _owner, priority=1)),
    "HorizontalPodAutoscaler": (
        NAME, Column("Reference", "the scaled object", _reference),
        Column("Targets", "current/target of each metric", _targets),
        field_column("MinPods", "minReplicas", "spec", "minReplicas", type="integer"),
        field_column("MaxPods", "maxReplicas", "spec", "maxReplicas", type="integer"),
        Column("Replicas", "replicas at the last sync", _count("currentReplicas"),
               type="integer"), AGE),
})


def _row(body: Body, columns: tuple[Column, ...], now: datetime) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    return {"cells": [c.cell(body, now) for c in columns],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": metadata}}


def table(kind: str, objects: Iterable[Body], resource_version: str,
          now: datetime | None = None) -> dict[str, Any]:
    """The Table of ``objects`` (all of kind ``kind``) with that kind's columns; each row
    carries the object's metadata, which kubectl reads for -A's NAMESPACE column."""
    columns = COLUMNS.get(kind, (NAME, AGE))
    when = now or datetime.now(UTC)
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [c.definition() for c in columns],
        "rows": [_row(body, columns, when) for body in objects],
    }

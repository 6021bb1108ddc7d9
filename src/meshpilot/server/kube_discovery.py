"""Kubernetes' discovery documents, so ``kubectl`` finds meshpilot's kinds by their
plural, singular, short names (``vs``, ``dr``, ``canary``, ``deploy``) and categories.

kubectl 1.32 asks first for the aggregated form (one ``APIGroupDiscoveryList``) and,
when the answer is plain JSON, falls back to the per-group documents served here:
``/api`` (APIVersions), ``/apis`` (APIGroupList), then one APIResourceList per
group-version. Everything is derived from :data:`meshpilot.api.kinds.KINDS`, the one
table of what meshpilot serves, so discovery cannot list a kind the API refuses.
"""

from __future__ import annotations

from typing import Any

from meshpilot.api.kinds import KINDS, KindInfo
from meshpilot.server.kube_subresources import scalable

# What every kind supports at its paths; no deletecollection (there is no bulk delete
# by label selector).
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")

# The Kubernetes release whose API shapes meshpilot follows; kubectl warns when its own
# version is more than one minor release away from this.
KUBE_MAJOR = "1"
KUBE_MINOR = "32"


def kube_version(meshpilot_version: str) -> dict[str, str]:
    """The fields of Kubernetes' version.Info that kubectl reads."""
    return {
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": f"v{KUBE_MAJOR}.{KUBE_MINOR}.0+meshpilot.{meshpilot_version}",
        "platform": "linux/amd64",
    }


def _group_versions() -> dict[str, list[str]]:
    """Group name → its versions, the preferred (newest) last; "" is the core group."""
    found: dict[str, list[str]] = {}
    for info in KINDS:
        versions = found.setdefault(info.group, [])
        versions += [v for v in info.versions if v not in versions]
    return found


def api_versions() -> dict[str, Any]:
    """``/api``: the core group's versions."""
    return {"kind": "APIVersions", "versions": _group_versions()[""]}


def api_group_list() -> dict[str, Any]:
    """``/apis``: every named group with its versions, the preferred one first."""
    groups = []
    for name, versions in _group_versions().items():
        if not name:
            continue
        listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in reversed(versions)]
        groups.append({"name": name, "versions": listed, "preferredVersion": listed[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _resource(info: KindInfo) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "name": info.plural,
        "singularName": info.kind.lower(),
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": list(VERBS),
    }
    if info.short_names:
        resource["shortNames"] = list(info.short_names)
    if info.categories:
        resource["categories"] = list(info.categories)
    return resource


def _subresources(info: KindInfo) -> list[dict[str, Any]]:
    """``{plural}/status`` (read-only: meshpilot writes status) for every kind, and
    ``{plural}/scale`` (an autoscaling/v1 Scale) for the kinds with a replica count."""
    found = [{"name": f"{info.plural}/status", "singularName": "", "kind": info.kind,
              "namespaced": info.namespaced, "verbs": ["get"]}]
    if scalable(info.kind, info.group):
        found.append({"name": f"{info.plural}/scale", "singularName": "", "kind": "Scale",
                      "group": "autoscaling", "version": "v1",
                      "namespaced": info.namespaced, "verbs": ["get", "patch", "update"]})
    return found


# Core resources served from the runtime, not the store: readable, never written.
_RUNTIME_RESOURCES: tuple[dict[str, Any], ...] = (
    {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
     "verbs": ["get", "list"], "shortNames": ["po"], "categories": ["all"]},
    {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod",
     "verbs": ["get"]},
)


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``/apis/{group}/{version}`` (``/api/v1`` for ``group`` ""), or None when meshpilot
    serves no kind at that group-version."""
    kinds = [k for k in KINDS if k.group == group and version in k.versions]
    if not kinds:
        return None
    found = [r for k in kinds for r in (_resource(k), *_subresources(k))]
    if (group, version) == ("", "v1"):
        found += [dict(r) for r in _RUNTIME_RESOURCES]
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": found}

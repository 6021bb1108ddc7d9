"""Kubernetes' discovery documents, so ``kubectl`` finds meshpilot's kinds by their
plural, singular, short names (``vs``, ``dr``, ``canary``, ``deploy``) and categories.

kubectl 1.32 asks first for the aggregated form (one ``APIGroupDiscoveryList``) and,
when the answer is plain JSON, falls back to the per-group documents served here:
``/api`` (APIVersions), ``/apis`` (APIGroupList), then one APIResourceList per
group-version. Everything is derived from :data:`meshpilot.api.kinds.KINDS`, the one
table of what meshpilot serves, so discovery cannot list a kind the API refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
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
_RUNTIME_RESOURCES: tuple[Mapping[str, Any], ...] = (
    MappingProxyType({"name": "pods", "singularName": "pod", "namespaced": True,
                      "kind": "Pod", "verbs": ("get", "list"), "shortNames": ("po",),
                      "categories": ("all",)}),
    MappingProxyType({"name": "pods/log", "singularName": "", "namespaced": True,
                      "kind": "Pod", "verbs": ("get",)}),
)


def _runtime_resources() -> list[dict[str, Any]]:
    """The runtime's resources as JSON (lists where the table holds tuples)."""
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()}
            for r in _RUNTIME_RESOURCES]


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``/apis/{group}/{version}`` (``/api/v1`` for ``group`` ""), or None when meshpilot
    serves no kind at that group-version."""
    kinds = [k for k in KINDS if k.group == group and version in k.versions]
    if not kinds:
        return None
    found = [r for k in kinds for r in (_resource(k), *_subresources(k))]
    if (group, version) == ("", "v1"):
        found += _runtime_resources()
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": found}


# --- aggregated discovery (apidiscovery.k8s.io/v2) --------------------------------------

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> bool:
    """Whether an Accept header asks for the aggregated form (kubectl 1.32 asks for it
    first, with the per-group documents as its fallback)."""
    for part in accept.split(","):
        params = {p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip()
                  for p in part.split(";")[1:]}
        if (params.get("g"), params.get("v"), params.get("as")) == (
                "apidiscovery.k8s.io", "v2", "APIGroupDiscoveryList"):
            return True
    return False


def _scope(namespaced: bool) -> str:
    return "Namespaced" if namespaced else "Cluster"


def _aggregated_resource(info: KindInfo, version: str) -> dict[str, Any]:
    """One resource of the aggregated form: the same facts as its APIResourceList entry,
    its subresources nested."""
    plain = _resource(info)
    gvk = {"group": info.group, "version": version, "kind": info.kind}
    resource: dict[str, Any] = {
        "resource": info.plural, "responseKind": gvk, "scope": _scope(info.namespaced),
        "singularResource": plain["singularName"], "verbs": plain["verbs"]}
    for field in ("shortNames", "categories"):
        if field in plain:
            resource[field] = plain[field]
    subresources = []
    for sub in _subresources(info):
        kind = ({"group": sub["group"], "version": sub["version"], "kind": sub["kind"]}
                if "group" in sub else gvk)
        subresources.append({"subresource": sub["name"].split("/", 1)[1],
                             "responseKind": kind, "verbs": sub["verbs"]})
    resource["subresources"] = subresources
    return resource


def _runtime_resource(plain: dict[str, Any]) -> dict[str, Any]:
    return {"resource": plain["name"], "scope": _scope(plain["namespaced"]),
            "responseKind": {"group": "", "version": "v1", "kind": plain["kind"]},
            "singularResource": plain["singularName"], "verbs": plain["verbs"],
            "shortNames": plain.get("shortNames", []),
            "categories": plain.get("categories", []),
            "subresources": [{"subresource": "log", "verbs": ["get"],
                              "responseKind": {"group": "", "version": "v1",
                                               "kind": "Pod"}}]}


def aggregated(core: bool) -> dict[str, Any]:
    """``/api`` (``core``) or ``/apis`` as one APIGroupDiscoveryList: every group with
    every version (the preferred first) and its resources."""
    items = []
    for name, versions in _group_versions().items():
        if (name == "") != core:
            continue
        listed = []
        for version in reversed(versions):
            resources = [_aggregated_resource(k, version) for k in KINDS
                         if k.group == name and version in k.versions]
            if core and version == "v1":
                resources += [_runtime_resource(r) for r in _runtime_resources()
                              if "/" not in r["name"]]
            listed.append({"version": version, "resources": resources,
                           "freshness": "Current"})
        items.append({"metadata": {"name": name, "creationTimestamp": None},
                      "versions": listed})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {}, "items": items}

"""The registry of kinds meshpilot accepts: group, versions, plural, model.

One table drives the loader's apiVersion checks, the API's Kubernetes-style paths and
the CLI's kind names (``vs``, ``virtualservice``, ``virtualservices`` all work).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType

from meshpilot.api.base import Resource


@dataclass(frozen=True)
class KindInfo:
    group: str  # "" for the Kubernetes core group
    kind: str
    plural: str
    versions: tuple[str, ...]  # accepted apiVersion versions; the last is the preferred one
    short_names: tuple[str, ...]
    model_path: str  # "module:Class", imported on first use
    namespaced: bool = True
    # the groups ``kubectl get CATEGORY`` lists it under: Istio's, Flagger's and
    # Kubernetes' own, so ``kubectl get istio-io`` or ``kubectl get all`` mean the same
    categories: tuple[str, ...] = ()

    @property
    def preferred_version(self) -> str:
        return self.versions[-1]

    def api_version(self, version: str | None = None) -> str:
        v = version or self.preferred_version
        return f"{self.group}/{v}" if self.group else v

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(self.api_version(v) for v in self.versions)

    @property
    def model(self) -> type[Resource]:
        """The model class (its module imported on first use: the import system keeps it)."""
        return _import(self.model_path)

    def collection_path(self, namespace: str | None, version: str | None = None) -> str:
        """Kubernetes-style path: /apis/{group}/{version}/namespaces/{ns}/{plural}
        (without the namespace part for a cluster-scoped kind)."""
        v = version or self.preferred_version
        root = f"/apis/{self.group}/{v}" if self.group else f"/api/{v}"
        if namespace is None or not self.namespaced:
            return f"{root}/{self.plural}"
        return f"{root}/namespaces/{namespace}/{self.plural}"

    def object_path(self, namespace: str, name: str, version: str | None = None) -> str:
        return f"{self.collection_path(namespace, version)}/{name}"

    def scope(self, namespace: str | None) -> str:
        """The namespace an object of this kind is stored under: ``namespace`` (or
        ``default``) for a namespaced kind, "" for a cluster-scoped one (Namespace),
        whatever namespace a command line or a path gave."""
        if not self.namespaced:
            return ""
        return namespace or "default"


def _import(path: str) -> type[Resource]:
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
FLAGGER = "flagger.app"
ARGO = "argoproj.io"
_NET_VERSIONS = ("v1alpha3", "v1beta1", "v1")
_SEC_VERSIONS = ("v1beta1", "v1")
_NET_CATEGORIES = ("istio-io", "networking-istio-io")
_SEC_CATEGORIES = ("istio-io", "security-istio-io")
_ALL = ("all",)

KINDS: tuple[KindInfo, ...] = (
    KindInfo(NETWORKING, "VirtualService", "virtualservices", _NET_VERSIONS, ("vs",),
             "meshpilot.api.networking:VirtualService", categories=_NET_CATEGORIES),
    KindInfo(NETWORKING, "DestinationRule", "destinationrules", _NET_VERSIONS, ("dr",),
             "meshpilot.api.networking:DestinationRule", categories=_NET_CATEGORIES),
    KindInfo(NETWORKING, "Gateway", "gateways", _NET_VERSIONS, ("gw",),
             "meshpilot.api.networking:Gateway", categories=_NET_CATEGORIES),
    KindInfo(NETWORKING, "ServiceEntry", "serviceentries", _NET_VERSIONS, ("se",),
             "meshpilot.api.networking:ServiceEntry", categories=_NET_CATEGORIES),
    KindInfo(NETWORKING, "WorkloadEntry", "workloadentries", _NET_VERSIONS, ("we",),
             "meshpilot.api.networking:WorkloadEntry", categories=_NET_CATEGORIES),
    KindInfo(NETWORKING, "WorkloadGroup", "workloadgroups", _NET_VERSIONS, ("wg",),
             "meshpilot.api.workload_group:WorkloadGroup", categories=_NET_CATEGORIES),
    KindInfo(NETWORKING, "Sidecar", "sidecars", _NET_VERSIONS, (),
             "meshpilot.api.networking:Sidecar", categories=_NET_CATEGORIES),
    KindInfo(NETWORKING, "EnvoyFilter", "envoyfilters", ("v1alpha3",), (),
             "meshpilot.api.envoy_filter:EnvoyFilter", categories=_NET_CATEGORIES),
    KindInfo(SECURITY, "PeerAuthentication", "peerauthentications", _SEC_VERSIONS, ("pa",),
             "meshpilot.api.security:PeerAuthentication", categories=_SEC_CATEGORIES),
    KindInfo(SECURITY, "AuthorizationPolicy", "authorizationpolicies", _SEC_VERSIONS, ("ap",),
             "meshpilot.api.security:AuthorizationPolicy", categories=_SEC_CATEGORIES),
    KindInfo(SECURITY, "RequestAuthentication", "requestauthentications", _SEC_VERSIONS,
             ("ra",), "meshpilot.api.request_authentication:RequestAuthentication",
             categories=_SEC_CATEGORIES),
    KindInfo("", "Service", "services", ("v1",), ("svc",), "meshpilot.api.kubernetes:Service",
             categories=_ALL),
    KindInfo("", "Secret", "secrets", ("v1",), (), "meshpilot.api.credentials:Secret"),
    KindInfo("", "ServiceAccount", "serviceaccounts", ("v1",), ("sa",),
             "meshpilot.api.credentials:ServiceAccount"),
    KindInfo("", "ConfigMap", "configmaps", ("v1",), ("cm",), "meshpilot.api.config:ConfigMap"),
    KindInfo("", "Namespace", "namespaces", ("v1",), ("ns",), "meshpilot.api.config:Namespace",
             namespaced=False),
    KindInfo("apps", "Deployment", "deployments", ("v1",), ("deploy",),
             "meshpilot.api.kubernetes:Deployment", categories=_ALL),
    KindInfo("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
             ("v2beta2", "v2"), ("hpa",),
             "meshpilot.api.autoscaling:HorizontalPodAutoscaler", categories=_ALL),
    KindInfo(FLAGGER, "Canary", "canaries", ("v1beta1",), ("canary",),
             "meshpilot.api.flagger:Canary", categories=_ALL),
    KindInfo(FLAGGER, "MetricTemplate", "metrictemplates", ("v1beta1",), ("mt",),
             "meshpilot.api.flagger:MetricTemplate"),
    KindInfo(FLAGGER, "AlertProvider", "alertproviders", ("v1beta1",), (),
             "meshpilot.api.flagger_alerts:AlertProvider"),
    KindInfo(ARGO, "Rollout", "rollouts", ("v1alpha1",), ("ro",),
             "meshpilot.api.argo:Rollout"),
    KindInfo(ARGO, "AnalysisTemplate", "analysistemplates", ("v1alpha1",), (),
             "meshpilot.api.argo_analysis:AnalysisTemplate"),
    KindInfo(ARGO, "ClusterAnalysisTemplate", "clusteranalysistemplates", ("v1alpha1",), (),
             "meshpilot.api.argo_analysis:ClusterAnalysisTemplate", namespaced=False),
    KindInfo(ARGO, "AnalysisRun", "analysisruns", ("v1alpha1",), (),
             "meshpilot.api.argo_analysis:AnalysisRun"),
)

_BY_KIND: MappingProxyType[str, KindInfo] = MappingProxyType({k.kind: k for k in KINDS})


def _names(info: KindInfo) -> tuple[str, ...]:
    """Every name the CLI accepts for a kind."""
    qualified = f"{info.plural}.{info.group}" if info.group else info.plural
    return (info.kind.lower(), info.plural, *info.short_names, qualified)


_BY_NAME: MappingProxyType[str, KindInfo] = MappingProxyType(
    {name: k for k in KINDS for name in _names(k)})


class UnknownKind(LookupError):
    """A kind or apiVersion meshpilot does not serve; the message lists what is valid."""


def all_api_versions() -> list[str]:
    return sorted({v for k in KINDS for v in k.api_versions})


def by_kind(kind: str) -> KindInfo:
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise UnknownKind(_unknown_kind_message(kind)) from None


def resolve_type(api_version: str, kind: str) -> KindInfo:
    """The KindInfo for a document's apiVersion and kind, or UnknownKind saying why."""
    info = by_kind(kind)
    if api_version not in info.api_versions:
        raise UnknownKind(
            f"apiVersion {api_version!r} is not served for kind {kind}; "
            f"use one of: {', '.join(info.api_versions)}"
        )
    return info


def by_name(name: str) -> KindInfo:
    """Resolve a CLI-style kind name: ``vs``, ``virtualservice``, ``VirtualService``,
    ``virtualservices`` or ``virtualservices.networking.istio.io``."""
    info = _BY_NAME.get(name.lower())
    if info is None:
        raise UnknownKind(_unknown_kind_message(name))
    return info


def by_path(group: str, version: str, plural: str) -> KindInfo:
    for info in KINDS:
        if info.group == group and info.plural == plural:
            if version not in info.versions:
                raise UnknownKind(
                    f"version {version!r} is not served for {plural}; "
                    f"use one of: {', '.join(info.versions)}"
                )
            return info
    raise UnknownKind(f"no resource {plural!r} in group {group or 'core'!r}")


def _unknown_kind_message(kind: str) -> str:
    close = difflib.get_close_matches(kind.lower(), list(_BY_NAME), n=1)
    hint = f" (did you mean {_BY_NAME[close[0]].kind}?)" if close else ""
    return f"unknown kind {kind!r}{hint}; meshpilot serves: {', '.join(k.kind for k in KINDS)}"

"""The objects tests build again and again, built in one place.

Bodies are plain dicts, as the API, the store and the validation take them (as if parsed
from YAML); each builder has the defaults most tests want, so a test states only what it
is about. ``to_yaml`` turns bodies into the text ``meshpilot apply`` reads. Beside the
bodies: the key the store files a body under, the typed ``Named`` rules the xDS
translation reads, a sidecar's ``ProxyNode`` and a hand-written static Envoy config.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import by_kind
from meshpilot.mesh.model import InboundPort, Named, ProxyNode
from meshpilot.proxy.bootstrap import node_id
from meshpilot.store import Put

NETWORKING = "networking.istio.io"
# The demo workload (``python -m meshpilot.demoapp``) as a container command.
DEMO_APP = [sys.executable, "-m", "meshpilot.demoapp"]

Body = dict[str, Any]


def metadata(name: str, namespace: str | None = "default", **fields: Any) -> Body:
    """``metadata`` with ``name``, ``namespace`` (left out when None) and any other field."""
    meta: Body = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update(fields)
    return meta


# --- Kubernetes -------------------------------------------------------------------------


def deployment(
    name: str, *, containers: list[Body], labels: Mapping[str, str],
    selector: Mapping[str, str] | None = None, replicas: int = 1,
    namespace: str | None = "default", pod_spec: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Body:
    """A Deployment whose pods carry ``labels`` (selected by ``selector``, all of
    ``labels`` when not given); ``pod_spec`` adds fields beside the containers."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, namespace),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(selector if selector is not None else labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": containers, **(pod_spec or {})},
            },
            **spec,
        },
    }


def demo_app_container(version: str, args: str = "", *, port: int = 8080) -> Body:
    """The demo app answering as ``version``, ready once /healthz answers.

    ``args`` are more of its flags, split at white space (``--error-rate 0.3``).
    """
    return {
        "name": "app",
        "command": list(DEMO_APP),
        "args": ["--version", version, *args.split()],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
    }


def demo_deployment(
    name: str, version: str, *, app: str = "myapp", replicas: int = 1, args: str = "",
    port: int = 8080, select_version: bool = True, namespace: str = "default",
) -> Body:
    """Pods ``app=<app>, version=<version>`` running the demo app.

    ``select_version=False`` selects by ``app`` only, so that a new ``version`` is a new
    template of the same Deployment (a new revision) rather than another Deployment.
    """
    labels = {"app": app, "version": version}
    return deployment(
        name, containers=[demo_app_container(version, args, port=port)], labels=labels,
        selector=labels if select_version else {"app": app}, replicas=replicas,
        namespace=namespace,
    )


def service(
    name: str, *, app: str | None = None, port: int = 80, target_port: str | int | None = None,
    namespace: str = "default",
) -> Body:
    """A Service selecting ``app`` (its own name when not given) on one port named http."""
    port_entry: Body = {"name": "http", "port": port}
    if target_port is not None:
        port_entry["targetPort"] = target_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace),
        "spec": {"selector": {"app": app or name}, "ports": [port_entry]},
    }


# --- Istio networking -------------------------------------------------------------------


def destination(host: str, subset: str | None = None, **fields: Any) -> Body:
    """One entry of a route: ``destination`` (with ``subset`` when given) and e.g. weight."""
    target: Body = {"host": host}
    if subset is not None:
        target["subset"] = subset
    return {"destination": target, **fields}


def route_to(host: str, subset: str | None = None, **fields: Any) -> Body:
    """An http rule sending everything to one destination; ``fields`` e.g. timeout."""
    return {"route": [destination(host, subset)], **fields}


def weighted(host: str, weights: Mapping[str, int]) -> Body:
    """An http rule splitting traffic over subsets by ``weights`` (subset → weight)."""
    return {"route": [destination(host, subset, weight=w) for subset, w in weights.items()]}


def virtual_service(
    name: str, *, hosts: list[str] | None = None, http: list[Body] | None = None,
    gateways: list[str] | None = None, namespace: str | None = "default",
    version: str = "v1", **meta: Any,
) -> Body:
    """A VirtualService for ``hosts`` (its own name when not given); ``http`` defaults to
    one rule routing to the first host; ``meta`` adds metadata (labels, resourceVersion)."""
    hosts = hosts or [name]
    spec: Body = {"hosts": hosts, "http": http if http is not None else [route_to(hosts[0])]}
    if gateways is not None:
        spec["gateways"] = gateways
    return {
        "apiVersion": f"{NETWORKING}/{version}",
        "kind": "VirtualService",
        "metadata": metadata(name, namespace, **meta),
        "spec": spec,
    }


def by_version(*versions: str) -> dict[str, dict[str, str]]:
    """Subsets named after versions, each selecting ``version: <name>``."""
    return {v: {"version": v} for v in versions}


def destination_rule(
    host: str, *, subsets: Mapping[str, Mapping[str, str]] | None = None,
    traffic_policy: Mapping[str, Any] | None = None, name: str | None = None,
    namespace: str | None = "default",
) -> Body:
    """A DestinationRule for ``host`` (named after it unless ``name``) with ``subsets``
    (subset name → labels) and an optional top-level ``traffic_policy``."""
    spec: Body = {"host": host}
    if traffic_policy is not None:
        spec["trafficPolicy"] = dict(traffic_policy)
    spec["subsets"] = [{"name": n, "labels": dict(lb)} for n, lb in (subsets or {}).items()]
    return {
        "apiVersion": f"{NETWORKING}/v1",
        "kind": "DestinationRule",
        "metadata": metadata(name or host, namespace),
        "spec": spec,
    }


def gateway(name: str, hosts: list[str], *, selector: Mapping[str, str] | None = None,
            port: int = 80) -> Body:
    """A Gateway serving plain HTTP for ``hosts`` on the ingress gateway."""
    return {
        "apiVersion": f"{NETWORKING}/v1",
        "kind": "Gateway",
        "metadata": metadata(name, None),
        "spec": {
            "selector": dict(selector or {"istio": "ingressgateway"}),
            "servers": [{"port": {"number": port, "name": "http", "protocol": "HTTP"},
                         "hosts": hosts}],
        },
    }


def workload_entry(name: str, *, port: int, labels: Mapping[str, str],
                   address: str = "127.0.0.1", namespace: str | None = "default") -> Body:
    """A WorkloadEntry: a process outside the mesh at ``address``, its http port ``port``."""
    return {
        "apiVersion": f"{NETWORKING}/v1",
        "kind": "WorkloadEntry",
        "metadata": metadata(name, namespace),
        "spec": {"address": address, "ports": {"http": port}, "labels": dict(labels)},
    }


# --- Flagger ----------------------------------------------------------------------------


def builtin_checks(interval: str) -> list[Body]:
    """Flagger's two built-in metric checks: success rate >= 99%, p99 duration <= 500 ms."""
    return [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": interval},
        {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": interval},
    ]


def canary(
    name: str, *, analysis: Mapping[str, Any], port: int, target_port: str | int | None = None,
    namespace: str = "default", annotations: Mapping[str, str] | None = None, **spec: Any,
) -> Body:
    """A Canary taking over the Deployment ``name``, served on ``port``; ``spec`` adds or
    replaces spec fields (progressDeadlineSeconds, skipAnalysis…)."""
    meta = metadata(name, namespace)
    if annotations:
        meta["annotations"] = dict(annotations)
    served: Body = {"port": port}
    if target_port is not None:
        served["targetPort"] = target_port
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": meta,
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": served,
            "analysis": dict(analysis),
            **spec,
        },
    }


# --- documents, keys and typed rules --------------------------------------------------


def to_yaml(*docs: Mapping[str, Any]) -> str:
    """Bodies as one multi-document YAML text, keys in the order they were built."""
    return "---\n".join(yaml.safe_dump(dict(d), sort_keys=False) for d in docs)


def from_yaml(text: str) -> Any:
    """One YAML document, indented or not (as written inside a test)."""
    return yaml.safe_load(textwrap.dedent(text))


def object_key(body: Mapping[str, Any]) -> ObjectKey:
    """The key the store files ``body`` under (namespace ``default`` when it has none)."""
    info = by_kind(body["kind"])
    meta = body["metadata"]
    return ObjectKey(info.group, info.kind, meta.get("namespace", "default"), meta["name"])


def stored(body: dict[str, Any], **put: Any) -> Put:
    """A store write of ``body`` under its own key; ``put`` e.g. expected_resource_version."""
    return Put(body, object_key(body), **put)


def keyed(docs: str | Iterable[dict[str, Any]]) -> list[tuple[ObjectKey, dict[str, Any]]]:
    """(key, body) pairs, as the store lists them, of bodies or of a multi-document YAML."""
    bodies = yaml.safe_load_all(docs) if isinstance(docs, str) else docs
    return [(object_key(b), b) for b in bodies if b]


def named(model: type[BaseModel], doc: Mapping[str, Any] | str) -> Named[Any]:
    """A body (or its YAML) validated as ``model`` and named as the mesh snapshot holds it."""
    obj: Any = model.model_validate(from_yaml(doc) if isinstance(doc, str) else doc)
    return Named(obj.metadata.namespace, obj.metadata.name, obj)


# --- the mesh model and Envoy -----------------------------------------------------------


def sidecar_node(
    pod: str, ip: str, *, labels: Mapping[str, str], namespace: str = "default",
    inbound: tuple[InboundPort, ...] = (), workload: str = "",
) -> ProxyNode:
    """The sidecar of ``pod`` at ``ip`` (of Deployment ``workload``, the pod's name if not
    given), with the Istio-style node id it sends."""
    return ProxyNode(id=node_id("sidecar", ip, pod, namespace), kind="sidecar",
                     namespace=namespace, ip=ip, workload=workload or pod, name=pod,
                     labels=dict(labels), inbound=inbound)


def static_envoy_config(
    listen_port: int, *, upstream_port: int | None = None, domains: list[str] | None = None,
    listener: str = "ingress", cluster: str = "backend", node: str = "static-test",
) -> dict[str, Any]:
    """A hand-written Envoy config without a control plane: one HTTP listener on
    ``listen_port`` routing ``domains`` (all when not given) to the static ``cluster``,
    whose one endpoint is ``upstream_port`` (no cluster yet when not given)."""
    clusters: list[Body] = []
    if upstream_port is not None:
        clusters.append(static_cluster(cluster, upstream_port))
    return {
        "node": {"id": node, "cluster": node},
        "static_resources": {
            "listeners": [{
                "name": listener,
                "address": {"socket_address": {"address": "127.0.0.1",
                                               "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": listener,
                        "route_config": {"name": listener, "virtual_hosts": [{
                            "name": cluster, "domains": domains or ["*"],
                            "routes": [{"match": {"prefix": "/"},
                                        "route": {"cluster": cluster}}],
                        }]},
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {
                                "@type": "type.googleapis.com/"
                                         "envoy.extensions.filters.http.router.v3.Router"},
                        }],
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    }


def static_cluster(name: str, port: int) -> Body:
    """A STATIC Envoy cluster whose one endpoint is 127.0.0.1:``port``."""
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}]},
    }


PODINFO_HPA = """\
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: podinfo
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  minReplicas: 2
  maxReplicas: 4
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 99
"""
"""The fields and values of Flagger's podinfo ``kustomize/podinfo/hpa.yaml`` in its
layout (its comments left out): the file a Flagger user applies with ``autoscalerRef``."""

"""Argo Rollouts objects for the end-to-end tests and benchmarks, built in one place.

Each follows Argo's own examples: the subset-level objects of
``examples/istio/istio-subset-split.yaml`` (a VirtualService ``NAME-vsvc`` whose route
``primary`` splits between the subsets ``stable`` and ``canary`` of the DestinationRule
``NAME-destrule``, and a canary Rollout whose ``trafficRouting.istio`` names them), the
Services of ``examples/rollout-bluegreen.yaml``, and the demo app as the pods. Bodies are
plain dicts with the defaults most tests want; a test states only what it is about.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from tests.builders import demo_app_container

Body = dict[str, Any]
ROLLOUTS = "argoproj.io/v1alpha1"
ISTIO = "networking.istio.io/v1beta1"


def pod_template(app: str, version: str, args: str = "") -> Body:
    """The demo app answering as ``version``, labelled ``app`` and ``version``."""
    return {"metadata": {"labels": {"app": app, "version": version}},
            "spec": {"containers": [demo_app_container(version, args)]}}


def subset_routing(name: str) -> Body:
    """``trafficRouting`` splitting route ``primary`` of ``NAME-vsvc`` between the
    ``stable`` and ``canary`` subsets of ``NAME-destrule``."""
    return {"istio": {
        "virtualService": {"name": f"{name}-vsvc", "routes": ["primary"]},
        "destinationRule": {"name": f"{name}-destrule", "canarySubsetName": "canary",
                            "stableSubsetName": "stable"}}}


def _rollout(name: str, strategy: Body, version: str | None, replicas: int,
             args: str, spec: Body) -> Body:
    body: Body = {"replicas": replicas, "selector": {"matchLabels": {"app": name}}}
    if version is not None:
        body["template"] = pod_template(name, version, args)
    body.update(spec)
    body["strategy"] = strategy
    return {"apiVersion": ROLLOUTS, "kind": "Rollout", "metadata": {"name": name},
            "spec": body}


def canary_rollout(name: str, version: str | None, steps: list[Body], *,
                   replicas: int = 2, args: str = "", spec: Body | None = None,
                   routing: Body | None = None, **canary: Any) -> Body:
    """A canary Rollout of the demo app at ``version`` (None: no template, as with
    ``workloadRef`` in ``spec``) with subset-level Istio routing (or ``routing``),
    ``steps`` and any other canary field."""
    strategy = {"canary": {"trafficRouting": routing or subset_routing(name),
                           "steps": copy.deepcopy(steps), **canary}}
    return _rollout(name, strategy, version, replicas, args, spec or {})


def blue_green_rollout(name: str, version: str, *, replicas: int = 2,
                       spec: Body | None = None, **blue_green: Any) -> Body:
    """A blue-green Rollout over ``NAME-active`` and ``NAME-preview``."""
    strategy = {"blueGreen": {"activeService": f"{name}-active",
                              "previewService": f"{name}-preview", **blue_green}}
    return _rollout(name, strategy, version, replicas, "", spec or {})


def workload_ref(deployment: str, scale_down: str | None = None) -> Body:
    """``spec.workloadRef`` naming a Deployment (Argo's "Migrating to Rollouts")."""
    ref: Body = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}
    if scale_down is not None:
        ref["scaleDown"] = scale_down
    return {"workloadRef": ref}


def virtual_service(name: str, other_routes: Iterable[Body] = ()) -> Body:
    """``NAME-vsvc``: ``other_routes`` first, then ``primary`` all to ``stable``."""
    return {"apiVersion": ISTIO, "kind": "VirtualService",
            "metadata": {"name": f"{name}-vsvc"},
            "spec": {"hosts": [name], "http": [*copy.deepcopy(list(other_routes)), {
                "name": "primary", "route": [
                    {"destination": {"host": name, "subset": "stable"}, "weight": 100},
                    {"destination": {"host": name, "subset": "canary"}, "weight": 0}]}]}}


def destination_rule(name: str, other_subsets: Iterable[Body] = ()) -> Body:
    """``NAME-destrule`` with the subsets ``stable`` and ``canary`` (and others)."""
    return {"apiVersion": ISTIO, "kind": "DestinationRule",
            "metadata": {"name": f"{name}-destrule"},
            "spec": {"host": name, "subsets": [
                {"name": "stable", "labels": {"app": name}},
                {"name": "canary", "labels": {"app": name}},
                *copy.deepcopy(list(other_subsets))]}}


def analysis_template(name: str, metrics: list[Body], args: Iterable[str] = ()) -> Body:
    """An AnalysisTemplate with those metrics and argument names."""
    spec: Body = {"metrics": copy.deepcopy(metrics)}
    names = list(args)
    if names:
        spec = {"args": [{"name": a} for a in names], **spec}
    return {"apiVersion": ROLLOUTS, "kind": "AnalysisTemplate", "metadata": {"name": name},
            "spec": spec}

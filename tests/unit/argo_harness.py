"""An Argo Rollout and its controller over in-memory fakes of the ports, stepped tick by
tick with a fake clock (as ``rollout_harness`` does for Canaries).

The objects are Argo's ``examples/istio/istio-subset-split.yaml``: a Service, a
VirtualService whose route ``primary`` splits between subsets ``stable`` and ``canary``,
a DestinationRule defining them, and a Rollout over two replicas, here with one more
unrelated route (``admin``, to another host) that no step may touch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tests.unit.delivery_fakes import FakeClock, InMemoryCluster

from meshpilot.api.argo import Rollout
from meshpilot.delivery.argo import ArgoController
from meshpilot.delivery.argo.workloads import pod_template_hash
from meshpilot.delivery.ports import WorkloadStatus

NS = "default"
NAME = "istio-subset-split"
VS = f"{NAME}-vsvc"
DR = f"{NAME}-destrule"
STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50},
                               {"pause": {"duration": "2s"}}]
ADMIN_ROUTE = {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
               "route": [{"destination": {"host": "admin"}, "weight": 100}]}


def template(version: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": NAME}},
            "spec": {"containers": [{"name": "app", "image": f"demo:{version}"}]}}


def rollout(version: str = "v1", steps: list[dict[str, Any]] | None = None,
            **canary: Any) -> dict[str, Any]:
    routing = canary.pop("trafficRouting", {"istio": {
        "virtualService": {"name": VS, "routes": ["primary"]},
        "destinationRule": {"name": DR, "canarySubsetName": "canary",
                            "stableSubsetName": "stable"}}})
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": NAME}},
                     "template": template(version),
                     "strategy": {"canary": {"steps": STEPS if steps is None else steps,
                                             "trafficRouting": routing, **canary}}}}


def virtual_service() -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": VS, "namespace": NS},
            "spec": {"hosts": [NAME], "http": [
                copy.deepcopy(ADMIN_ROUTE),
                {"name": "primary", "route": [
                    {"destination": {"host": NAME, "subset": "stable"}, "weight": 100},
                    {"destination": {"host": NAME, "subset": "canary"}, "weight": 0}]}]}}


def destination_rule() -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": {"name": DR, "namespace": NS},
            "spec": {"host": NAME, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
                     "subsets": [{"name": "stable", "labels": {"app": NAME}},
                                 {"name": "canary", "labels": {"app": NAME}}]}}


class ArgoCluster(InMemoryCluster):
    """The in-memory cluster, also serving Rollouts and the user's routing objects."""

    def __init__(self) -> None:
        super().__init__()
        self.unready: set[str] = set()
        """Deployment names whose pods never become ready."""

    def rollout(self, namespace: str, name: str) -> Rollout | None:
        body = self.get("Rollout", name, namespace)
        return Rollout.model_validate(body) if body else None

    def routing_object(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        body = self.get(kind, name, namespace)
        return copy.deepcopy(body) if body else None

    def put_rollout_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects[("Rollout", namespace, name)]["status"] = copy.deepcopy(status)

    def analysis_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.routing_object(namespace, "AnalysisRun", name)

    def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return None

    def put_analysis_run_status(self, namespace: str, name: str,
                                status: dict[str, Any]) -> None:
        self.objects[("AnalysisRun", namespace, name)]["status"] = copy.deepcopy(status)

    def workload(self, namespace: str, name: str) -> WorkloadStatus:
        ws = super().workload(namespace, name)
        return WorkloadStatus(ws.exists, ws.template_hash, ws.desired, 0) if (
            name in self.unready) else ws


class ArgoHarness:
    def __init__(self, **canary: Any) -> None:
        self.cluster = ArgoCluster()
        self.clock = FakeClock()
        self.cluster.put(virtual_service())
        self.cluster.put(destination_rule())
        self.cluster.put(rollout("v1", **canary))
        self.canary_spec = canary
        self.controller = ArgoController(self.clock, self.cluster, self.cluster)

    def tick(self, n: int = 1, dt: float = 1.0) -> None:
        for _ in range(n):
            self.clock.advance(dt)
            self.controller.tick(NS, NAME)

    def command(self, command: str) -> str:
        decision = self.controller.command(NS, NAME, command)
        assert decision is not None
        return decision.refused

    def release(self, version: str) -> str:
        """Apply the Rollout with template ``version``; its pod-template hash."""
        self.cluster.put(rollout(version, **copy.deepcopy(self.canary_spec)))
        return pod_template_hash(template(version))

    @property
    def status(self) -> dict[str, Any]:
        return self.cluster.get("Rollout", NAME)["status"]  # type: ignore[index]

    def split(self) -> dict[str, int]:
        """subset -> weight of the route ``primary``."""
        vs = self.cluster.get("VirtualService", VS)
        assert vs is not None
        (primary,) = [r for r in vs["spec"]["http"] if r.get("name") == "primary"]
        return {d["destination"]["subset"]: d["weight"] for d in primary["route"]}

    def subset_hashes(self) -> dict[str, str | None]:
        dr = self.cluster.get("DestinationRule", DR)
        assert dr is not None
        return {s["name"]: s["labels"].get("rollouts-pod-template-hash")
                for s in dr["spec"]["subsets"]}

    def replicas(self, pod_hash: str) -> int | None:
        body = self.cluster.get("Deployment", f"{NAME}-{pod_hash}")
        return None if body is None else int(body["spec"]["replicas"])

    def admin_route(self) -> dict[str, Any]:
        vs = self.cluster.get("VirtualService", VS)
        assert vs is not None
        return vs["spec"]["http"][0]

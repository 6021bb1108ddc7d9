"""What the dashboard draws, as plain JSON: the mesh as a graph, the rollouts, the
proxies.

The graph: one node per workload version (a Deployment's pods, by their ``version``
label) inside a node per Service that selects them; an edge per caller and callee with
the requests of the last minute (rate, success rate, p99) from the embedded telemetry as
the destination sidecars report it (the numbers behind ``meshpilot top``); and each
Service's traffic split as its VirtualServices route it. The rollouts: every Canary as
the rollout API shows it, so the page and ``meshpilot rollout status`` never disagree.
The proxies: what each ACKed or NACKed, per xDS type, as ``proxy-status`` shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from meshpilot.api.flagger import Canary
from meshpilot.runtime import Pod
from meshpilot.server.rollout_api import summarize
from meshpilot.store import StoredObject
from meshpilot.telemetry import Matcher

Body = dict[str, Any]
WINDOW_SECONDS = 60.0
EDGE_LABELS = ("source_workload", "source_workload_namespace", "destination_workload",
               "destination_workload_namespace", "destination_service_name",
               "destination_version")
EDGE_MATCHERS = (Matcher("reporter", "=", "destination"),)


def rollouts(canaries: Iterable[StoredObject]) -> list[Body]:
    out = []
    for obj in canaries:
        try:
            out.append(summarize(Canary.model_validate(obj.body), full=True))
        except ValueError:
            continue  # not a Canary the controller can run: the API says why
    return sorted(out, key=lambda r: (r["namespace"], r["name"]))


ARGO_PHASES = MappingProxyType({"Healthy": "Succeeded", "Degraded": "Failed"})
"""Argo's phases drawn as the Canary phases that mean the same (green, red)."""


def argo_card(view: Mapping[str, Any]) -> Body:
    """An Argo Rollout (as ``meshpilot rollout status`` shows it) in a rollout card's
    shape: its phase, weights and step; its analysis runs as the checks; its message as
    the last event; its revisions as the history."""
    canary = view.get("strategy") == "Canary"
    step, _, steps = str(view.get("step") or "0/0").partition("/")
    weight = int(view.get("actualWeight") or 0)
    return {
        "kind": "Rollout", "namespace": view["namespace"], "name": view["name"],
        "phase": ARGO_PHASES.get(str(view.get("status")), str(view.get("status"))),
        "argoPhase": view.get("status"), "paused": bool(view.get("paused")),
        "canaryWeight": weight, "primaryWeight": 100 - weight,
        "strategy": "canary" if canary else "blue-green",
        "step": int(step or 0), "steps": int(steps or 0),
        "checks": [{"name": f"analysis {run.get('name')}", "value": None, "min": None,
                    "max": None, "verdict": {"Successful": "pass", "Failed": "fail",
                                             "Error": "fail"}.get(str(run.get("phase")), "-"),
                    "samples": None} for run in view.get("analysisRuns") or []],
        "events": [{"time": "", "message": view["message"]}] if view.get("message") else [],
        "history": [{"revision": str(r.get("podTemplateHash", "")), "outcome": ",".join(
            r.get("roles") or []) or "old", "reason": ", ".join(r.get("images") or []),
            "started": "", "finished": ""} for r in view.get("revisions") or []],
        "metrics": [], "checkHistory": [],
    }


def proxies(statuses: Iterable[Mapping[str, Any]]) -> list[Body]:
    """Per proxy, per xDS type, the version ACKed and any NACK; without the resource
    counts and sent versions, which change on every push and say nothing here."""
    out = []
    for p in statuses:
        refused = p.get("refused")
        out.append({
            "name": p["name"], "kind": p["kind"], "namespace": p["namespace"],
            "connected": p["connected"], "meshVersion": p["meshVersion"],
            "latestVersion": p["latestVersion"],
            "refused": "; ".join(refused["problems"]) if refused else "",
            "types": {t: {"acked": v["acked"], "nack": v["nack"] or ""}
                      for t, v in sorted(p["types"].items())},
        })
    return sorted(out, key=lambda p: (p["kind"], p["namespace"], p["name"]))


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _workloads(pods: Sequence[Pod], services: Sequence[StoredObject]) -> list[Body]:
    """One entry per Deployment with pods: its version, pods ready, and the Service it
    is drawn in (the first that selects it, by name)."""
    found: dict[tuple[str, str], Body] = {}
    for pod in sorted(pods, key=lambda p: (p.namespace, p.deployment, p.name)):
        key = (pod.namespace, pod.deployment)
        entry = found.get(key)
        if entry is None:
            entry = found[key] = {
                "id": f"wl:{pod.namespace}/{pod.deployment}", "namespace": pod.namespace,
                "name": pod.deployment, "version": pod.labels.get("version", ""),
                "ready": 0, "pods": 0, "service": None}
            for svc in sorted(services, key=lambda s: s.key.name):
                selector = (svc.body.get("spec") or {}).get("selector") or {}
                if svc.key.namespace == pod.namespace and _selects(selector, pod.labels):
                    entry["service"] = f"svc:{svc.key.namespace}/{svc.key.name}"
                    break
        entry["pods"] += 1
        entry["ready"] += int(pod.ready)
    return list(found.values())


def _short(host: str, namespace: str) -> tuple[str, str]:
    """(namespace, name) of a Service host as a VirtualService names it."""
    parts = host.split(".")
    return (parts[1] if len(parts) > 1 else namespace), parts[0]


def _route_label(dest: Mapping[str, Any], service: str, namespace: str) -> str:
    _, name = _short(str(dest.get("host", "")), namespace)
    subset = dest.get("subset")
    if name == service and subset:
        return str(subset)
    return f"{name}/{subset}" if subset else name


def _rule_split(rule: Mapping[str, Any], service: str, namespace: str) -> Body:
    routes = rule.get("route") or []
    parts = []
    for route in routes:
        weight = route.get("weight")
        if weight is None:
            weight = 100 if len(routes) == 1 else 0
        parts.append({"to": _route_label(route.get("destination") or {}, service, namespace),
                      "weight": int(weight)})
    text = " / ".join(f"{p['to']} {p['weight']}%" for p in parts)
    mirror = _mirror(rule, service, namespace)
    if mirror is not None:
        text += f" · mirror {mirror['to']} {mirror['percent']:g}%"
    return {"rule": rule.get("name") or "", "match": bool(rule.get("match")),
            "routes": parts, "mirror": mirror, "text": text}


def _mirror(rule: Mapping[str, Any], service: str, namespace: str) -> Body | None:
    """Where the rule mirrors copies of its requests and what share of them (Istio's
    ``mirror`` with ``mirrorPercentage``, 100 % when absent; ``mirrors`` lists)."""
    targets = list(rule.get("mirrors") or [])
    if rule.get("mirror"):
        targets.insert(0, {"destination": rule["mirror"],
                           "percentage": rule.get("mirrorPercentage")})
    if not targets:
        return None
    first = targets[0]
    share = (first.get("percentage") or {}).get("value")
    dest = first.get("destination") or {}
    return {"to": _route_label(dest, service, namespace), "subset": dest.get("subset") or "",
            "percent": 100.0 if share is None else float(share)}


def splits(virtual_services: Iterable[StoredObject]) -> dict[str, list[Body]]:
    """Per Service id, the HTTP rules of the mesh's VirtualServices for its host, in
    order (the last, without a match, is the split most requests take)."""
    out: dict[str, list[Body]] = {}
    for vs in sorted(virtual_services, key=lambda o: (o.key.namespace, o.key.name)):
        spec = vs.body.get("spec") or {}
        gateways = spec.get("gateways") or ["mesh"]
        if "mesh" not in gateways:
            continue
        for host in spec.get("hosts") or []:
            ns, name = _short(str(host), vs.key.namespace)
            rules = [_rule_split(r, name, ns) for r in spec.get("http") or [] if r.get("route")]
            if rules:
                out.setdefault(f"svc:{ns}/{name}", []).extend(rules)
    return out


def _edge(row: Mapping[str, Any]) -> Body:
    src = f"wl:{row.get('source_workload_namespace')}/{row.get('source_workload')}"
    dst = f"wl:{row.get('destination_workload_namespace')}/{row.get('destination_workload')}"
    latency = row.get("latencyMs") or {}
    # over the whole window, so a burst a few seconds ago still shows (the summary's
    # requestRate is the recent rate, 0 once it stopped)
    requests = int(row.get("requests") or 0)
    errors = int(row.get("errors") or 0)
    return {"id": f"{src}->{dst}", "source": src, "target": dst,
            "sourceName": row.get("source_workload"),
            "service": row.get("destination_service_name"),
            "version": row.get("destination_version"),
            "requestRate": requests / WINDOW_SECONDS,
            "successRate": 100.0 * (requests - errors) / requests if requests else None,
            "p99": latency.get("p99"), "requests": requests}


def graph(pods: Sequence[Pod], services: Sequence[StoredObject],
          virtual_services: Sequence[StoredObject], rows: Sequence[Mapping[str, Any]]) -> Body:
    """The mesh graph; ``rows``: telemetry summary rows grouped by ``EDGE_LABELS``."""
    workloads = _workloads(pods, services)
    known = {w["id"] for w in workloads}
    edges = [_edge(r) for r in rows if r.get("requests")]
    callers = []  # callers that are no workload of the runtime (the mesh proxy, outside)
    for edge in edges:
        if edge["source"] not in known:
            known.add(edge["source"])
            callers.append({"id": edge["source"], "name": edge["sourceName"] or "unknown"})
    edges = [e for e in edges if e["target"] in known]
    return {
        "services": [{"id": f"svc:{s.key.namespace}/{s.key.name}", "namespace": s.key.namespace,
                      "name": s.key.name}
                     for s in sorted(services, key=lambda o: (o.key.namespace, o.key.name))],
        "workloads": workloads, "callers": callers, "edges": edges,
        "splits": splits(virtual_services), "windowSeconds": WINDOW_SECONDS,
    }


def config(objects: Iterable[StoredObject], findings: Iterable[Mapping[str, Any]]) -> Body:
    """Every stored object by kind and namespace with the validation findings on it (as
    ``meshpilot analyze`` reports them), and the findings that name no stored object."""
    by_object: dict[str, list[Body]] = {}
    for d in findings:
        by_object.setdefault(str(d.get("object") or ""), []).append({
            "code": d.get("code"), "severity": d.get("severity"), "path": d.get("path") or "",
            "message": d.get("message")})
    items = []
    for obj in sorted(objects, key=lambda o: (o.key.kind, o.key.namespace, o.key.name)):
        items.append({"group": obj.key.group, "kind": obj.key.kind,
                      "namespace": obj.key.namespace, "name": obj.key.name,
                      "resourceVersion": str(obj.resource_version),
                      "findings": by_object.pop(str(obj.key), [])})
    return {"objects": items,
            "unattached": [f for found in by_object.values() for f in found]}

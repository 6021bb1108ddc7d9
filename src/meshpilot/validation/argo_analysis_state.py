"""Argo Rollouts across objects: the AnalysisTemplates a Rollout's analysis names.

Argo looks the templates up when it makes a run, and a missing one then stops the
Rollout (``InvalidSpec``). The templates may come in a later apply, so a missing one is
a warning at apply (MP2050) rather than a refusal: the user sees it before the Rollout
reaches that analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]
Path = tuple[str | int, ...]


def _analyses(spec: dict[str, Any]) -> Iterator[tuple[Path, Any]]:
    strategy = as_mapping(spec.get("strategy"))
    canary = as_mapping(strategy.get("canary"))
    for i, step in enumerate(as_list(canary.get("steps"))):
        yield ("spec", "strategy", "canary", "steps", i, "analysis"), as_mapping(
            step).get("analysis")
    yield ("spec", "strategy", "canary", "analysis"), canary.get("analysis")
    blue_green = as_mapping(strategy.get("blueGreen"))
    for place in ("prePromotionAnalysis", "postPromotionAnalysis"):
        yield ("spec", "strategy", "blueGreen", place), blue_green.get(place)


def check_analysis_templates(objects: list[StateObject], report: Report,
                             found: Findings) -> None:
    rollouts = [o for o in objects if o.key.kind == "Rollout" and report(o)]
    if not rollouts:
        return
    have = {(o.key.kind, o.namespace, o.key.name) for o in objects
            if o.key.kind in ("AnalysisTemplate", "ClusterAnalysisTemplate")}
    for rollout in rollouts:
        for path, analysis in _analyses(rollout.spec):
            for i, ref in enumerate(as_list(as_mapping(analysis).get("templates"))):
                ref = as_mapping(ref)
                cluster = bool(ref.get("clusterScope"))
                kind = "ClusterAnalysisTemplate" if cluster else "AnalysisTemplate"
                name = str(ref.get("templateName") or "")
                if name and (kind, "" if cluster else rollout.namespace, name) not in have:
                    where = "" if cluster else f"{rollout.namespace}/"
                    found.add(codes.ARGO_TEMPLATE_MISSING, rollout,
                              (*path, "templates", i, "templateName"),
                              f"{kind} {where}{name} does not exist (yet); the Rollout "
                              "stops Degraded at this analysis until it does")

"""The AnalysisRun a Rollout's analysis creates from its templates (Argo's
``NewAnalysisRunFromTemplates`` and ``BuildArgumentsForRolloutAnalysisRun``).

- The templates' metrics are put together; two with one name is an error.
- The templates' arguments are put together (one name given two different values is an
  error); the Rollout's arguments then set the values of those of the same name, a
  ``podTemplateHashValue`` resolved to the stable or latest revision's hash. Every
  argument must end with a value or a ``valueFrom`` (a Secret, read at each
  measurement, so its value is never written into the run).
- The run is named ``ROLLOUT-HASH-ATTEMPT[-STEP|-pre|-post]`` (Argo:
  ``ROLLOUT-HASH-REVISION[-STEP|-pre|-post]``) and labelled with the revision's hash and
  ``rollout-type`` (Step, Background, PrePromotion or PostPromotion).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshpilot.api.argo import POD_TEMPLATE_HASH_LABEL, Rollout, RolloutAnalysis

ROLLOUT_TYPE_LABEL = "rollout-type"
STEP_INDEX_LABEL = "step-index"
ROLLOUT_ANNOTATION = "meshpilot.io/rollout"

TemplateReader = Callable[[str, bool], dict[str, Any] | None]
"""(name, clusterScope) -> the stored AnalysisTemplate or ClusterAnalysisTemplate body."""


class RunSpecError(Exception):
    """The analysis cannot make a run (a template missing, arguments in conflict)."""


def run_name(rollout: Rollout, pod_hash: str, attempt: int, suffix: int | str | None) -> str:
    """``suffix``: the step index, ``pre``/``post`` (blue-green), None (background)."""
    base = f"{rollout.metadata.name}-{pod_hash}-{attempt}"
    return base if suffix is None else f"{base}-{suffix}"


def _templates(spec: RolloutAnalysis, read: TemplateReader) -> list[dict[str, Any]]:
    out = []
    for ref in spec.templates:
        body = read(ref.template_name, ref.cluster_scope)
        if body is None:
            kind = "ClusterAnalysisTemplate" if ref.cluster_scope else "AnalysisTemplate"
            raise RunSpecError(f"{kind} '{ref.template_name}' not found")
        out.append(body)
    return out


def _merged_args(templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    args: dict[str, dict[str, Any]] = {}
    for body in templates:
        for arg in (body.get("spec") or {}).get("args") or []:
            seen = args.get(arg["name"])
            if seen is not None and seen != arg and "value" in seen and "value" in arg:
                raise RunSpecError(f"argument {arg['name']} has two different values in "
                                   "the templates")
            if seen is None or "value" not in seen:
                args[arg["name"]] = dict(arg)
    return list(args.values())


def _rollout_values(rollout: Rollout, spec: RolloutAnalysis, stable: str,
                    latest: str) -> dict[str, str]:
    values = {}
    for arg in spec.args or []:
        source = arg.value_from.pod_template_hash_value if arg.value_from else None
        if source is not None:
            values[arg.name] = stable if source == "Stable" else latest
        elif arg.value is not None:
            values[arg.name] = arg.value
    return values


def _rules(templates: list[dict[str, Any]], spec: RolloutAnalysis) -> dict[str, list[Any]]:
    """The templates' dryRun and measurementRetention rules, then the Rollout's."""
    own = {"dryRun": spec.dry_run or [], "measurementRetention": spec.measurement_retention
           or []}
    return {field: [*(r for body in templates for r in (body.get("spec") or {}).get(field)
                      or []), *(r.model_dump(by_alias=True) for r in own[field])]
            for field in own}


def new_run(rollout: Rollout, spec: RolloutAnalysis, read: TemplateReader, *, name: str,
            stable: str, latest: str, step: int | None,
            kind: str = "") -> dict[str, Any]:
    """The AnalysisRun body; raises RunSpecError when it cannot be made."""
    templates = _templates(spec, read)
    metrics = [m for body in templates for m in (body.get("spec") or {}).get("metrics") or []]
    names = [m.get("name") for m in metrics]
    dupes = sorted({str(n) for n in names if names.count(n) > 1})
    if dupes:
        raise RunSpecError(f"two metrics named {', '.join(dupes)} in the templates")
    values = _rollout_values(rollout, spec, stable, latest)
    args = []
    for arg in _merged_args(templates):
        if arg["name"] in values:
            arg = {"name": arg["name"], "value": values[arg["name"]]}
        if "value" not in arg and "valueFrom" not in arg:
            raise RunSpecError(f"args.{arg['name']} was not resolved: give it a value in "
                               "the Rollout's analysis args")
        args.append(arg)
    labels = {POD_TEMPLATE_HASH_LABEL: latest,
              ROLLOUT_TYPE_LABEL: kind or ("Background" if step is None else "Step")}
    if step is not None:
        labels[STEP_INDEX_LABEL] = str(step)
    rules = _rules(templates, spec)
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": rollout.metadata.namespace,
                     "labels": labels,
                     "annotations": {ROLLOUT_ANNOTATION: rollout.metadata.name}},
        "spec": {"metrics": metrics, **({"args": args} if args else {}),
                 **{field: found for field, found in rules.items() if found}},
    }


def terminated(body: dict[str, Any]) -> dict[str, Any] | None:
    """The stored run with ``spec.terminate`` set, or None when it needs no change (it
    completed, or was already told to stop)."""
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    if spec.get("terminate") or status.get("phase") in (
            "Successful", "Failed", "Error", "Inconclusive"):
        return None
    meta = body.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    return {"apiVersion": body.get("apiVersion"), "kind": "AnalysisRun", "metadata": kept,
            "spec": {**spec, "terminate": True}}

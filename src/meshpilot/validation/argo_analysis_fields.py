"""What of Argo Rollouts' AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun
meshpilot does not act on: refused by name, never stored and ignored.

- MP0075: a metric provider other than ``prometheus`` and ``web``.
- MP0076: a field not implemented (consecutiveSuccessLimit,
  provider authentication, range queries, ``valueFrom.fieldRef``, ttlStrategy).
- MP0077: a success or failure condition outside the supported expression forms
  (:mod:`meshpilot.api.argo_expressions`).
- MP0078: a web metric ``jsonPath`` outside the supported forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshpilot.api import argo_expressions, argo_json_path
from meshpilot.api.argo_analysis import PROVIDERS
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.unapplied_fields import EACH, Unapplied, findings_of, row

_METRIC = ("spec", "metrics", EACH)
_RUNS = ("prometheus", "web")


def _field(*pattern: str, what: str) -> Unapplied:
    return row(*pattern, code=codes.ARGO_ANALYSIS_FIELD,
               why=f"{{field}} is refused: meshpilot does not implement {what}; remove it "
                   "(see the README's Argo Rollouts section for what runs)")


ANALYSIS: tuple[Unapplied, ...] = (
    *(row(*_METRIC, "provider", name, code=codes.ARGO_METRIC_PROVIDER,
          why=f"provider {name} is refused: meshpilot runs the prometheus and web metric "
              "providers only; use one of them")
      for name in PROVIDERS if name not in _RUNS),
    _field("spec", "ttlStrategy", what="ttlStrategy"),
    _field(*_METRIC, "consecutiveSuccessLimit", what="consecutiveSuccessLimit"),
    _field(*_METRIC, "provider", "prometheus", "authentication",
           what="prometheus authentication (give an Authorization header in headers)"),
    _field(*_METRIC, "provider", "prometheus", "rangeQuery",
           what="range queries (write an instant query)"),
    _field(*_METRIC, "provider", "web", "authentication",
           what="web authentication (give an Authorization header in headers)"),
    _field("spec", "args", EACH, "valueFrom", "fieldRef",
           what="valueFrom.fieldRef (give value, or valueFrom.secretKeyRef)"),
    _field("spec", "args", EACH, "valueFrom", "podTemplateHashValue",
           what="podTemplateHashValue in a template (it is for a Rollout's analysis "
                "args)"),
)


def _conditions(body: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for i, metric in enumerate(as_list(as_mapping(body.get("spec")).get("metrics"))):
        m = as_mapping(metric)
        for field in ("successCondition", "failureCondition"):
            text = m.get(field)
            if not isinstance(text, str):
                continue
            try:
                argo_expressions.parse(text)
            except argo_expressions.ExpressionError as exc:
                out.append(Finding(codes.ARGO_CONDITION, ("spec", "metrics", i, field),
                                   f"{field} {text!r} is refused: {exc}"))
        path = as_mapping(as_mapping(m.get("provider")).get("web")).get("jsonPath")
        if isinstance(path, str):
            try:
                argo_json_path.parse(path)
            except argo_json_path.JsonPathError as exc:
                out.append(Finding(codes.ARGO_JSON_PATH,
                                   ("spec", "metrics", i, "provider", "web", "jsonPath"),
                                   f"jsonPath is refused: {exc}"))
    return out


def analysis_findings(body: Mapping[str, Any]) -> list[Finding]:
    """For AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun alike."""
    return [*findings_of(ANALYSIS, body), *_conditions(body)]

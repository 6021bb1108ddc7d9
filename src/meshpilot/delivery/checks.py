"""Metric checks: built-in Istio metrics, Prometheus MetricTemplates, primary comparison.

Verdicts are ``pass``, ``fail`` or ``nodata``. "No data" is never a pass: a check backed
by fewer requests than the minimum makes the step wait (and say so), and only fails the
rollout once it has waited longer than progressDeadlineSeconds.

Options ride in a metric's ``templateVariables`` (a field Flagger already has on every
metric, so the Canary file stays valid for Flagger):

- ``minRequests``: the fewest requests the canary must have served in the metric's
  window for its value to count (default 20; the Canary annotation
  ``meshpilot.io/min-requests`` sets the default for all its metrics). For templateRef
  metrics it applies only when given, and the requests are counted by the embedded
  telemetry.
- ``compare: primary``: also judge the canary against the primary over the same window.
  For ``request-duration`` and templateRef metrics: canary ≤ ``maxRatio`` x primary
  (default 1.1) and/or canary ≥ ``minRatio`` x primary. For ``request-success-rate``: a
  one-sided two-proportion z-test fails when the canary's rate is significantly below the
  primary's at ``confidence`` (default 0.98), less an optional ``allowedDrop`` in
  percentage points.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshpilot.api.flagger import (
    MIN_REQUESTS_ANNOTATION,
    Canary,
    CanaryMetric,
    MetricTemplate,
    MetricTemplateProvider,
    TemplateReference,
)
from meshpilot.api.metric_query import graphite_offset, metric_interval_seconds
from meshpilot.delivery.judge import proportion_below
from meshpilot.delivery.ports import MetricQueryError
from meshpilot.delivery.providers import MetricProvider, MetricsSource, Sample
from meshpilot.delivery.state import CheckRecord

DEFAULT_MIN_REQUESTS = 20
DEFAULT_METRIC_INTERVAL = "1m"
DEFAULT_MAX_RATIO = 1.1


TemplateLookup = Callable[[str, str], MetricTemplate | None]
"""(namespace, name) → the MetricTemplate, or None when there is none."""
SecretLookup = Callable[[str, str], Mapping[str, bytes] | None]
"""(namespace, name) → a Secret's decoded keys, or None when there is no such Secret."""


_VAR = re.compile(r"\{\{\s*\.?([A-Za-z_][\w.]*)\s*\}\}")


def render_query(template: str, variables: dict[str, Any]) -> str:
    """Fill Flagger's template variables: {{ namespace }}, {{ target }}, {{ interval }},
    {{ name }}, {{ service }}, {{ variables.X }}. An unknown one is an error, not "".
    """

    def sub(match: re.Match[str]) -> str:
        path = match.group(1).split(".")
        value: Any = variables
        for part in path:
            if not isinstance(value, dict) or part not in value:
                raise MetricQueryError(
                    f"template variable {match.group(0)} is not defined; known: "
                    f"{', '.join(sorted(k for k in variables if k != 'variables'))}, "
                    "variables.<templateVariables key>"
                )
            value = value[part]
        return str(value)

    return _VAR.sub(sub, template)


# --- evaluation -----------------------------------------------------------------------


@dataclass
class CheckContext:
    """What a check needs to know about the Canary under analysis."""

    canary: Canary
    metrics: MetricsSource
    query: MetricProvider | None = None
    templates: TemplateLookup | None = None
    now: float | None = None
    secrets: SecretLookup | None = None
    evidence_since: float | None = None
    """When this revision's traffic began; windows are clamped to start no earlier."""

    @property
    def namespace(self) -> str:
        return self.canary.metadata.namespace

    @property
    def target(self) -> str:
        return self.canary.spec.target_ref.name

    @property
    def primary(self) -> str:
        return f"{self.target}-primary"


def _options(metric: CanaryMetric) -> dict[str, str]:
    return dict(metric.template_variables or {})


def min_requests(canary: Canary, metric: CanaryMetric) -> int:
    """The minimum-sample rule for ``metric``: how many requests the canary must have served
    in the window before the check may judge it (0 turns the rule off).

    It applies to MetricTemplate checks too, counted by the embedded telemetry: a
    Prometheus answer over a window with a handful of requests is not evidence (a rate
    over a new series with one sample simply drops out of the sum, so an error-rate query
    can read 0% while errors are happening).
    """
    opts = _options(metric)
    if "minRequests" in opts:
        return int(float(opts["minRequests"]))
    raw = canary.metadata.annotations.get(MIN_REQUESTS_ANNOTATION)
    return int(float(raw)) if raw else DEFAULT_MIN_REQUESTS


def _window(metric: CanaryMetric, ctx: CheckContext) -> tuple[str, float]:
    """The metric's window, clamped so it never reaches back before this revision's first
    traffic: right after a rollout starts, a 1m window would still hold the previous
    revision's requests (or the last canary's), and those are no evidence about this one.
    A short window then rests on few requests, which the minimum-sample rule turns into
    "no data" rather than a pass."""
    text = metric.interval or DEFAULT_METRIC_INTERVAL
    window = metric_interval_seconds(text)
    if ctx.now is not None and ctx.evidence_since is not None:
        elapsed = max(1.0, math.floor(ctx.now - ctx.evidence_since))
        if elapsed < window:
            return f"{elapsed:g}s", elapsed
    return text, window


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "no value"
    return f"{value:.4g}{unit}"


def threshold_bounds(metric: CanaryMetric, legacy: str) -> tuple[float | None, float | None]:
    """(min, max) a check's value must stay within; a bare ``threshold`` is the
    ``legacy`` bound (min for success rate, max for the rest), as in Flagger."""
    rng = metric.threshold_range
    lo, hi = (rng.min, rng.max) if rng else (None, None)
    if lo is None and hi is None and metric.threshold is not None:
        if legacy == "min":
            lo = metric.threshold
        else:
            hi = metric.threshold
    return lo, hi


def _threshold_failure(name: str, value: float, lo: float | None, hi: float | None,
                       unit: str) -> str | None:
    if lo is not None and value < lo:
        return f"{name} {_fmt(value, unit)} < {_fmt(lo, unit)}"
    if hi is not None and value > hi:
        return f"{name} {_fmt(value, unit)} > {_fmt(hi, unit)}"
    return None


def _nodata(name: str, message: str, samples: int | None = None,
            value: float | None = None) -> CheckRecord:
    return CheckRecord(name, "nodata", value=value, samples=samples, message=message)


def evaluate(metric: CanaryMetric, ctx: CheckContext) -> CheckRecord:
    """Judge one metric over its window. Never raises: errors become verdicts."""
    try:
        if metric.template_ref is None and not metric.query:
            if metric.name == "request-success-rate":
                return _success_rate(metric, ctx)
            if metric.name == "request-duration":
                return _duration(metric, ctx)
        return _templated(metric, ctx)
    except MetricQueryError as exc:
        # An unreachable provider is absence of evidence: wait (bounded by the deadline).
        return _nodata(metric.name, f"{metric.name}: {exc}")
    except (ValueError, TypeError) as exc:
        return CheckRecord(metric.name, "fail", message=f"{metric.name}: {exc}")


def _canary_evidence(
    metric: CanaryMetric, ctx: CheckContext, fetch: Callable[[str, float], Sample]
) -> tuple[Sample, str, float, int] | CheckRecord:
    """The canary's sample over the metric's window, or a no-data record if it rests on
    fewer requests than the check needs: silence is never a pass."""
    text, window = _window(metric, ctx)
    need = max(min_requests(ctx.canary, metric), 1)
    sample = fetch(ctx.target, window)
    if sample.value is None or sample.requests < need:
        return _nodata(
            metric.name,
            f"{metric.name}: {sample.requests} requests to {ctx.target} in the last {text} "
            f"(need {need}); waiting for traffic",
            samples=sample.requests,
        )
    return sample, text, window, need


def _primary_missing(record: CheckRecord, ctx: CheckContext, primary: Sample, text: str,
                     need: int) -> bool:
    """Mark ``record`` no-data when the primary has too little traffic to compare with."""
    if primary.value is not None and primary.requests >= need:
        return False
    record.verdict = "nodata"
    record.message = (
        f"{record.name}: primary {ctx.primary} served {primary.requests} requests in the "
        f"last {text} (need {need}) to compare with"
    )
    return True


def _success_rate(metric: CanaryMetric, ctx: CheckContext) -> CheckRecord:
    name = metric.name
    evidence = _canary_evidence(
        metric, ctx, lambda w, s: ctx.metrics.success_rate(ctx.namespace, w, s))
    if isinstance(evidence, CheckRecord):
        return evidence
    sample, text, window, need = evidence
    lo, hi = threshold_bounds(metric, "min")
    record = CheckRecord(name, "pass", value=sample.value, samples=sample.requests)
    failure = _threshold_failure(name, sample.value, lo, hi, "%")
    if failure:
        record.verdict, record.message = "fail", f"{failure} ({sample.requests} requests)"
        return record
    opts = _options(metric)
    if opts.get("compare") == "primary":
        primary = ctx.metrics.success_rate(ctx.namespace, ctx.primary, window)
        record.primary_value = primary.value
        if _primary_missing(record, ctx, primary, text, need):
            return record
        confidence = float(opts.get("confidence", "0.98"))
        drop = float(opts.get("allowedDrop", "0")) / 100.0
        test = proportion_below(
            round(sample.value / 100.0 * sample.requests), sample.requests,
            round(primary.value / 100.0 * primary.requests), primary.requests,
            confidence=confidence, allowed_drop=drop,
        )
        verdict = (
            f"canary {sample.value:.4g}% of {sample.requests} vs primary "
            f"{primary.value:.4g}% of {primary.requests} (z={test.z:.2f}, "
            f"p={test.p_value:.3g}, confidence {confidence:g})"
        )
        if test.significant:
            record.verdict = "fail"
            record.message = f"{name} significantly below primary: {verdict}"
            return record
        record.message = f"{name} not significantly below primary: {verdict}"
        return record
    record.message = f"{name} {_fmt(sample.value, '%')} ({sample.requests} requests)"
    return record


def _ratio_check(name: str, value: float, primary: float, opts: dict[str, str],
                 unit: str, default_max: float | None) -> str | None:
    max_ratio = float(opts["maxRatio"]) if "maxRatio" in opts else None
    min_ratio = float(opts["minRatio"]) if "minRatio" in opts else None
    if max_ratio is None and min_ratio is None:
        max_ratio = default_max
    if max_ratio is not None and value > max_ratio * primary:
        return (f"{name} {_fmt(value, unit)} > {max_ratio:g} x primary "
                f"{_fmt(primary, unit)} = {_fmt(max_ratio * primary, unit)}")
    if min_ratio is not None and value < min_ratio * primary:
        return (f"{name} {_fmt(value, unit)} < {min_ratio:g} x primary "
                f"{_fmt(primary, unit)} = {_fmt(min_ratio * primary, unit)}")
    return None


def _duration(metric: CanaryMetric, ctx: CheckContext) -> CheckRecord:
    name = metric.name
    evidence = _canary_evidence(
        metric, ctx, lambda w, s: ctx.metrics.latency_quantile(ctx.namespace, w, s, 0.99))
    if isinstance(evidence, CheckRecord):
        return evidence
    sample, text, window, need = evidence
    lo, hi = threshold_bounds(metric, "max")
    record = CheckRecord(name, "pass", value=sample.value, samples=sample.requests)
    failure = _threshold_failure(f"{name} p99", sample.value, lo, hi, "ms")
    if failure:
        record.verdict, record.message = "fail", f"{failure} ({sample.requests} requests)"
        return record
    opts = _options(metric)
    if opts.get("compare") == "primary":
        primary = ctx.metrics.latency_quantile(ctx.namespace, ctx.primary, window, 0.99)
        record.primary_value = primary.value
        if _primary_missing(record, ctx, primary, text, need) or primary.value is None:
            return record
        failure = _ratio_check(f"{name} p99", sample.value, primary.value, opts, "ms",
                               DEFAULT_MAX_RATIO)
        if failure:
            record.verdict, record.message = "fail", failure
            return record
    record.message = f"{name} p99 {_fmt(sample.value, 'ms')} ({sample.requests} requests)"
    if record.primary_value is not None:
        record.message += f", primary {_fmt(record.primary_value, 'ms')}"
    return record


@dataclass(frozen=True)
class _Source:
    """Where a templated check's numbers come from: provider, query text, credentials."""

    provider: MetricTemplateProvider
    text: str
    credentials: Mapping[str, bytes] | None = None


def _template_source(metric: CanaryMetric, ref: TemplateReference,
                     ctx: CheckContext) -> _Source | CheckRecord:
    """The MetricTemplate's provider, query and ``secretRef`` credentials (the Secret is
    read from the template's namespace); a failed record when either is missing."""
    name, ns = metric.name, ref.namespace or ctx.namespace
    template = ctx.templates(ns, ref.name) if ctx.templates else None
    if template is None:
        return CheckRecord(name, "fail",
                           message=f"{name}: MetricTemplate {ns}/{ref.name} not found")
    provider = template.spec.provider
    if provider.secret_ref is None:
        return _Source(provider, template.spec.query)
    credentials = ctx.secrets(ns, provider.secret_ref.name) if ctx.secrets else None
    if credentials is None:
        return CheckRecord(name, "fail", message=f"{name}: MetricTemplate {ns}/{ref.name} "
                           f"names Secret {ns}/{provider.secret_ref.name} in secretRef, "
                           "and there is none")
    return _Source(provider, template.spec.query, credentials)


def _source(metric: CanaryMetric, ctx: CheckContext) -> _Source | CheckRecord:
    """A templateRef's template, or an inline query at spec.metricsServer; a prometheus
    provider without an address takes spec.metricsServer, as Flagger's does."""
    if metric.template_ref is not None:
        found = _template_source(metric, metric.template_ref, ctx)
    elif not ctx.canary.spec.metrics_server:
        return CheckRecord(metric.name, "fail", message=f"{metric.name}: an inline query "
                           "needs spec.metricsServer")
    else:
        found = _Source(MetricTemplateProvider(type="prometheus",
                                               address=ctx.canary.spec.metrics_server),
                        metric.query or "")
    if isinstance(found, CheckRecord):
        return found
    provider = found.provider
    if provider.type == "prometheus" and not provider.address and ctx.canary.spec.metrics_server:
        provider = provider.model_copy(update={"address": ctx.canary.spec.metrics_server})
    return _Source(provider, found.text, found.credentials)


def _templated(metric: CanaryMetric, ctx: CheckContext) -> CheckRecord:
    name = metric.name
    if ctx.query is None:
        raise MetricQueryError("no metric provider is configured")
    source = _source(metric, ctx)
    if isinstance(source, CheckRecord):
        return source
    provider, text, credentials = source.provider, source.text, source.credentials
    interval, window = _window(metric, ctx)
    opts = _options(metric)
    need = min_requests(ctx.canary, metric)
    samples: int | None = None
    if need:
        samples = ctx.metrics.success_rate(ctx.namespace, ctx.target, window).requests
        if samples < need:
            return _nodata(name, f"{name}: {samples} requests to {ctx.target} in the last "
                                 f"{interval} (need {need}); waiting for traffic", samples)

    def variables(target: str) -> dict[str, Any]:
        return {
            "name": ctx.canary.metadata.name,
            "namespace": ctx.namespace,
            "target": target,
            "service": ctx.canary.service_names[0],
            "interval": graphite_offset(window) if provider.type == "graphite" else interval,
            "variables": opts,
        }

    value = ctx.query.query(provider, render_query(text, variables(ctx.target)), credentials)
    if value is None:
        return _nodata(name, f"{name}: the query returned no data", samples)
    lo, hi = threshold_bounds(metric, "max")
    record = CheckRecord(name, "pass", value=value, samples=samples)
    failure = _threshold_failure(name, value, lo, hi, "")
    if failure:
        record.verdict, record.message = "fail", failure
        return record
    if opts.get("compare") == "primary":
        primary = ctx.query.query(provider, render_query(text, variables(ctx.primary)),
                                  credentials)
        record.primary_value = primary
        if primary is None:
            record.verdict = "nodata"
            record.message = f"{name}: the query returned no data for {ctx.primary}"
            return record
        failure = _ratio_check(name, value, primary, opts, "", DEFAULT_MAX_RATIO)
        if failure:
            record.verdict, record.message = "fail", failure
            return record
    record.message = f"{name} {_fmt(value, '')}"
    return record


def combine(records: list[CheckRecord]) -> str:
    """One verdict for a step: any fail fails, else any nodata waits, else pass."""
    verdicts = {r.verdict for r in records}
    if "fail" in verdicts:
        return "fail"
    if "nodata" in verdicts:
        return "nodata"
    return "pass"

"""An AnalysisRun's state machine, as Argo's ``analysis/analysis.go`` reconciles it: pure
functions of the run's metrics, its status (in Argo's shape) and the time.

- :func:`due`: the metrics to measure now. A metric waits ``initialDelay`` after the run
  started; then it is measured at once, and again ``interval`` after its last
  measurement finished (10 s after an Error, Argo's ``DefaultErrorRetryInterval``) until
  its ``count`` is reached (no count and no interval: one measurement; an interval
  without a count: until the run is terminated). A terminating run measures nothing.
- :func:`record`: one measurement's outcome added to its metric's counts: Successful,
  Failed and Inconclusive count towards ``count``; an Error does not, and adds to the
  consecutive errors, which any other outcome resets.
- :func:`assess`: each metric's phase, then the run's: a metric is Failed when failed >
  failureLimit (default 0; a negative limit never fails), Inconclusive when inconclusive
  > inconclusiveLimit (0), Error when consecutive errors > consecutiveErrorLimit (4), and
  Successful when its count is reached without those. One of the first three ends the
  whole run (it is terminating); the run's phase is then the worst of its completed
  metrics (Successful < Running < Pending < Inconclusive < Error < Failed), with Argo's
  message (``Metric "m" assessed Failed due to failed (2) > failureLimit (1)``).
- :func:`evaluate`: a measurement's phase from its result and the success/failure
  conditions (Argo's ``EvaluateResult``): with only a success condition, not meeting it
  is a failure; with only a failure condition, not meeting it is a success; with both
  and neither met, Inconclusive; an expression that cannot be evaluated is an Error.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from meshpilot.api import argo_expressions
from meshpilot.api.argo_analysis import DEFAULT_CONSECUTIVE_ERROR_LIMIT, Metric
from meshpilot.api.base import parse_duration

ERROR_RETRY_SECONDS = 10.0
MEASUREMENT_HISTORY_LIMIT = 10
COMPLETED = ("Successful", "Failed", "Error", "Inconclusive")
_ORDER = ("Successful", "Running", "Pending", "Inconclusive", "Error", "Failed")


def timestamp(epoch: float) -> str:
    """RFC 3339 with milliseconds (Kubernetes' MicroTime shape; intervals can be short)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _result(status: dict[str, Any], name: str) -> dict[str, Any] | None:
    for result in status.get("metricResults") or []:
        if result.get("name") == name:
            return result  # type: ignore[no-any-return]
    return None


def terminating(spec_terminate: bool, status: dict[str, Any]) -> bool:
    """Argo's ``IsTerminating``: asked to, or a metric (not a dry-run one) already ended
    the run."""
    return spec_terminate or any(
        r.get("phase") in ("Failed", "Error", "Inconclusive") and not r.get("dryRun")
        for r in status.get("metricResults") or [])


def due(metrics: list[Metric], status: dict[str, Any], now: float,
        terminate: bool = False) -> list[Metric]:
    """The metrics to measure at ``now`` (``generateMetricTasks``)."""
    if terminating(terminate, status):
        return []
    started = epoch(status.get("startedAt")) or now
    return [m for m in metrics if _metric_due(m, _result(status, m.name), started, now)]


def _metric_due(metric: Metric, result: dict[str, Any] | None, started: float,
                now: float) -> bool:
    if result is not None and result.get("phase") in COMPLETED:
        return False
    measurements = (result or {}).get("measurements") or []
    if not measurements:
        delay = parse_duration(metric.initial_delay) if metric.initial_delay else 0.0
        return now >= started + delay
    count = metric.effective_count
    if count is not None and int((result or {}).get("count") or 0) >= count:
        return False
    last = measurements[-1]
    wait = ERROR_RETRY_SECONDS if last.get("phase") == "Error" or not metric.interval else (
        parse_duration(metric.interval))
    return now >= (epoch(last.get("finishedAt")) or now) + wait


def evaluate(metric: Metric, result: Any) -> tuple[str, str]:
    """(phase, message) of one measurement's ``result``."""
    success = failure = False
    try:
        if metric.success_condition:
            success = argo_expressions.parse(metric.success_condition).evaluate(result)
        if metric.failure_condition:
            failure = argo_expressions.parse(metric.failure_condition).evaluate(result)
    except argo_expressions.ExpressionError as exc:
        empty = result is None or result == []
        why = ("metric result is nil or empty: no data returned from the metric provider"
               if empty else str(exc))
        return "Error", f"could not evaluate the condition: {why}"
    if not metric.success_condition and not metric.failure_condition:
        return "Successful", ""
    if not metric.failure_condition:
        failure = not success
    elif not metric.success_condition:
        success = not failure
    if failure:
        return "Failed", ""
    return ("Successful", "") if success else ("Inconclusive", "")


def record(status: dict[str, Any], name: str, measurement: dict[str, Any],
           keep: int | None = None, dry_run: bool = False) -> dict[str, Any]:
    """``status`` with ``measurement`` (phase, value, message, startedAt, finishedAt)
    added to metric ``name``'s result and counts (``runMeasurements``); the last ``keep``
    measurements are kept (measurementRetention; default 10)."""
    out = copy.deepcopy(status)
    results = out.setdefault("metricResults", [])
    result = _result(out, name)
    if result is None:
        result = {"name": name, "phase": "Running", "count": 0, "successful": 0,
                  "failed": 0, "inconclusive": 0, "error": 0, "consecutiveError": 0,
                  "measurements": [], **({"dryRun": True} if dry_run else {})}
        results.append(result)
    phase = measurement["phase"]
    key = {"Successful": "successful", "Failed": "failed", "Inconclusive": "inconclusive",
           "Error": "error"}[phase]
    result[key] = int(result.get(key) or 0) + 1
    if phase == "Error":
        result["consecutiveError"] = int(result.get("consecutiveError") or 0) + 1
    else:
        result["count"] = int(result.get("count") or 0) + 1
        result["consecutiveError"] = 0
    kept = [*(result.get("measurements") or []), {k: v for k, v in measurement.items()
                                                   if v not in (None, "")}]
    result["measurements"] = kept[-(keep or MEASUREMENT_HISTORY_LIMIT):]
    return out


def _limits_broken(metric: Metric, result: dict[str, Any]) -> tuple[str, str]:
    """(phase, reason) when a limit is exceeded, else ("", "")
    (``assessMetricFailureInconclusiveOrError``: the last broken limit wins)."""
    phase = reason = ""
    failure_limit = metric.failure_limit if metric.failure_limit is not None else 0
    failed = int(result.get("failed") or 0)
    if failure_limit >= 0 and failed > failure_limit:
        phase, reason = "Failed", f"failed ({failed}) > failureLimit ({failure_limit})"
    inconclusive_limit = metric.inconclusive_limit or 0
    inconclusive = int(result.get("inconclusive") or 0)
    if inconclusive > inconclusive_limit:
        phase, reason = "Inconclusive", (f"inconclusive ({inconclusive}) > "
                                         f"inconclusiveLimit ({inconclusive_limit})")
    error_limit = (metric.consecutive_error_limit if metric.consecutive_error_limit
                   is not None else DEFAULT_CONSECUTIVE_ERROR_LIMIT)
    errors = int(result.get("consecutiveError") or 0)
    if errors > error_limit:
        phase, reason = "Error", (f"consecutiveErrors ({errors}) > consecutiveErrorLimit "
                                  f"({error_limit})")
    return phase, reason


def _metric_phase(metric: Metric, result: dict[str, Any] | None, ending: bool) -> str:
    """``assessMetricStatus`` for measurements taken synchronously."""
    if result is not None and result.get("phase") in COMPLETED:
        return str(result["phase"])
    if not result or not result.get("measurements"):
        return "Successful" if ending else "Pending"
    broken, _ = _limits_broken(metric, result)
    if broken:
        return broken
    count = metric.effective_count
    if count is not None and int(result.get("count") or 0) >= count:
        return "Successful"
    return "Successful" if ending else "Running"


def _worse(current: str, new: str) -> bool:
    return _ORDER.index(new) > _ORDER.index(current)


def _set_phase(result: dict[str, Any], phase: str) -> None:
    if result.get("phase") != phase:
        result["phase"] = phase
        last = (result.get("measurements") or [{}])[-1]
        if last.get("message"):
            result["message"] = last["message"]


def _summary(count: int) -> dict[str, int]:
    return {"count": count, "successful": 0, "failed": 0, "inconclusive": 0, "error": 0}


def _reason(metric: Metric, result: dict[str, Any], phase: str) -> str:
    _, reason = _limits_broken(metric, result)
    if not reason:
        return ""
    message = f'Metric "{metric.name}" assessed {phase} due to {reason}'
    if result.get("message"):
        message += f': "Error Message: {result["message"]}"'
    return message


def assess(metrics: list[Metric], status: dict[str, Any], now: float,
           terminate: bool = False, dry_run: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``status`` with each metric's phase, the run's phase and message, its summaries,
    startedAt and (once completed) completedAt (``assessRunStatus``). A ``dry_run``
    metric is measured and shown but does not decide the run (``dryRunSummary``)."""
    out = copy.deepcopy(status)
    out.setdefault("metricResults", [])
    out.setdefault("startedAt", timestamp(now))
    ending = terminating(terminate, out)
    worst, message, completed = "", "Run Terminated" if terminate else "", True
    judged = [m for m in metrics if m.name not in dry_run]
    summary, dry_summary = _summary(len(judged)), _summary(len(metrics) - len(judged))
    for metric in metrics:
        result = _result(out, metric.name)
        phase = _metric_phase(metric, result, ending)
        if result is not None:
            _set_phase(result, phase)
        if phase not in COMPLETED:
            completed = False
        elif result is None:
            continue
        elif metric.name in dry_run:
            dry_summary[phase.lower()] += 1
            worst = worst or "Successful"
        else:
            summary[phase.lower()] += 1
            if not worst or _worse(worst, phase):
                worst, message = phase, _reason(metric, result, phase) or message
    out["runSummary"] = summary
    if dry_run:
        out["dryRunSummary"] = dry_summary
    if ending:
        run_phase = worst or "Successful"
    elif not completed or not worst:
        run_phase, message = "Running", ""
    else:
        run_phase = worst
    out["phase"], out["message"] = run_phase, message
    if run_phase in COMPLETED:
        out.setdefault("completedAt", timestamp(now))
    return out

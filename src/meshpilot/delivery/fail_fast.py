"""Fail-fast: judge a failing canary as soon as its failures are conclusive.

Flagger judges a check once per analysis interval, over the check's window. Every
moment a bad revision keeps user traffic costs failed requests, so between interval
ends the controller also looks at the built-in request success rate on every tick and
counts a failed check at once when the evidence cannot be explained by bad luck: at
least :data:`MIN_FAILURES` failed requests, and even the most generous estimate of the
canary's success rate (the upper end of a one-sided 99 % Wilson score interval over
what it served so far) is below the check's minimum. A healthy canary that happens to
fail one request early is never judged this way; a revision failing half its requests
is judged after its second failure is seen, not after the interval.

The evidence is the canary's counts since a baseline the rollout keeps (the
``LiveCounts`` port): the answers its sidecars reported to the control plane as they
happened (every answer, so the deciding failure needs no read of the sidecars between
its report and the judgement), else their counters read live (a sidecar that has served
nothing counts zero), else the telemetry's last cycles. Ticks come every 0.1 s while the
canary holds traffic, and at once when its sidecars report a failed request (the control
plane's ``failures_reported``).

The judgement counts as that interval's failed check (the next interval starts from it),
so ``threshold`` keeps its meaning: with threshold 1 it rolls back at once, with 5 it
takes five conclusive intervals. ``meshpilot.io/fail-fast: "false"`` turns it off.
"""

from __future__ import annotations

import math

from meshpilot.api.flagger import CanaryMetric
from meshpilot.delivery.checks import CheckContext, threshold_bounds
from meshpilot.delivery.state import CheckRecord

SUCCESS_RATE = "request-success-rate"
MIN_FAILURES = 2
"""One failure is never conclusive: it may be the one bad request a good revision has."""
Z_ONE_SIDED_99 = 2.326
"""The standard normal quantile for 99 % one-sided confidence."""


def wilson_upper(successes: int, total: int, z: float = Z_ONE_SIDED_99) -> float:
    """The upper end of the Wilson score interval for a proportion (0..1): the highest
    true success rate that ``successes`` of ``total`` is still plausible under."""
    if total <= 0:
        return 1.0
    p = successes / total
    z2 = z * z
    centre = p + z2 / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return min(1.0, (centre + spread) / (1 + z2 / total))


def judged_metric(metric: CanaryMetric) -> float | None:
    """The minimum success rate (%) fail-fast holds ``metric`` to: only the built-in
    request success rate with a minimum is judged this way; None for any other."""
    if metric.name != SUCCESS_RATE or metric.template_ref is not None or metric.query:
        return None
    return threshold_bounds(metric, "min")[0]


def conclusive(minimum: float, requests: int, failures: int) -> float | None:
    """The most generous success rate (%) still plausible for ``failures`` of
    ``requests`` when even that is below ``minimum`` (%): the canary is proven bad
    beyond bad luck; None when it is not (fewer than :data:`MIN_FAILURES` failures, or
    the bound reaches the minimum)."""
    if requests <= 0 or failures < MIN_FAILURES:
        return None
    upper = 100.0 * wilson_upper(requests - failures, requests)
    return upper if upper < minimum else None


def judge(metric: CanaryMetric, requests: int, failures: int) -> CheckRecord | None:
    """A failed record when ``failures`` of ``requests`` prove the canary below the
    metric's minimum beyond bad luck; else None (also for metrics not judged so)."""
    minimum = judged_metric(metric)
    upper = None if minimum is None else conclusive(minimum, requests, failures)
    if minimum is None or upper is None:
        return None
    value = 100.0 * (requests - failures) / requests
    return CheckRecord(
        metric.name, "fail", value=value, samples=requests,
        message=f"{metric.name} {value:.4g}% < {minimum:g}% ({requests} requests, "
                f"{failures} failed; at most {upper:.3g}% at 99% confidence): conclusive "
                "before the interval ended (fail-fast)")


def conclusive_failure(metric: CanaryMetric, ctx: CheckContext) -> CheckRecord | None:
    """:func:`judge` on the telemetry's last cycles: the canary's requests since
    ``ctx.evidence_since`` (used when its proxies cannot be read live)."""
    if judged_metric(metric) is None or ctx.now is None or ctx.evidence_since is None:
        return None
    window = max(1.0, ctx.now - ctx.evidence_since)
    sample = ctx.metrics.success_rate(ctx.namespace, ctx.target, window)
    if sample.value is None or sample.requests <= 0:
        return None
    failures = round(sample.requests * (100.0 - sample.value) / 100.0)
    return judge(metric, sample.requests, failures)

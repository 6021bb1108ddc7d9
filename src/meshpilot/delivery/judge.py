"""Statistics for comparing the canary with the primary.

A success rate is a proportion of independent requests, so the right question — "is the
canary's rate significantly below the primary's?" — is answered exactly enough by a
one-sided two-proportion z-test (the normal approximation of the binomial). It is what a
Mann-Whitney U test (Kayenta's judge) reduces to on 0/1 outcomes, needs nothing beyond
``math``, and is valid at the sample sizes the minimum-request rule already enforces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class ProportionTest:
    significant: bool
    """True when the canary is significantly worse than allowed."""
    z: float
    p_value: float


def proportion_below(
    canary_ok: int,
    canary_n: int,
    primary_ok: int,
    primary_n: int,
    *,
    confidence: float = 0.98,
    allowed_drop: float = 0.0,
) -> ProportionTest:
    """One-sided test of H1: canary rate < primary rate - ``allowed_drop`` (a fraction).

    With no allowed drop the pooled standard error is used (the classic test of equal
    proportions); with one, the unpooled error of the difference. ``significant`` means
    the p-value is below ``1 - confidence``.
    """
    if canary_n <= 0 or primary_n <= 0:
        return ProportionTest(False, 0.0, 1.0)
    pc = canary_ok / canary_n
    pp = primary_ok / primary_n
    diff = pc - (pp - allowed_drop)
    if allowed_drop == 0.0:
        pooled = (canary_ok + primary_ok) / (canary_n + primary_n)
        se = math.sqrt(pooled * (1 - pooled) * (1 / canary_n + 1 / primary_n))
    else:
        se = math.sqrt(pc * (1 - pc) / canary_n + pp * (1 - pp) / primary_n)
    if se == 0.0:
        worse = diff < 0
        return ProportionTest(worse, -math.inf if worse else 0.0, 0.0 if worse else 1.0)
    z = diff / se
    p_value = normal_cdf(z)
    return ProportionTest(p_value < 1.0 - confidence, z, p_value)

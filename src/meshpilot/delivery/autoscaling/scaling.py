"""From the metrics' proposal to the replicas written: stabilisation, rate limits and the
min/max bounds, as Kubernetes' HPA controller applies them (``horizontal.go``).

Without ``behavior``: a scale-down takes the highest recommendation of the last
stabilisation window (300 s by default), a scale-up is limited to max(2 * current, 4)
per sync, and the result is clamped to min/max. With ``behavior``: each direction has
its stabilisation window (the lowest recent recommendation for a scale-up, the highest
for a scale-down) and its policies (Pods or Percent per period, the largest change
allowed by default, the smallest with ``selectPolicy: Min``, none with ``Disabled``),
counted against the scale events of each policy's period.

The recommendations and scale events are per autoscaler and live in a
:class:`ScalingHistory` owned by the controller (in memory, as in Kubernetes: a restart
forgets them, which errs towards not scaling down too soon only for one window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from meshpilot.api.autoscaling import HorizontalPodAutoscalerBehavior, HPAScalingRules

DOWNSCALE_STABILISATION_SECONDS = 300.0
"""Kubernetes' ``--horizontal-pod-autoscaler-downscale-stabilization``."""



@dataclass(frozen=True)
class Policy:
    """One scaling policy: at most ``value`` pods (or percent) per ``period_seconds``."""

    type: str
    value: int
    period_seconds: int


SCALE_UP_POLICIES = (Policy("Pods", 4, 15), Policy("Percent", 100, 15))
SCALE_DOWN_POLICIES = (Policy("Percent", 100, 15),)
"""The API server's defaults for ``behavior`` policies left out."""


@dataclass(frozen=True)
class Rules:
    """One direction's behavior, defaults filled in."""

    window: float
    select: str
    policies: tuple[Policy, ...]


def _policies(rules: HPAScalingRules | None, default: tuple[Policy, ...]) -> tuple[Policy, ...]:
    if rules is None or not rules.policies:
        return default
    return tuple(Policy(p.type, p.value, p.period_seconds) for p in rules.policies)


def rules_of(behavior: HorizontalPodAutoscalerBehavior | None) -> tuple[Rules, Rules]:
    """(scale-up, scale-down) rules with the API server's and controller's defaults."""
    up = behavior.scale_up if behavior else None
    down = behavior.scale_down if behavior else None
    up_window = up.stabilization_window_seconds if up else None
    down_window = down.stabilization_window_seconds if down else None
    return (
        Rules(float(up_window or 0), (up and up.select_policy) or "Max",
              _policies(up, SCALE_UP_POLICIES)),
        Rules(float(DOWNSCALE_STABILISATION_SECONDS if down_window is None else down_window),
              (down and down.select_policy) or "Max", _policies(down, SCALE_DOWN_POLICIES)),
    )


@dataclass(frozen=True)
class Outcome:
    """The replicas to run, and why, as the AbleToScale and ScalingLimited conditions
    say it."""

    replicas: int
    able_reason: str
    able_message: str
    limited: bool
    limit_reason: str
    limit_message: str


@dataclass
class ScalingHistory:
    """One autoscaler's recent recommendations and scale events: (time, value)."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def record_scale(self, now: float, previous: int, replicas: int, horizon: float) -> None:
        """Remember a scale from ``previous`` to ``replicas``; events older than
        ``horizon`` seconds (the longest policy period) are dropped."""
        events = self.up_events if replicas > previous else self.down_events
        events[:] = [e for e in events if e[0] > now - horizon]
        events.append((now, abs(replicas - previous)))

    def forget_before(self, cutoff: float) -> None:
        self.recommendations = [r for r in self.recommendations if r[0] > cutoff]


_WITHIN = ("DesiredWithinRange", "the desired count is within the acceptable range")
_READY = ("ReadyForNewScale", "recommended size matches current size")
_DOWN_STABILISED = ("ScaleDownStabilized", "recent recommendations were higher than current "
                    "one, applying the highest recent recommendation")
_UP_STABILISED = ("ScaleUpStabilized", "recent recommendations were lower than current one, "
                  "applying the lowest recent recommendation")
_TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica "
             "count")
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica "
            "count")
_UP_LIMIT = ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum "
             "scale rate")
_DOWN_LIMIT = ("ScaleDownLimit", "the desired replica count is decreasing faster than the "
               "maximum scale rate")


def _outcome(stabilised: int, proposed: int, replicas: int,
             limit: tuple[str, str]) -> Outcome:
    if stabilised > proposed:
        able = _DOWN_STABILISED
    elif stabilised < proposed:
        able = _UP_STABILISED
    else:
        able = _READY
    reason = limit if replicas != stabilised else _WITHIN
    return Outcome(replicas, *able, replicas != stabilised, *reason)


def normalize_default(history: ScalingHistory, now: float, current: int, proposed: int,
                      min_replicas: int, max_replicas: int) -> Outcome:
    """Kubernetes' ``normalizeDesiredReplicas`` (an autoscaler without ``behavior``)."""
    history.forget_before(now - DOWNSCALE_STABILISATION_SECONDS)
    stabilised = max([proposed, *(r for _, r in history.recommendations)])
    history.recommendations.append((now, proposed))
    up_limit = max(2 * current, 4)
    allowed, limit = (up_limit, _UP_LIMIT) if max_replicas > up_limit else (max_replicas,
                                                                              _TOO_MANY)
    if stabilised < min_replicas:
        return _outcome(stabilised, proposed, min_replicas, _TOO_FEW)
    if stabilised > allowed:
        return _outcome(stabilised, proposed, allowed, limit)
    return _outcome(stabilised, proposed, stabilised, _WITHIN)


def _changed_within(events: list[tuple[float, int]], now: float, period: float) -> int:
    return sum(change for at, change in events if at > now - period)


def _up_limit(current: int, history: ScalingHistory, now: float, rules: Rules) -> int:
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = current - _changed_within(history.up_events, now, policy.period_seconds)
        proposals.append(start + policy.value if policy.type == "Pods"
                         else math.ceil(start * (1 + policy.value / 100)))
    return (min if rules.select == "Min" else max)(proposals)


def _down_limit(current: int, history: ScalingHistory, now: float, rules: Rules) -> int:
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = current + _changed_within(history.down_events, now, policy.period_seconds)
        proposals.append(start - policy.value if policy.type == "Pods"
                         else int(start * (1 - policy.value / 100)))
    # Min picks the policy that removes the fewest pods, Max the one removing the most
    return (max if rules.select == "Min" else min)(proposals)


def _stabilise(history: ScalingHistory, now: float, current: int, proposed: int,
               up: Rules, down: Rules) -> int:
    """Kubernetes' ``stabilizeRecommendationWithBehaviors``: the current count moved
    towards the proposal no further than every recommendation of each window allows."""
    up_bound = min([proposed, *(r for at, r in history.recommendations if at > now - up.window)])
    down_bound = max([proposed, *(r for at, r in history.recommendations
                                  if at > now - down.window)])
    history.forget_before(now - max(up.window, down.window))
    history.recommendations.append((now, proposed))
    return min(max(current, up_bound), down_bound)


def normalize_with_behavior(history: ScalingHistory, now: float, current: int, proposed: int,
                            min_replicas: int, max_replicas: int,
                            behavior: HorizontalPodAutoscalerBehavior) -> Outcome:
    """Kubernetes' ``normalizeDesiredReplicasWithBehaviors``."""
    up, down = rules_of(behavior)
    stabilised = _stabilise(history, now, current, proposed, up, down)
    if stabilised > current:
        limit = max(_up_limit(current, history, now, up), current)
        allowed, why = (limit, _UP_LIMIT) if max_replicas > limit else (max_replicas, _TOO_MANY)
        if stabilised > allowed:
            return _outcome(stabilised, proposed, allowed, why)
    elif stabilised < current:
        limit = min(_down_limit(current, history, now, down), current)
        allowed, why = (limit, _DOWN_LIMIT) if min_replicas < limit else (min_replicas, _TOO_FEW)
        if stabilised < allowed:
            return _outcome(stabilised, proposed, allowed, why)
    return _outcome(stabilised, proposed, stabilised, _WITHIN)


def longest_period(behavior: HorizontalPodAutoscalerBehavior | None) -> float:
    """How long scale events matter: the longest policy period of either direction."""
    up, down = rules_of(behavior)
    return float(max(p.period_seconds for p in (*up.policies, *down.policies)))

"""Fail-fast for an Argo canary: a meshpilot extension, off unless a Rollout asks for it.

Argo Rollouts judges a canary only when an analysis measurement is taken, so a revision
failing half its requests keeps its share of user traffic until the next measurement
(``benchmarks/argo_rollback.py``: 11 to 19 failed requests at 100 req/s). Argo has no
judgement between measurements, so neither does meshpilot by default. A Rollout
annotated ``meshpilot.io/fail-fast-min-success-rate: "99"`` opts in: while its canary
revision holds traffic, every tick (0.1 s apart, as for a Flagger Canary) reads the
canary pods' sidecar counters, and once their failures prove the canary below that
success rate beyond bad luck (the same rule as Flagger's fail-fast,
:func:`meshpilot.delivery.fail_fast.conclusive`: at least two failures, and the 99 %
upper bound below the minimum) the Rollout is aborted, as Argo aborts on a failed
analysis: all traffic back to stable, the running analyses terminated, and the reason in
the Rollout's message.

The evidence counts from zero for each canary revision (its pods are new) and from the
counters seen at an abort once the Rollout is retried; it is kept in memory, so after a
control-plane restart the revision's counters count from its pods' start.
"""

from __future__ import annotations

import threading

from meshpilot.api.argo import FAIL_FAST_MIN_SUCCESS_ANNOTATION, Rollout
from meshpilot.delivery.argo import workloads
from meshpilot.delivery.argo.status import ArgoState
from meshpilot.delivery.fail_fast import conclusive
from meshpilot.delivery.ports import LiveCounts

_Key = tuple[str, str]


def minimum_success_rate(rollout: Rollout) -> float | None:
    """The success rate (%) a Rollout's canary is held to between measurements; None
    when it did not opt in, or runs blue-green (no canary share to judge)."""
    raw = rollout.metadata.annotations.get(FAIL_FAST_MIN_SUCCESS_ANNOTATION)
    if raw is None or rollout.spec.strategy.canary is None:
        return None
    return float(raw)  # validated at apply


def canary_workload(rollout: Rollout, st: ArgoState) -> str | None:
    """The canary revision's Deployment while it holds traffic under a Rollout that
    opted in, else None: what fail-fast reads (and what makes the Rollout hot)."""
    if (minimum_success_rate(rollout) is None or st.abort or st.promoted
            or st.canary_weight <= 0 or not st.current_pod_hash):
        return None
    return workloads.revision_name(rollout, st.current_pod_hash)


class ArgoFailFast:
    """Judges opted-in Rollouts' canaries on their live counters; remembers, per
    Rollout, the counters its evidence counts from."""

    def __init__(self, live: LiveCounts) -> None:
        self._live = live
        self._lock = threading.Lock()
        self._since: dict[_Key, tuple[str, int, int]] = {}
        """(namespace, name) -> (canary workload, requests, failed) evidence counts from."""

    def verdict(self, rollout: Rollout, st: ArgoState) -> str | None:
        """Why the Rollout is to be aborted now, or None."""
        key = (rollout.metadata.namespace, rollout.metadata.name)
        workload = canary_workload(rollout, st)
        minimum = minimum_success_rate(rollout)
        if workload is None or minimum is None:
            return None
        counts = self._live.live_counts(key[0], workload)
        if counts is None:
            return None
        requests, failed = self._since_baseline(key, workload, counts)
        upper = conclusive(minimum, requests, failed)
        if upper is None:
            return None
        with self._lock:  # a retry judges only what comes after this
            self._since[key] = (workload, *counts)
        rate = 100.0 * (requests - failed) / requests
        return (f"fail-fast (meshpilot extension): the canary's success rate {rate:.4g}% "
                f"< {minimum:g}% ({requests} requests, {failed} failed; at most "
                f"{upper:.3g}% at 99% confidence) before its analysis measured it")

    def _since_baseline(self, key: _Key, workload: str, counts: tuple[int, int]
                        ) -> tuple[int, int]:
        with self._lock:
            since = self._since.get(key)
            if since is None or since[0] != workload or counts[0] < since[1] or (
                    counts[1] < since[2]):  # a new revision, or its pods restarted
                since = self._since[key] = (workload, 0, 0)
        return counts[0] - since[1], counts[1] - since[2]

    def forget(self, namespace: str, name: str) -> None:
        """A deleted Rollout's evidence goes with it."""
        with self._lock:
            self._since.pop((namespace, name), None)

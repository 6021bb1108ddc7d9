"""How soon the next mesh rebuild may start: a token bucket, not a fixed gap.

The control plane rebuilds the mesh on every store change, at most one rebuild per
``interval`` on average so that a burst of changes (an apply of a thousand objects, a
flapping pod) is coalesced. A fixed gap after each rebuild also delayed the second of two
changes made a few milliseconds apart: a rollout's status write followed by its route
write, whose rebuild then waited out the gap (about 45 ms measured by
``benchmarks/rollback.py --timeline``) while a bad canary kept failing user requests. A
bucket of ``burst`` rebuilds lets such a pair through at once and still holds the average
rate to one per ``interval``.
"""

from __future__ import annotations


class RebuildPacer:
    """Tokens refill at one per ``interval`` seconds up to ``burst``; a rebuild takes one."""

    def __init__(self, interval: float, burst: int = 2) -> None:
        self.interval = interval
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at: float | None = None

    def wait(self, now: float) -> float:
        """Seconds to wait from ``now`` before the next rebuild may start (0: at once)."""
        return max(0.0, (1.0 - self._level(now)) * self.interval)

    def take(self, now: float) -> None:
        """A rebuild starts at ``now``."""
        self._tokens = max(0.0, self._level(now) - 1.0)
        self._at = now

    def _level(self, now: float) -> float:
        if self._at is None:
            return self._tokens
        return min(self.burst, self._tokens + max(0.0, now - self._at) / self.interval)

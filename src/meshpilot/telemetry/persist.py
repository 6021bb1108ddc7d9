"""The Istio series' state on disk, so a restarted control plane never makes them go back.

Prometheus takes a counter that decreases for a reset: ``rate()`` copes, but a sum over
series, ``increase()`` across the restart and every raw reading see the counts fall. The
series are cumulative sums that the control plane keeps (:mod:`~meshpilot.telemetry.store`):
after a proxy restart they are offsets above what the proxy reports. Without this file a
restarted control plane would start them from the proxies' own counters again, lower
whenever a proxy had restarted before, and lose the series of stats that are gone.

The file holds every series and every stat's last raw reading with the process it came
from. It is written after a scrape cycle that changed something (a new file renamed over
the old: a crash leaves the previous one whole), and when telemetry stops. Writing costs
time in proportion to the series (about 35 ms of CPU per 1,000 series, 1.3 MB, on the
2-core machine the project is measured on), so the writes are spaced by :data:`SPACING`
times what the last one took, at least: after every cycle in a small mesh, every four
or five seconds with a hundred busy proxies of 60 series each. On start
it is read back: a proxy still running as the same process (adopted after a crash)
continues from its last readings, one that is a new process adds its counts on top.
Readings made between the last write and a crash are not lost while that proxy lives:
the next reading's increment includes them; only a proxy that also restarted in that
window loses them (its series may then fall back by that much).

Mode 0600: the series name the mesh's workloads, callers and their traffic.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from meshpilot.jsonfile import write_json_atomic
from meshpilot.telemetry.store import SeriesStore

log = logging.getLogger(__name__)

FORMAT = 1
"""The file's layout version; a file of another version is not read."""
SPACING = 20.0
"""A write waits at least this many times the last write's duration after it, so that
writing never takes more than about 5% of a CPU."""


class CounterFile:
    """The series state of ``store`` at ``path``: :meth:`load` once, :meth:`save` often."""

    def __init__(self, path: Path, store: SeriesStore,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.store = store
        self.clock = clock
        self._saved = -1  # the store's change count at the last save
        self._next = 0.0  # no write before this (clock time)

    def load(self) -> bool:
        """Restore the store from the file; False (the store untouched) when there is no
        file or it cannot be read, which is logged: the series then start afresh."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            log.warning("telemetry: %s unreadable, series start afresh: %s", self.path, exc)
            return False
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            log.warning("telemetry: %s is not a series file of format %s; ignored",
                        self.path, FORMAT)
            return False
        try:
            self.store.restore(doc["proxies"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("telemetry: %s malformed, series start afresh: %s", self.path, exc)
            return False
        self._saved = self.store.changes
        return True

    def save(self, *, now: bool = False) -> bool:
        """Write the store when it changed since the last write and the last write is
        long enough ago (``now``: whenever it changed, as on stop); True if written."""
        changes = self.store.changes
        if changes == self._saved:
            return False
        started = self.clock()
        if not now and started < self._next:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"format": FORMAT, "proxies": self.store.export()},
                          mode=0o600, indent=None)
        self._saved = changes
        ended = self.clock()
        self._next = ended + SPACING * (ended - started)
        return True

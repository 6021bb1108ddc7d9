"""Telemetry: Envoy's stats → Istio's standard metrics; exposition; embedded queries.

- :mod:`~meshpilot.telemetry.envoy_stats` parses a proxy's admin stats;
- :mod:`~meshpilot.telemetry.istio` relabels them into Istio series;
- :mod:`~meshpilot.telemetry.store` keeps them monotonic across proxy restarts, and
  :mod:`~meshpilot.telemetry.persist` across control-plane restarts;
- :mod:`~meshpilot.telemetry.history` and :mod:`~meshpilot.telemetry.query` answer
  rate / success rate / quantile questions the way Prometheus would;
- :mod:`~meshpilot.telemetry.scraper` reads every proxy on a timer;
- :mod:`~meshpilot.telemetry.exposition` serves ``/metrics`` and ``/http_sd``.
"""

from meshpilot.telemetry.history import History
from meshpilot.telemetry.istio import ProxyIdentity
from meshpilot.telemetry.query import Matcher, Query, extrapolated_rate, histogram_quantile
from meshpilot.telemetry.scraper import Scraper, Target
from meshpilot.telemetry.service import MeshTelemetry
from meshpilot.telemetry.store import SeriesStore

__all__ = [
    "History",
    "Matcher",
    "MeshTelemetry",
    "ProxyIdentity",
    "Query",
    "Scraper",
    "SeriesStore",
    "Target",
    "extrapolated_rate",
    "histogram_quantile",
]

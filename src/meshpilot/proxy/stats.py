"""What a meshpilot Envoy keeps in its stats store (``stats_config``), and when it flushes.

Istio's proxies keep a short inclusion list; so do ours. Envoy instantiates a stat only
if a pattern below matches its name, so everything else costs neither memory nor time.
Kept:

- per outbound/inbound cluster: the ``upstream_rq_*`` counters (per code, retries,
  timeouts, pending overflows), a few connection counters (bytes, opened/closed: the
  TCP metrics), membership and outlier ejections. Not the clusters' histograms
  (``upstream_rq_time``, the request and response size histograms): the requests'
  durations and sizes are recorded per code and flags by the connection managers'
  loggers, and a histogram the matcher leaves out costs the router nothing per request;
- per inbound HTTP port: the request counters (per response code and flags) and
  duration and size histograms that carry the *source* workload, which the inbound
  listener's stats access logger writes (see :mod:`meshpilot.mesh.sources`); the same
  per upstream cluster, which every outbound connection manager's logger writes;
- per inbound TCP port: on the plaintext chain the tcp_proxy's connections opened and
  bytes each way, and the closes its stats access logger counts; on the mutual TLS chain
  the same four counts per caller, from its stats access loggers;
- ``server.``, ``cluster_manager.``, ``listener_manager.``, ``control_plane.`` and the
  connection managers' downstream request totals, for debugging.

Envoy also charges ``cluster.X.external.upstream_rq_*`` / ``internal.`` copies of every
code stat; they are left out (the last four characters before ``.upstream_rq`` must not
be ``rnal``; a host ending in ``rnal`` would lose its copy too, an accepted corner).

``stats_flush_on_admin``: histograms are merged when the admin endpoint is read, so a
scrape sees counters and histograms of the same instant (the default 5 s flush timer
would let histograms lag the counters).
"""

from __future__ import annotations

import re
from typing import Any

from meshpilot.mesh.sources import (
    DURATION_STAT,
    INBOUND_STATS,
    MUTUAL_TLS,
    NO_TLS,
    OUTBOUND_STATS,
    PEER_TAG,
    REQUEST_BYTES_STAT,
    REQUESTS_STAT,
    RESPONSE_BYTES_STAT,
    TCP_CLOSED_STAT,
    TCP_OPENED_STAT,
    TCP_RECEIVED_STAT,
    TCP_SENT_STAT,
    TCP_STATS,
)

_CLUSTER = r"^cluster\.(outbound|inbound)\|.*"
_NOT_EXTERNAL = r"([^r]...|.[^n]..|..[^a].|...[^l])"
_EGRESS = r"^cluster\.(PassthroughCluster|BlackHoleCluster)"
"""Istio's two clusters for hosts outside the registry (the outbound traffic policy's):
their requests are counted as Istio counts them."""

KEPT_STATS: tuple[str, ...] = (
    _CLUSTER + _NOT_EXTERNAL + r"\.upstream_rq_([0-9][0-9a-z_]*|[acmpr][0-9a-z_]*"
    r"|timeout|total|tx_reset)$",
    _CLUSTER + r"\.upstream_cx_(total|destroy|active|rx_bytes_total|tx_bytes_total"
    r"|connect_fail|none_healthy)$",
    _CLUSTER + r"\.(membership_(healthy|total)|outlier_detection\.ejections_(active|total))$",
    "^(" + re.escape(INBOUND_STATS) + "[0-9]+|" + re.escape(OUTBOUND_STATS.rstrip("."))
    + rf")\.({REQUESTS_STAT}|{DURATION_STAT}|{REQUEST_BYTES_STAT}|{RESPONSE_BYTES_STAT})\..*",
    "^" + re.escape(TCP_STATS) + rf"[0-9]+\.{NO_TLS}"
    r"\.downstream_cx_(total|rx_bytes_total|tx_bytes_total)$",
    "^" + re.escape(INBOUND_STATS) + rf"[0-9]+\.{NO_TLS}\.{TCP_CLOSED_STAT}$",
    "^" + re.escape(INBOUND_STATS) + rf"[0-9]+\.{MUTUAL_TLS}\.({TCP_OPENED_STAT}|"
    rf"{TCP_CLOSED_STAT}|{TCP_RECEIVED_STAT}|{TCP_SENT_STAT})\.{PEER_TAG}\..*",
    r"^http\.[^.]+\.downstream_(rq_([1-5]xx|total|active)|cx_(total|active))$",
)
KEPT_PREFIXES: tuple[str, ...] = ("server.", "cluster_manager.", "listener_manager.",
                                  "control_plane.")


def stats_config() -> dict[str, Any]:
    """The bootstrap fragment (merged into the bootstrap document)."""
    patterns: list[dict[str, Any]] = [{"safe_regex": {"regex": r}} for r in KEPT_STATS]
    patterns += [{"prefix": p} for p in KEPT_PREFIXES]
    return {
        "stats_config": {
            "stats_matcher": {"inclusion_list": {"patterns": patterns}},
        },
        "stats_flush_on_admin": True,
    }

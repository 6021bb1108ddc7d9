"""Envoy's admin stats, parsed.

We read ``/stats?format=json&histogram_buckets=detailed``: names arrive raw (the
Prometheus endpoint mangles ``|`` and dots in cluster and virtual-cluster names into
tags), counters are exact, and each histogram comes as Envoy's own bins
(``lower_bound``, ``width``, ``count``), from which any bucket layout can be computed —
Istio's duration buckets and its byte buckets alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from meshpilot.mesh.sources import (
    CODE_TAG,
    DURATION_STAT,
    GRPC_TAG,
    INBOUND_STATS,
    MUTUAL_TLS,
    NO_TLS,
    REQUESTS_STAT,
    SOURCE_TAG,
    TCP_CLOSED_STAT,
    TCP_STATS,
)

STATS_PATH = "/stats"
STATS_PARAMS = MappingProxyType({"format": "json", "histogram_buckets": "detailed", "filter": (
    r"^(cluster\.((outbound|inbound)\||PassthroughCluster\.|BlackHoleCluster\.)|"
    + re.escape(INBOUND_STATS) + "|"
    + re.escape(TCP_STATS) + ")")})
"""Only what telemetry needs: cluster stats, the inbound request counters and the inbound
TCP chains' connection counters."""

Bin = tuple[float, float, float]  # lower bound, width, count


@dataclass(frozen=True)
class Histogram:
    """An Envoy histogram's cumulative bins (since the proxy started)."""

    bins: tuple[Bin, ...] = ()

    @property
    def count(self) -> float:
        return float(sum(c for _, _, c in self.bins))

    @property
    def sum(self) -> float:
        """Sum of bin midpoint times count (Envoy keeps no exact sum in its detailed output;
        latencies are whole milliseconds, so this is within half a bin width)."""
        return float(sum((lo + w / 2.0) * c for lo, w, c in self.bins))

    def cumulative(self, bounds: Sequence[float]) -> tuple[float, ...]:
        """Observations ``<= bound`` for each bound, then the total (``+Inf``).

        A bin counts below a bound when it ends at or before it, as Envoy's own
        Prometheus output does (a value of exactly 25 ms lands in Envoy's bin
        [25, 26) and so above the 25 bucket).
        """
        out = []
        for bound in bounds:
            out.append(float(sum(c for lo, w, c in self.bins if lo + w <= bound + 1e-9)))
        out.append(self.count)
        return tuple(out)


@dataclass(frozen=True)
class RawStats:
    counters: Mapping[str, float] = field(default_factory=dict)
    histograms: Mapping[str, Histogram] = field(default_factory=dict)


def parse_json(doc: Mapping[str, Any] | str | bytes) -> RawStats:
    """Parse ``/stats?format=json`` (detailed histograms, or none)."""
    if isinstance(doc, str | bytes):
        doc = json.loads(doc)
    counters: dict[str, float] = {}
    histograms: dict[str, Histogram] = {}
    for item in doc.get("stats", []):  # type: ignore[union-attr]
        if "name" in item and "value" in item:
            counters[item["name"]] = float(item["value"])
            continue
        hist = item.get("histograms")
        if not isinstance(hist, Mapping):
            continue
        for detail in hist.get("details", []):
            bins = tuple(
                (float(t.get("lower_bound", 0)), float(t.get("width", 0)),
                 float(t.get("count", 0)))
                for t in detail.get("totals", [])
            )
            histograms[detail["name"]] = Histogram(bins)
    return RawStats(counters, histograms)


# --- stat names -------------------------------------------------------------------------

CLUSTER_STAT = re.compile(
    r"^cluster\.(?P<cluster>(?:outbound|inbound)\|[^|]*\|[^|]*\|.*?|PassthroughCluster"
    r"|BlackHoleCluster)\.(?P<stat>[a-z_]+[0-9]*)$")
INBOUND_STAT = re.compile(
    "^" + re.escape(INBOUND_STATS) + r"(?P<port>[0-9]+)\."
    rf"(?:{REQUESTS_STAT}\.{CODE_TAG}\.(?P<code>[0-9]+)(?:\.{GRPC_TAG}\.(?P<grpc>[^.]*))?"
    rf"|(?P<duration>{DURATION_STAT}))"
    rf"\.{SOURCE_TAG}\.(?P<source>.*)$")
INBOUND_TCP_STAT = re.compile(
    "^(?:" + re.escape(TCP_STATS) + "|" + re.escape(INBOUND_STATS) + r")(?P<port>[0-9]+)\."
    rf"(?P<policy>{MUTUAL_TLS}|{NO_TLS})\."
    rf"(?P<stat>downstream_cx_(?:total|rx_bytes_total|tx_bytes_total)|{TCP_CLOSED_STAT})$")
CODE_STAT = re.compile(r"^upstream_rq_(?P<code>[1-5][0-9]{2})$")


def split_cluster_stat(name: str) -> tuple[str, str] | None:
    """``cluster.outbound|8080|v1|myapp.default.svc.cluster.local.upstream_rq_200`` →
    (cluster name, stat). Prefixed copies (``.external.``, ``.retry.``) return None."""
    m = CLUSTER_STAT.match(name)
    if m is None:
        return None
    cluster, stat = m.group("cluster"), m.group("stat")
    for prefix in (".external", ".internal", ".retry", ".canary"):
        if cluster.endswith(prefix):
            return None
    return cluster, stat


@dataclass(frozen=True)
class InboundStat:
    """One of an inbound port's request stats (see :mod:`meshpilot.mesh.sources`): the
    request counter of a response code, or (``code`` None) the duration histogram."""

    port: int
    counted: str  # the counted source, as the inbound route that sorted it is named
    code: str | None
    grpc_status: str = ""  # a gRPC port's count: the responses' gRPC status (a number)


def split_inbound_stat(name: str) -> InboundStat | None:
    """``meshpilot.inbound_8080.requests.response_code.403.source.<counted>`` →
    InboundStat(8080, <counted>, "403"); ``meshpilot.inbound_8080.request_duration.source.
    <counted>`` → InboundStat(8080, <counted>, None)."""
    m = INBOUND_STAT.match(name)
    if m is None:
        return None
    grpc = m.group("grpc") or ""
    return InboundStat(int(m.group("port")), m.group("source"), m.group("code"),
                       grpc if grpc.isdigit() else "")


@dataclass(frozen=True)
class InboundTcpStat:
    """One connection counter of one chain of an inbound TCP port: ``policy`` is how its
    connections arrived (``mutual_tls`` or ``none``), ``stat`` the tcp_proxy's
    ``downstream_cx_*`` counter or ``connections_closed``."""

    port: int
    policy: str
    stat: str


def split_inbound_tcp_stat(name: str) -> InboundTcpStat | None:
    """``tcp.inbound_9000.mutual_tls.downstream_cx_total`` → InboundTcpStat(9000,
    "mutual_tls", "downstream_cx_total"); ``meshpilot.inbound_9000.none.connections_closed``
    → InboundTcpStat(9000, "none", "connections_closed")."""
    m = INBOUND_TCP_STAT.match(name)
    if m is None:
        return None
    return InboundTcpStat(int(m.group("port")), m.group("policy"), m.group("stat"))


def response_code(stat: str) -> str | None:
    m = CODE_STAT.match(stat)
    return m.group("code") if m else None

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
    CLUSTER_TAG,
    CODE_TAG,
    DURATION_STAT,
    FLAGS_TAG,
    GRPC_TAG,
    INBOUND_STATS,
    MUTUAL_TLS,
    NO_TLS,
    OUTBOUND_STATS,
    PEER_TAG,
    REQUEST_BYTES_STAT,
    REQUESTS_STAT,
    RESPONSE_BYTES_STAT,
    SOURCE_TAG,
    TCP_CLOSED_STAT,
    TCP_OPENED_STAT,
    TCP_RECEIVED_STAT,
    TCP_SENT_STAT,
    TCP_STATS,
)

STATS_PATH = "/stats"
STATS_PARAMS = MappingProxyType({"format": "json", "histogram_buckets": "detailed", "filter": (
    r"^(cluster\.outbound\|.*\.upstream_cx_(total|destroy|rx_bytes_total|tx_bytes_total)$|"
    + re.escape(INBOUND_STATS) + "|" + re.escape(OUTBOUND_STATS) + "|"
    + re.escape(TCP_STATS) + ")")})
"""Only what telemetry needs: the outbound clusters' connection counters (a TCP
service's source side), the inbound and outbound request counters and histograms, and
the inbound TCP chains' connection counters. The clusters' request stats and histograms
are left out: requests are counted by the connection managers' loggers, and the
histograms are most of a proxy's stats by bytes."""

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
_REQUEST_STATS = "|".join((REQUESTS_STAT, DURATION_STAT, REQUEST_BYTES_STAT,
                           RESPONSE_BYTES_STAT))
_REQUEST_TAGS = (rf"\.(?P<stat>{_REQUEST_STATS})\.{CODE_TAG}\.(?P<code>[0-9]+)"
                 rf"\.{FLAGS_TAG}\.(?P<flags>[^.]*)(?:\.{GRPC_TAG}\.(?P<grpc>[^.]*))?")
INBOUND_STAT = re.compile(
    "^" + re.escape(INBOUND_STATS) + r"(?P<port>[0-9]+)" + _REQUEST_TAGS
    + rf"\.{SOURCE_TAG}\.(?P<source>.*)$")
OUTBOUND_STAT = re.compile(
    "^" + re.escape(OUTBOUND_STATS.rstrip(".")) + _REQUEST_TAGS
    + rf"\.{CLUSTER_TAG}\.(?P<cluster>.*)$")
INBOUND_TCP_STAT = re.compile(
    "^(?:" + re.escape(TCP_STATS) + "|" + re.escape(INBOUND_STATS) + r")(?P<port>[0-9]+)\."
    rf"(?P<policy>{MUTUAL_TLS}|{NO_TLS})\."
    rf"(?P<stat>downstream_cx_(?:total|rx_bytes_total|tx_bytes_total)|{TCP_CLOSED_STAT}"
    rf"|{TCP_OPENED_STAT}|{TCP_RECEIVED_STAT}|{TCP_SENT_STAT})"
    rf"(?:\.{PEER_TAG}\.(?P<peer>.*))?$")


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
class RequestStat:
    """One of the request stats a connection manager's stats access logger keeps (see
    :mod:`meshpilot.mesh.sources`): ``stat`` is the request counter or one of the
    duration and body size histograms, of one response code and set of response flags."""

    stat: str  # requests, request_duration, request_bytes, response_bytes
    code: str
    flags: str  # Envoy's response flags: "-" for none, else e.g. "UH" or "UT,URX"
    grpc_status: str  # the responses' gRPC status (a number) where counted, else ""


@dataclass(frozen=True)
class InboundStat(RequestStat):
    """An inbound port's request stat, of one counted source."""

    port: int = 0
    counted: str = ""  # the counted source, as the inbound route that sorted it is named


@dataclass(frozen=True)
class OutboundStat(RequestStat):
    """An outbound connection manager's request stat, of one upstream cluster (``-``:
    none, the request was not routed)."""

    cluster: str = ""


def _request_fields(m: re.Match[str]) -> dict[str, str]:
    grpc = m.group("grpc") or ""
    return {"stat": m.group("stat"), "code": m.group("code"), "flags": m.group("flags"),
            "grpc_status": grpc if grpc.isdigit() else ""}


def split_inbound_stat(name: str) -> InboundStat | None:
    """``meshpilot.inbound_8080.requests.response_code.403.response_flags.-.source.
    <counted>`` → InboundStat("requests", "403", "-", "", 8080, <counted>); the
    histograms (``request_duration``, ``request_bytes``, ``response_bytes``) likewise."""
    m = INBOUND_STAT.match(name)
    if m is None:
        return None
    return InboundStat(**_request_fields(m), port=int(m.group("port")),
                       counted=m.group("source"))


def split_outbound_stat(name: str) -> OutboundStat | None:
    """``meshpilot.outbound.requests.response_code.503.response_flags.UH.grpc_status.14.
    cluster.outbound|8080||myapp...`` → OutboundStat("requests", "503", "UH", "14",
    "outbound|8080||myapp...")."""
    m = OUTBOUND_STAT.match(name)
    if m is None:
        return None
    return OutboundStat(**_request_fields(m), cluster=m.group("cluster"))


@dataclass(frozen=True)
class InboundTcpStat:
    """One connection counter of one chain of an inbound TCP port: ``policy`` is how its
    connections arrived (``mutual_tls`` or ``none``), ``stat`` the tcp_proxy's
    ``downstream_cx_*`` counter or one its loggers keep; ``peer`` the caller's SPIFFE ID
    on the mutual TLS chain's per-caller counters (None on the others)."""

    port: int
    policy: str
    stat: str
    peer: str | None = None


def split_inbound_tcp_stat(name: str) -> InboundTcpStat | None:
    """``tcp.inbound_9000.mutual_tls.downstream_cx_total`` → InboundTcpStat(9000,
    "mutual_tls", "downstream_cx_total"); ``meshpilot.inbound_9000.none.connections_closed``
    → InboundTcpStat(9000, "none", "connections_closed");
    ``meshpilot.inbound_9000.mutual_tls.sent_bytes.peer.spiffe://cluster.local/ns/a/sa/b``
    → InboundTcpStat(9000, "mutual_tls", "sent_bytes", "spiffe://cluster.local/ns/a/sa/b")."""
    m = INBOUND_TCP_STAT.match(name)
    if m is None:
        return None
    return InboundTcpStat(int(m.group("port")), m.group("policy"), m.group("stat"),
                          m.group("peer"))

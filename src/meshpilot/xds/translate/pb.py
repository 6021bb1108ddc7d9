"""Small protobuf helpers shared by the builders (durations, Any, percentages).

Every helper is deterministic: ``Any`` payloads are packed with deterministic
serialisation so the same input always gives byte-identical resources.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from meshpilot.api.base import parse_duration

U32_MAX = 4294967295
"""Envoy's largest threshold: Istio's default for every circuit breaker."""


def duration(text: str | None = None, *, seconds: float | None = None) -> duration_pb2.Duration:
    """A protobuf Duration from an Istio duration string (``1.5s``) or seconds."""
    value = parse_duration(text) if text is not None else float(seconds or 0.0)
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(value * 1e9))
    return out


def pack(message: Message) -> any_pb2.Any:
    """Wrap ``message`` in an Any with deterministic bytes."""
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)
    return out


def u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def fraction(percent: float) -> percent_pb2.FractionalPercent:
    """``12.5`` (percent) → 125000 per MILLION, the precision Istio uses."""
    return percent_pb2.FractionalPercent(
        numerator=round(min(max(percent, 0.0), 100.0) * 10000),
        denominator=percent_pb2.FractionalPercent.MILLION,
    )


def runtime_fraction(percent: float) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(default_value=fraction(percent))


def ads_source() -> config_source_pb2.ConfigSource:
    """Fetch over the bootstrap's ADS stream (xDS v3)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )

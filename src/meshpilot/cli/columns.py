"""Per-kind columns for ``meshpilot get`` tables, in kubectl's spirit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

Column = tuple[str, Callable[[dict[str, Any]], str]]


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _join(values: Any) -> str:
    if not values:
        return "<none>"
    if isinstance(values, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(values.items()))
    return ",".join(str(v) for v in values)


def age(obj: dict[str, Any], now: datetime | None = None) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _ports(obj: dict[str, Any]) -> str:
    ports = _spec(obj).get("ports") or []
    return ",".join(
        f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports if isinstance(p, dict)
    ) or "<none>"


def _replicas(obj: dict[str, Any]) -> str:
    return str(_spec(obj).get("replicas", 1))


def _images(obj: dict[str, Any]) -> str:
    pod = (_spec(obj).get("template") or {}).get("spec") or {}
    return _join([c.get("image", "<command>") for c in pod.get("containers") or []])


def _subsets(obj: dict[str, Any]) -> str:
    return _join([s.get("name") for s in _spec(obj).get("subsets") or [] if isinstance(s, dict)])


def _secret_keys(obj: dict[str, Any]) -> str:
    """How many keys, as kubectl shows it: never the values."""
    keys = {*(obj.get("data") or {}), *(obj.get("stringData") or {})}
    return str(len(keys))


def _canary_status(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    return str(status.get("phase", "<pending>"))


def _weight(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("canaryWeight", 0))


def _rollout_step(obj: dict[str, Any]) -> str:
    steps = ((_spec(obj).get("strategy") or {}).get("canary") or {}).get("steps") or []
    index = (obj.get("status") or {}).get("currentStepIndex")
    return f"{index}/{len(steps)}" if index is not None else "-"


def _rollout_weight(obj: dict[str, Any]) -> str:
    weights = (((obj.get("status") or {}).get("canary") or {}).get("weights") or {})
    return str((weights.get("canary") or {}).get("weight", 0))


COLUMNS: MappingProxyType[str, tuple[Column, ...]] = MappingProxyType({
    "VirtualService": (
        ("GATEWAYS", lambda o: _join(_spec(o).get("gateways"))),
        ("HOSTS", lambda o: _join(_spec(o).get("hosts"))),
    ),
    "DestinationRule": (("HOST", lambda o: str(_spec(o).get("host", ""))), ("SUBSETS", _subsets)),
    "Gateway": (("SERVERS", lambda o: str(len(_spec(o).get("servers") or []))),),
    "ServiceEntry": (
        ("HOSTS", lambda o: _join(_spec(o).get("hosts"))),
        ("LOCATION", lambda o: str(_spec(o).get("location", ""))),
        ("RESOLUTION", lambda o: str(_spec(o).get("resolution", ""))),
    ),
    "WorkloadEntry": (
        ("ADDRESS", lambda o: str(_spec(o).get("address", ""))),
        ("LABELS", lambda o: _join(_spec(o).get("labels"))),
    ),
    "WorkloadGroup": (
        ("SERVICE ACCOUNT", lambda o: str((_spec(o).get("template") or {})
                                          .get("serviceAccount", ""))),
        ("LABELS", lambda o: _join((_spec(o).get("template") or {}).get("labels"))),
    ),
    "PeerAuthentication": (("MODE", lambda o: str((_spec(o).get("mtls") or {}).get("mode", ""))),),
    "AuthorizationPolicy": (("ACTION", lambda o: str(_spec(o).get("action", "ALLOW"))),),
    "Service": (("PORTS", _ports), ("SELECTOR", lambda o: _join(_spec(o).get("selector")))),
    "Deployment": (("REPLICAS", _replicas), ("IMAGES", _images)),
    "Secret": (("TYPE", lambda o: str(o.get("type", "Opaque"))), ("DATA", _secret_keys)),
    "Canary": (("STATUS", _canary_status), ("WEIGHT", _weight)),
    "Rollout": (("DESIRED", _replicas), ("STATUS", _canary_status), ("STEP", _rollout_step),
                ("WEIGHT", _rollout_weight)),
    "AnalysisRun": (("STATUS", lambda o: str((o.get("status") or {}).get("phase", ""))),),
    "MetricTemplate": (
        ("PROVIDER", lambda o: str((_spec(o).get("provider") or {}).get("type", ""))),
    ),
    "AlertProvider": (("TYPE", lambda o: str(_spec(o).get("type", ""))),),
})


def columns_for(kind: str) -> tuple[Column, ...]:
    return COLUMNS.get(kind, ())

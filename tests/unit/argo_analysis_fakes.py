"""Test doubles for the AnalysisRun runner: a scripted measurer (each measurement takes
the next value, or raises) and an in-memory store of runs and Secrets."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from meshpilot.api.argo_analysis import Metric
from meshpilot.delivery.argo.metric_providers import MeasureError


class ScriptedMeasurer:
    """Returns the scripted (value, result) pairs in order; a string item is raised as a
    MeasureError. Records the metric each call was given (after argument substitution)."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[Metric] = []

    def measure(self, metric: Metric) -> tuple[str, Any]:
        self.calls.append(metric)
        item = self.script.pop(0)
        if isinstance(item, str):
            raise MeasureError(item)
        return str(item), item


class RunStore:
    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        self.status_writes = 0

    def put(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        self.runs[(meta.get("namespace", "default"), meta["name"])] = copy.deepcopy(body)

    def analysis_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.runs.get((namespace, name))
        return copy.deepcopy(body) if body else None

    def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return self.secrets.get((namespace, name))

    def put_analysis_run_status(self, namespace: str, name: str,
                                status: dict[str, Any]) -> None:
        self.status_writes += 1
        self.runs[(namespace, name)]["status"] = copy.deepcopy(status)

"""Runs AnalysisRuns: read the run, take the measurements that are due, write its status
(Argo's analysis controller, ``analysis/controller.go`` and ``analysis.go``).

A run is stepped on its own (by the delivery loop, like a Rollout), whether a Rollout
made it or a user applied it; a Rollout only reads its phase. Arguments are resolved at
each measurement, as Argo does, so a Secret's value is never written anywhere: not in the
run's spec, and not in a measurement's message (it is masked as ``*****``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from meshpilot.api.argo_analysis import AnalysisRun, Argument, Metric
from meshpilot.delivery.argo import analysis
from meshpilot.delivery.argo.metric_providers import MeasureError, Measurer
from meshpilot.delivery.ports import Clock

log = logging.getLogger(__name__)

_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
SECRET_MASK = "*****"


class AnalysisReader(Protocol):
    def analysis_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored AnalysisRun body with its status, or None."""
        ...

    def secret_data(self, namespace: str, name: str) -> Mapping[str, bytes] | None: ...


class AnalysisWriter(Protocol):
    def put_analysis_run_status(self, namespace: str, name: str,
                                status: dict[str, Any]) -> None: ...


class ArgumentError(Exception):
    """An argument has no value: the run is in Error (Argo: "Unable to resolve metric
    arguments")."""


def resolve_args(args: list[Argument], namespace: str,
                 reader: AnalysisReader) -> tuple[dict[str, str], list[str]]:
    """(name -> value, the secret values among them)."""
    values: dict[str, str] = {}
    secrets: list[str] = []
    for arg in args:
        ref = arg.value_from.secret_key_ref if arg.value_from else None
        if ref is not None:
            data = reader.secret_data(namespace, ref.name)
            if data is None or ref.key not in data:
                raise ArgumentError(f"args.{arg.name}: Secret {namespace}/{ref.name} has no "
                                    f"key {ref.key!r}")
            values[arg.name] = data[ref.key].decode("utf-8")
            secrets.append(values[arg.name])
        elif arg.value is not None:
            values[arg.name] = arg.value
        else:
            raise ArgumentError(f"args.{arg.name} was not resolved: give it a value")
    return values, secrets


def substituted(metric: Metric, values: Mapping[str, str]) -> Metric:
    """``metric`` with every ``{{args.NAME}}`` in its strings replaced."""
    def walk(node: Any) -> Any:
        if isinstance(node, str):
            def one(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in values:
                    raise ArgumentError(f"failed to resolve {{{{args.{name}}}}}: no such "
                                        "argument")
                return values[name]
            return _ARG.sub(one, node)
        if isinstance(node, list):
            return [walk(x) for x in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node
    return Metric.model_validate(walk(metric.model_dump(by_alias=True, exclude_none=True)))


def _masked(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, SECRET_MASK)
    return text


class AnalysisRunner:
    def __init__(self, clock: Clock, reader: AnalysisReader, writer: AnalysisWriter,
                 measurer: Measurer) -> None:
        self.clock = clock
        self.reader = reader
        self.writer = writer
        self.measurer = measurer

    def tick(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Advance run ``name`` by what is due now; its new status (None: no such run)."""
        body = self.reader.analysis_run(namespace, name)
        if body is None:
            return None
        status: dict[str, Any] = dict(body.get("status") or {})
        if status.get("phase") in analysis.COMPLETED:
            return status
        try:
            run = AnalysisRun.model_validate(body)
        except ValidationError as exc:
            log.warning("AnalysisRun %s/%s does not parse: %s", namespace, name, exc)
            return status
        new = self._advance(run, status)
        if new != body.get("status"):
            self.writer.put_analysis_run_status(namespace, name, new)
        return new

    def _advance(self, run: AnalysisRun, status: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        metrics, terminate = run.spec.metrics, run.spec.terminate
        status.setdefault("startedAt", analysis.timestamp(now))
        try:
            values, secrets = resolve_args(run.spec.args or [], run.metadata.namespace,
                                           self.reader)
            for metric in analysis.due(metrics, status, now, terminate):
                status = self._measure(run, status, metric, substituted(metric, values),
                                       secrets)
        except ArgumentError as exc:
            status.update(phase="Error", message=f"Unable to resolve metric arguments: {exc}",
                          completedAt=analysis.timestamp(now))
            return status
        return analysis.assess(metrics, status, self.clock(), terminate,
                               frozenset(run.spec.dry_run_metrics()))

    def _measure(self, run: AnalysisRun, status: dict[str, Any], metric: Metric,
                 resolved: Metric, secrets: list[str]) -> dict[str, Any]:
        started = self.clock()
        value, message = "", ""
        try:
            value, result = self.measurer.measure(resolved)
            phase, message = analysis.evaluate(resolved, result)
        except MeasureError as exc:
            phase, message = "Error", str(exc)
        measurement = {"phase": phase, "value": _masked(value, secrets),
                       "message": _masked(message, secrets),
                       "startedAt": analysis.timestamp(started),
                       "finishedAt": analysis.timestamp(self.clock())}
        return analysis.record(status, metric.name, measurement,
                               keep=run.spec.retention(metric.name),
                               dry_run=metric.name in run.spec.dry_run_metrics())

"""``meshpilot rollout status`` for an Argo Rollout: the fields kubectl-argo-rollouts
prints (Name, Namespace, Status, Message, Strategy, Step, SetWeight, ActualWeight,
Images, Replicas), then the revisions and the AnalysisRuns with their phase.

``--watch`` prints the view again whenever it changes and ends as the plugin's
``status --watch`` does: exit 0 when the Rollout is Healthy, 1 when it is Degraded (an
abort, a failed analysis), 1 with a message when ``--timeout`` passes first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from meshpilot.cli.common import fail, out

DONE = MappingProxyType({"Healthy": 0, "Degraded": 1})
"""Phase -> exit code of ``status --watch``."""
STATUS_STYLE = MappingProxyType({"Healthy": "green", "Degraded": "red",
                                 "Paused": "yellow", "Progressing": "cyan"})
LABEL_WIDTH = 16


def _line(text: Text, label: str, value: Any, style: str = "") -> None:
    text.append(f"{label + ':':<{LABEL_WIDTH}}")
    text.append(f"{value}\n", style=style)


def header(body: dict[str, Any]) -> Text:
    """The plugin's summary lines of one Rollout."""
    text = Text()
    _line(text, "Name", body["name"])
    _line(text, "Namespace", body["namespace"])
    status = body["status"] + (" (spec.paused)" if body.get("paused") else "")
    _line(text, "Status", status, STATUS_STYLE.get(body["status"], ""))
    _line(text, "Message", body.get("message") or "-")
    _line(text, "Strategy", body["strategy"])
    if body.get("step") is not None:
        _line(text, "  Step", body["step"])
    if body.get("setWeight") is not None:
        _line(text, "  SetWeight", body["setWeight"])
        _line(text, "  ActualWeight", body["actualWeight"])
    images = body.get("images") or []
    for i, row in enumerate(images):
        tags = f" ({', '.join(row['tags'])})" if row["tags"] else ""
        _line(text, "Images" if i == 0 else "", f"{row['image']}{tags}")
    if not images:
        _line(text, "Images", "-")
    text.append("Replicas:\n")
    for key in ("desired", "current", "updated", "ready", "available"):
        _line(text, f"  {key.capitalize()}", body["replicas"][key])
    return text


def revisions_table(body: dict[str, Any]) -> Table:
    table = Table(box=None, pad_edge=False, title="Revisions", title_justify="left")
    for col in ("REVISION", "HASH", "DEPLOYMENT", "ROLE", "PODS", "READY", "IMAGES"):
        table.add_column(col)
    for rev in body.get("revisions") or []:
        number = rev.get("revision")
        table.add_row(str(number) if number else "-", rev["podTemplateHash"], rev["name"],
                      ", ".join(rev["roles"]) or "old",
                      str(rev["replicas"]), str(rev["ready"]), ", ".join(rev["images"]))
    return table


def runs_table(body: dict[str, Any]) -> Table:
    table = Table(box=None, pad_edge=False, title="AnalysisRuns", title_justify="left")
    for col in ("NAME", "PHASE", "MESSAGE"):
        table.add_column(col)
    for run in body.get("analysisRuns") or []:
        table.add_row(run["name"], run["phase"], run["message"])
    if not body.get("analysisRuns"):
        table.add_row("(none)", "", "")
    return table


def show(body: dict[str, Any]) -> None:
    out.print(header(body), end="")
    out.print(revisions_table(body))
    out.print(runs_table(body))


def _shown(body: dict[str, Any]) -> str:
    """What the view shows, to tell whether it changed (not the raw status)."""
    return json.dumps({k: v for k, v in body.items() if k != "rolloutStatus"},
                      sort_keys=True)


def status(body: dict[str, Any], fetch: Callable[[], dict[str, Any]], watch: bool,
           timeout: float, refresh: float, output: str) -> None:
    """Print the Rollout (once, or on every change with --watch)."""
    if output == "json":
        out.print(json.dumps(body, indent=2), markup=False)
        return
    show(body)
    if not watch:
        return
    deadline = time.monotonic() + timeout
    last = _shown(body)
    while body["status"] not in DONE and time.monotonic() < deadline:
        time.sleep(max(0.0, min(refresh, deadline - time.monotonic())))
        body = fetch()
        if _shown(body) != last:
            last = _shown(body)
            out.print()
            show(body)
    if body["status"] in DONE:
        if DONE[body["status"]]:
            raise typer.Exit(DONE[body["status"]])
        return
    raise fail(f"Rollout {body['namespace']}/{body['name']} still {body['status']} after "
               f"{timeout:g}s")

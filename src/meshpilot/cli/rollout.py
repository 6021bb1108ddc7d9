"""``meshpilot rollout``: follow and steer progressive delivery (Flagger Canaries and Argo
Rollouts: a name that is no Canary is the Rollout of that name).

``status`` shows where a rollout is (phase, strategy, step, primary/canary weights), every
check with its value, threshold, verdict and the number of requests behind it, a
progress bar and the last events; ``--watch`` follows it live until it succeeds or fails.
``promote``, ``abort``, ``pause``, ``resume`` and ``retry`` steer it; ``history`` lists
past rollouts; ``list`` shows every Canary. An Argo Rollout also takes
``promote --full``, ``undo`` and ``restart``; its ``status`` is :mod:`.argo_status`.
"""

from __future__ import annotations

import json
import time
from types import MappingProxyType
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from meshpilot.cli import argo_status
from meshpilot.cli.client import ControlPlaneClient, NotRunning
from meshpilot.cli.common import NamespaceOpt, StateOpt, check, client_for, fail, out

API = "/apis/meshpilot.io/v1"
DONE = ("Succeeded", "Failed")
BAR_WIDTH = 30
VERDICT_STYLE = MappingProxyType({"pass": "green", "fail": "red", "nodata": "yellow"})
PHASE_STYLE = MappingProxyType({"Succeeded": "green", "Failed": "red", "Progressing": "cyan",
               "WaitingPromotion": "yellow", "Waiting": "yellow", "Promoting": "cyan",
               "Finalising": "cyan"})

app = typer.Typer(help="Follow and steer progressive delivery (Flagger Canaries, Argo "
                  "Rollouts).",
                  no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(
    help="Canary name, or an Argo Rollout's (status, promote, abort, retry, pause, resume, "
    "undo, restart)")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json")]


def _path(namespace: str, name: str) -> str:
    return f"{API}/namespaces/{namespace}/rollouts/{name}"


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.4g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _unit(name: str) -> str:
    return {"request-success-rate": "%", "request-duration": "ms"}.get(name, "")


def _threshold(check: dict[str, Any]) -> str:
    unit = _unit(check["name"])
    lo, hi = check.get("min"), check.get("max")
    parts = []
    if lo is not None:
        parts.append(f">= {_num(lo, unit)}")
    if hi is not None:
        parts.append(f"<= {_num(hi, unit)}")
    return " and ".join(parts) or "-"


def _step(body: dict[str, Any]) -> str:
    if body["strategy"] in ("ab", "bluegreen"):
        return f"iteration {body['iterations']}/{body['totalIterations']}"
    mirror = " (mirroring)" if body.get("mirroring") else ""
    return f"step {body['step']}/{body['steps']}{mirror}"


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    fraction = max(0.0, min(1.0, fraction))
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction * 100:3.0f}%"


def status_view(body: dict[str, Any], events: int = 5) -> Group:
    """The ``rollout status`` screen for one rollout (as the API returns it)."""
    phase = body["phase"] + (" (paused)" if body.get("paused") else "")
    head = Text()
    head.append(f"Rollout {body['namespace']}/{body['name']}", style="bold")
    head.append(f" (target {body['target']}, strategy {body['strategy']})\n")
    head.append("Phase:    ")
    head.append(phase, style=PHASE_STYLE.get(body["phase"], ""))
    head.append(f"   {_step(body)}   failed checks {body['failedChecks']}/"
                f"{body['threshold']}\n")
    traffic = (f"Traffic:  primary {body['primaryWeight']}%  canary {body['canaryWeight']}%")
    if body.get("mirroring"):
        traffic += "  + mirrored to canary"
    if body.get("abActive"):
        traffic += "  (matching requests to canary)"
    head.append(traffic + "\n")
    head.append(f"Progress: {progress_bar(body.get('progress', 0.0))}\n")
    if body.get("revision"):
        head.append(f"Revision: {body['revision']}  (primary runs "
                    f"{body.get('promotedRevision') or '-'})\n")
    checks = Table(box=None, pad_edge=False, title="Checks", title_justify="left")
    for col in ("CHECK", "VALUE", "PRIMARY", "THRESHOLD", "VERDICT", "SAMPLES", "MESSAGE"):
        checks.add_column(col)
    for c in body.get("checks") or []:
        unit = _unit(c["name"])
        verdict = c.get("verdict", "")
        checks.add_row(c["name"], _num(c.get("value"), unit), _num(c.get("primaryValue"), unit),
                       _threshold(c), Text(verdict, style=VERDICT_STYLE.get(verdict, "")),
                       _num(c.get("samples")), c.get("message") or "")
    if not body.get("checks"):
        checks.add_row("(no checks run yet)", "", "", "", "", "", "")
    parts: list[Any] = [head, checks]
    recent = (body.get("events") or [])[-events:]
    if recent:
        ev = Text("\nEvents:\n")
        for e in recent:
            style = "yellow" if e.get("type") == "Warning" else ""
            ev.append(f"  {e['time']}  {e['message']}\n", style=style)
        parts.append(ev)
    return Group(*parts)


def _fetch(client: ControlPlaneClient, namespace: str, name: str) -> dict[str, Any]:
    return check(client.request("GET", _path(namespace, name)))


@app.command("status")
def status(
    name: NameArg,
    namespace: NamespaceOpt = "default",
    state_dir: StateOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w",
                                        help="Follow until Succeeded or Failed")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --watch waits at most")] = 600.0,
    refresh: Annotated[float, typer.Option(help="Seconds between refreshes")] = 1.0,
    output: OutputOpt = "text",
) -> None:
    """Phase, step, weights, every check with its value and verdict, last events.

    With --watch: exit 0 when the rollout succeeds, 1 when it fails or --timeout passes.
    For an Argo Rollout: what kubectl-argo-rollouts prints (status, step, set and actual
    weight, images, replicas, revisions, AnalysisRuns); --watch exits 0 at Healthy, 1 at
    Degraded.
    """
    client = client_for(state_dir)
    body = _fetch(client, namespace, name)
    if body.get("kind") == "Rollout":
        try:
            argo_status.status(body, lambda: _fetch(client, namespace, name), watch,
                               timeout, refresh, output)
        except KeyboardInterrupt:
            return
        except NotRunning as exc:
            raise fail(str(exc)) from None
        return
    if output == "json":
        out.print(json.dumps(body, indent=2), markup=False)
        return
    if not watch:
        out.print(status_view(body))
        return
    deadline = time.monotonic() + timeout
    try:
        with Live(status_view(body), console=out, auto_refresh=False) as live:
            while body["phase"] not in DONE and time.monotonic() < deadline:
                time.sleep(refresh)
                body = _fetch(client, namespace, name)
                live.update(status_view(body), refresh=True)
    except KeyboardInterrupt:
        return
    except NotRunning as exc:
        raise fail(str(exc)) from None
    if body["phase"] == "Succeeded":
        return
    if body["phase"] == "Failed":
        raise typer.Exit(1)
    raise fail(f"rollout {namespace}/{name} still {body['phase']} after {timeout:g}s")


def _post(command: str, namespace: str, name: str, state_dir: StateOpt,
          query: str = "") -> None:
    client = client_for(state_dir)
    response = client.request("POST", f"{_path(namespace, name)}/{command}{query}")
    if not response.ok:
        message = (response.body.get("message") if isinstance(response.body, dict)
                   else response.body)
        raise fail(f"{command} refused: {message}")
    if response.body.get("note"):
        out.print(f"note: {response.body['note']}", markup=False)
    rollout = response.body.get("rollout") or {}
    out.print(f"rollout {namespace}/{name}: {command} accepted; phase "
              f"{rollout.get('phase', '?')}, canary weight {rollout.get('canaryWeight', 0)}%")


def _command(command: str, help_text: str) -> None:
    def run(name: NameArg, namespace: NamespaceOpt = "default",
            state_dir: StateOpt = None) -> None:
        _post(command, namespace, name, state_dir)

    run.__doc__ = help_text
    app.command(command)(run)


@app.command("promote")
def promote(
    name: NameArg, namespace: NamespaceOpt = "default", state_dir: StateOpt = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Argo Rollout: skip every remaining step and analysis, straight to "
        "100% and stable. A Canary's promote is already full.")] = False,
) -> None:
    """Promote the canary now (skips the remaining analysis). For an Argo Rollout: clear
    spec.paused and end the current pause step (--full: skip the remaining steps)."""
    _post("promote", namespace, name, state_dir, "?full=true" if full else "")


_command("abort", "Roll back now: all traffic to the primary (an Argo Rollout's stable), "
         "the canary scaled down.")
_command("pause", "Hold the rollout at its current step (checks stop). For an Argo "
         "Rollout: set spec.paused (no step, weight or revision moves).")
_command("resume", "Continue a paused rollout (an Argo Rollout: clear spec.paused).")
_command("retry", "Run a failed (or an aborted Argo) rollout again with the same revision.")


@app.command("undo")
def undo(
    name: NameArg, namespace: NamespaceOpt = "default", state_dir: StateOpt = None,
    to_revision: Annotated[int, typer.Option(
        "--to-revision", min=0, help="The revision number to go back to (rollout "
        "status lists them); 0: the previous revision")] = 0,
) -> None:
    """Argo Rollout: put back the previous revision's template (the stable one during a
    rollout, which then takes all traffic at once), or revision N's with --to-revision."""
    _post("undo", namespace, name, state_dir,
          f"?toRevision={to_revision}" if to_revision else "")

_command("restart", "Argo Rollout: set spec.restartAt to now; the pods of its running "
         "revisions are replaced, rolling.")


@app.command("history")
def history(name: NameArg, namespace: NamespaceOpt = "default", state_dir: StateOpt = None,
            output: OutputOpt = "text") -> None:
    """Past rollouts: revision, outcome, reason, started, finished."""
    body = _fetch(client_for(state_dir), namespace, name)
    entries = body.get("history") or []
    if output == "json":
        out.print(json.dumps(entries, indent=2), markup=False)
        return
    table = Table(box=None, pad_edge=False)
    for col in ("REVISION", "OUTCOME", "STARTED", "FINISHED", "REASON"):
        table.add_column(col)
    style = {"promoted": "green", "rolled-back": "red"}
    for h in entries:
        table.add_row(h["revision"], Text(h["outcome"], style=style.get(h["outcome"], "")),
                      h["started"], h["finished"], h["reason"])
    if not entries:
        table.add_row("(no finished rollouts)", "", "", "", "")
    out.print(table)


@app.command("list")
def list_rollouts(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n",
                                                  help="Only this namespace")] = None,
    state_dir: StateOpt = None, output: OutputOpt = "text",
) -> None:
    """Every Canary: phase, strategy, weights, step and check verdicts."""
    client = client_for(state_dir)
    path = f"{API}/namespaces/{namespace}/rollouts" if namespace else f"{API}/rollouts"
    items = check(client.request("GET", path))["items"]
    if output == "json":
        out.print(json.dumps(items, indent=2), markup=False)
        return
    table = Table(box=None, pad_edge=False)
    for col in ("NAMESPACE", "NAME", "STRATEGY", "PHASE", "WEIGHT", "STEP", "CHECKS",
                "LAST EVENT"):
        table.add_column(col)
    for r in items:
        checks = ", ".join(f"{c['name']}={c['verdict']}" for c in r["checks"]) or "-"
        table.add_row(r["namespace"], r["name"], r["strategy"],
                      Text(r["phase"], style=PHASE_STYLE.get(r["phase"], "")),
                      f"{r['canaryWeight']}%", _step(r), checks, r["message"])
    if not items:
        table.add_row("(no Canaries)", "", "", "", "", "", "", "")
    out.print(table)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="rollout")

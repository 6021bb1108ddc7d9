"""``meshpilot``: the command line. Talks to the control plane only over its HTTP API."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

import meshpilot
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import UnknownKind, by_name
from meshpilot.api.loader import read_sources
from meshpilot.cli.client import ControlPlaneClient, NotRunning, Response, kind_label, pid_alive
from meshpilot.cli.columns import age, columns_for
from meshpilot.server.state_dir import STATE_DIR_ENV, StateDir
from meshpilot.validation import Diagnostic, plan_apply

app = typer.Typer(
    name="meshpilot",
    help="A service mesh with progressive delivery built in (Istio and Flagger APIs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar=STATE_DIR_ENV,
                 help="State directory of the control plane [default: ./.meshpilot]"),
]
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace")]
FilesOpt = Annotated[
    list[str] | None,
    typer.Option("--filename", "-f", help="File, directory or - (stdin); repeatable"),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(code)


def _client(state_dir: Path | None) -> ControlPlaneClient:
    try:
        return ControlPlaneClient(StateDir.resolve(state_dir))
    except NotRunning as exc:
        raise _fail(str(exc)) from None


def _print_diagnostics(diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        colour = "red" if d.is_error else "yellow"
        err.print(f"[{colour}]{d.severity.value}[/{colour}] " + d.format().replace(
            f"{d.severity.value} ", "", 1), markup=True)


def _diags(body: Any) -> list[Diagnostic]:
    if isinstance(body, dict):
        return [Diagnostic.from_dict(d) for d in body.get("diagnostics") or []]
    return []


def _sources(files: list[str] | None) -> list[tuple[str, str]]:
    if not files:
        raise _fail("give at least one -f FILE, DIR or -")
    try:
        return read_sources(files)
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(str(exc)) from None


def _check(response: Response) -> Any:
    if response.ok:
        return response.body
    diags = _diags(response.body)
    if diags:
        _print_diagnostics(diags)
        raise typer.Exit(1)
    message = response.body.get("message") if isinstance(response.body, dict) else response.body
    raise _fail(f"{message} (HTTP {response.status})")


# --- lifecycle -------------------------------------------------------------------

@app.command()
def up(
    state_dir: StateOpt = None,
    host: Annotated[str, typer.Option(help="Address the API binds to")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port (0 picks a free one)")] = 0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for it to come up")] = 30.0,
) -> None:
    """Start the control plane in the background; print where it listens."""
    state = StateDir.resolve(state_dir)
    endpoints = state.read_endpoints()
    if endpoints and pid_alive(int(endpoints.get("pid", 0))):
        out.print(f"meshpilot is already up: API {endpoints['api']} (state {state.root})")
        return
    state.create()
    state.clear_endpoints()
    with open(state.log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshpilot.server", "--state-dir", str(state.root),
             "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        endpoints = state.read_endpoints()
        if endpoints and endpoints.get("pid") == proc.pid:
            out.print(f"meshpilot is up: API {endpoints['api']} (state {state.root}, "
                      f"pid {proc.pid})")
            return
        if proc.poll() is not None:
            tail = state.log_file.read_text(errors="replace").strip().splitlines()[-5:]
            raise _fail("the control plane exited at start:\n  " + "\n  ".join(tail))
        time.sleep(0.05)
    proc.terminate()
    raise _fail(f"the control plane did not come up within {wait:g}s; see {state.log_file}")


@app.command()
def down(
    state_dir: StateOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds before it is killed")] = 15.0,
) -> None:
    """Stop the control plane of this state directory."""
    state = StateDir.resolve(state_dir)
    endpoints = state.read_endpoints()
    pid = int(endpoints.get("pid", 0)) if endpoints else 0
    if not pid or not pid_alive(pid):
        state.clear_endpoints()
        out.print(f"meshpilot is not running (state {state.root})")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap(pid)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        state.clear_endpoints()
    out.print(f"meshpilot is down (state {state.root})")


def _reap(pid: int) -> None:
    """Collect the exit status if the control plane is our own child (tests, scripts)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@app.command()
def status(state_dir: StateOpt = None) -> None:
    """Is the control plane up, which version, where is its state."""
    state = StateDir.resolve(state_dir)
    try:
        client = ControlPlaneClient(state)
        body = _check(client.version())
    except NotRunning as exc:
        raise _fail(str(exc)) from None
    table = Table(show_header=False, box=None)
    for label, value in (
        ("status", "running"), ("version", body.get("version")),
        ("api", client.endpoints.get("api")), ("pid", body.get("pid")),
        ("state dir", body.get("stateDir")), ("started", body.get("startedAt")),
        ("revision", body.get("revision")),
    ):
        table.add_row(label, str(value))
    out.print(table)


@app.command()
def version() -> None:
    """Print the CLI's version."""
    out.print(f"meshpilot {meshpilot.__version__}")


# --- config ----------------------------------------------------------------------

@app.command()
def apply(
    filename: FilesOpt = None,
    state_dir: StateOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only")] = False,
) -> None:
    """Apply multi-document YAML or JSON: every object, or none of them."""
    sources = _sources(filename)
    client = _client(state_dir)
    response = client.apply(sources, dry_run=dry_run)
    body = _check(response)
    _print_diagnostics(_diags(body))
    for result in body.get("results") or []:
        out.print(f"{kind_label(result)} {result['action']}")


@app.command()
def delete(
    kind: Annotated[str | None, typer.Argument(help="Kind, e.g. virtualservice or vs")] = None,
    name: Annotated[str | None, typer.Argument()] = None,
    filename: FilesOpt = None,
    namespace: NamespaceOpt = "default",
    ignore_not_found: Annotated[bool, typer.Option("--ignore-not-found")] = False,
    state_dir: StateOpt = None,
) -> None:
    """Delete KIND NAME, or every object in -f FILE (all or nothing)."""
    if filename:
        client = _client(state_dir)
        body = _check(client.delete_sources(_sources(filename), ignore_not_found))
    elif kind and name:
        info = _kind(kind)
        client = _client(state_dir)
        key = ObjectKey(info.group, info.kind, namespace, name)
        body = _check(client.delete_keys([key], ignore_not_found))
    else:
        raise _fail("give KIND NAME or -f FILE")
    _print_diagnostics(_diags(body))
    for result in body.get("results") or []:
        out.print(f"{kind_label(result)} deleted")


def _kind(name: str) -> Any:
    try:
        return by_name(name)
    except UnknownKind as exc:
        raise _fail(str(exc)) from None


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v not in (None, {})} if isinstance(obj, dict) else obj


@app.command()
def get(
    kind: Annotated[str, typer.Argument(help="Kind, e.g. virtualservices, vs, dr, svc")],
    name: Annotated[str | None, typer.Argument()] = None,
    namespace: NamespaceOpt = "default",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="table, yaml or json")] = "table",
    state_dir: StateOpt = None,
) -> None:
    """List objects of a kind, or show one."""
    if output not in ("table", "yaml", "json", "wide", "name"):
        raise _fail(f"unknown output format {output!r}; use one of: table, yaml, json, name")
    info = _kind(kind)
    client = _client(state_dir)
    if name:
        items = [_check(client.get(info, namespace, name))]
        shape: Any = items[0]
    else:
        listing = _check(client.list(info, None if all_namespaces else namespace))
        items = listing.get("items") or []
        shape = listing
    if output == "json":
        out.print(json.dumps(shape, indent=2), markup=False)
    elif output == "yaml":
        out.print(yaml.safe_dump(shape, sort_keys=False).rstrip(), markup=False)
    elif output == "name":
        for item in items:
            out.print(f"{info.kind.lower()}/{item['metadata']['name']}", markup=False)
    elif not items:
        where = "any namespace" if all_namespaces else f"namespace {namespace}"
        err.print(f"No {info.plural} found in {where}.")
    else:
        _table(info.kind, items, all_namespaces)


def _table(kind: str, items: list[dict[str, Any]], with_namespace: bool) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False)
    cols = columns_for(kind)
    if with_namespace:
        table.add_column("NAMESPACE")
    table.add_column("NAME")
    for title, _ in cols:
        table.add_column(title)
    table.add_column("AGE")
    for item in items:
        meta = item.get("metadata") or {}
        row = [meta.get("namespace", "")] if with_namespace else []
        row += [meta.get("name", ""), *(fn(item) for _, fn in cols), age(item)]
        table.add_row(*row)
    out.print(table, markup=False)


@app.command()
def describe(
    kind: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Argument()],
    namespace: NamespaceOpt = "default",
    state_dir: StateOpt = None,
) -> None:
    """Show one object in full, with what the control plane finds wrong with it."""
    info = _kind(kind)
    client = _client(state_dir)
    obj = _check(client.get(info, namespace, name))
    meta = obj.get("metadata") or {}
    table = Table(show_header=False, box=None, pad_edge=False)
    for label, value in (
        ("Name", meta.get("name")), ("Namespace", meta.get("namespace")),
        ("Kind", info.kind), ("API Version", obj.get("apiVersion")),
        ("Labels", ",".join(f"{k}={v}" for k, v in (meta.get("labels") or {}).items())
         or "<none>"),
        ("Resource Version", meta.get("resourceVersion")),
        ("Generation", meta.get("generation")), ("Created", meta.get("creationTimestamp")),
        ("UID", meta.get("uid")),
    ):
        table.add_row(f"{label}:", str(value))
    out.print(table, markup=False)
    for section in ("spec", "status"):
        if obj.get(section):
            out.print(f"{section.capitalize()}:", markup=False)
            text = yaml.safe_dump(obj[section], sort_keys=False).rstrip()
            out.print("\n".join("  " + line for line in text.splitlines()), markup=False)
    key = ObjectKey(info.group, info.kind, namespace, name)
    findings = _diags(_check(client.diagnostics(key)))
    out.print("Diagnostics:" + ("" if findings else " <none>"), markup=False)
    for d in findings:
        out.print(f"  {d.severity.value} {d.code} {d.path}: {d.message}", markup=False)


@app.command()
def analyze(
    filename: FilesOpt = None,
) -> None:
    """Validate files offline (no control plane needed); exit 1 on errors."""
    sources = _sources(filename)
    plan = plan_apply(sources)
    _print_diagnostics(plan.diagnostics)
    errors, warnings = len(plan.errors), len(plan.warnings)
    if errors:
        err.print(f"{errors} error(s), {warnings} warning(s) in {len(sources)} file(s)")
        raise typer.Exit(1)
    out.print(f"✔ {len(plan.objects)} object(s) in {len(sources)} file(s) are valid"
              + (f", {warnings} warning(s)" if warnings else ""))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

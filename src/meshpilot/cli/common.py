"""What every CLI command shares: consoles, options, the API client, error output."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from meshpilot.cli.client import ControlPlaneClient, NotRunning, Response
from meshpilot.statedir import STATE_DIR_ENV, StateDir
from meshpilot.validation import Diagnostic

# Tables are not cut to 80 columns when the output is a pipe or a file (scripts, CI).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True,
              width=None if sys.stderr.isatty() else 250)

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


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(code)


def client_for(state_dir: Path | None) -> ControlPlaneClient:
    try:
        return ControlPlaneClient(StateDir.resolve(state_dir))
    except NotRunning as exc:
        raise fail(str(exc)) from None


def print_diagnostics(diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        colour = "red" if d.is_error else "yellow"
        # the text is escaped: a field path or key such as request.headers[x-user] is
        # shown as written, not taken for a style tag
        err.print(f"[{colour}]{d.severity.value}[/{colour}] " + escape(d.format().replace(
            f"{d.severity.value} ", "", 1)), markup=True)


def diags_of(body: Any) -> list[Diagnostic]:
    if isinstance(body, dict):
        return [Diagnostic.from_dict(d) for d in body.get("diagnostics") or []]
    return []




def check(response: Response) -> Any:
    """The body of a successful response; otherwise print why and exit 1."""
    if response.ok:
        return response.body
    diags = diags_of(response.body)
    if diags:
        print_diagnostics(diags)
        raise typer.Exit(1)
    message = response.body.get("message") if isinstance(response.body, dict) else response.body
    raise fail(f"{message} (HTTP {response.status})")

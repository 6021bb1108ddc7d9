"""``meshpilot ca``: see the mesh's CA and rotate its root without a failed request.

``status`` shows the phase, the issuing CA, every root in the trust bundle (the
``ROOTCA`` every proxy holds) and how many workload certificates chain to each. The
rotation is three commands, each refused (with a stable code) when it is not safe yet:
``trust`` (a new root beside the old), ``switch`` (issue from the new CA; re-issues the
workload certificates), ``retire`` (drop the old root).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from meshpilot.api.base import parse_duration
from meshpilot.cli.client import ControlPlaneClient
from meshpilot.cli.common import StateOpt, check, client_for, fail, out

API = "/apis/meshpilot.io/v1/ca"
FINGERPRINT_CHARS = 23
"""How much of a SHA-256 fingerprint the table shows (8 bytes; ``-o json`` has it all)."""

app = typer.Typer(help="The mesh's CA: status, and root rotation (trust, switch, retire).",
                  no_args_is_help=True)

CaDirOpt = Annotated[Path | None, typer.Option(
    "--ca-dir", help="A CA directory (Istio's ca-cert.pem, ca-key.pem, root-cert.pem, "
                     "cert-chain.pem) on the control plane's host")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json")]


def status_view(body: dict[str, Any]) -> list[Any]:
    """The lines and the roots table of ``ca status`` (and after every step)."""
    issuing, pending = body["issuing"], body.get("pending")
    certs = body["workloadCertificates"]
    lines: list[Any] = [
        f"Phase: {body['phase']}   next: {body['next']}",
        f"Issuing CA: {issuing['subject']} (serial {issuing['serialNumber']}, "
        f"SHA-256 {issuing['fingerprint'][:FINGERPRINT_CHARS]}...)",
    ]
    if pending:
        lines.append(f"Pending CA: {pending['subject']} (SHA-256 "
                     f"{pending['fingerprint'][:FINGERPRINT_CHARS]}...)")
    waiting = (f", {certs['awaitingReissue']} still from a previous CA (all re-issued by "
               f"{certs['reissuedBy']})" if certs["awaitingReissue"] else "")
    lines.append(f"Workload certificates: {certs['total']}{waiting}")
    table = Table(box=None, pad_edge=False, title="Trust bundle (ROOTCA)", title_justify="left")
    for title in ("SUBJECT", "SERIAL NUMBER", "NOT AFTER", "SHA-256 FINGERPRINT", "ROLE",
                  "WORKLOAD CERTS"):
        table.add_column(title)
    for root in body["roots"]:
        table.add_row(root["subject"], root["serialNumber"], root["notAfter"],
                      root["fingerprint"][:FINGERPRINT_CHARS] + "...", root["role"],
                      str(root["workloadCertificates"]))
    return [*lines, table]


def _show(body: dict[str, Any], output: str) -> None:
    if output == "json":
        out.print(json.dumps(body, indent=2), markup=False)
        return
    if body.get("message"):
        out.print(body["message"] + ("" if body.get("synced", True) else
                                     " (not every proxy has acknowledged it yet)"),
                  markup=False)
    for part in status_view(body):
        out.print(part, markup=False)


def _step(client: ControlPlaneClient, step: str, payload: dict[str, Any]) -> dict[str, Any]:
    return dict(check(client.request("POST", f"{API}/{step}", json=payload,
                                     timeout=120.0)))


def _ca_dir(ca_dir: Path | None) -> dict[str, Any]:
    return {} if ca_dir is None else {"caDir": str(ca_dir.expanduser().resolve())}


def _wait_reissued(client: ControlPlaneClient, timeout: float) -> dict[str, Any]:
    """Until no workload certificate is left from a previous CA (``switch --wait``)."""
    deadline = time.monotonic() + timeout
    while True:
        body = dict(check(client.request("GET", API)))
        if not body["workloadCertificates"]["awaitingReissue"]:
            return body
        if time.monotonic() > deadline:
            raise fail(f"{body['workloadCertificates']['awaitingReissue']} workload "
                       f"certificates still from a previous CA after {timeout:g}s")
        time.sleep(0.2)


@app.command("status")
def status(state_dir: StateOpt = None, output: OutputOpt = "text") -> None:
    """The phase and next step, the issuing CA, each trusted root (subject, serial, not
    after, fingerprint) and how many workload certificates chain to it."""
    _show(check(client_for(state_dir).request("GET", API)), output)


@app.command("trust")
def trust(ca_dir: CaDirOpt = None, state_dir: StateOpt = None,
          output: OutputOpt = "text") -> None:
    """Step 1: trust a new root beside the current one, on every proxy (ROOTCA). The new
    CA is the one in --ca-dir, else a new self-signed root made in the state directory.
    Nothing is issued from it yet."""
    _show(_step(client_for(state_dir), "trust", _ca_dir(ca_dir)), output)


@app.command("switch")
def switch(
    ca_dir: CaDirOpt = None,
    spread: Annotated[str, typer.Option(
        help="Re-issue the workload certificates over this long (0s: all at once)")] = "30s",
    wait: Annotated[bool, typer.Option(
        "--wait", help="Return once every workload certificate is re-issued")] = False,
    state_dir: StateOpt = None,
    output: OutputOpt = "text",
) -> None:
    """Step 2: issue from the new CA (the one trusted in step 1, or --ca-dir, whose root
    must be trusted) and re-issue every workload certificate from it. Refused until
    every proxy trusts the new root."""
    try:
        seconds = parse_duration(spread)
    except ValueError as exc:
        raise fail(f"--spread: {exc}") from None
    client = client_for(state_dir)
    body = _step(client, "switch", {**_ca_dir(ca_dir), "spreadSeconds": seconds})
    if wait:
        body = {**_wait_reissued(client, seconds + 60.0), "message": body.get("message"),
                "synced": body.get("synced")}
    _show(body, output)


@app.command("retire")
def retire(state_dir: StateOpt = None, output: OutputOpt = "text") -> None:
    """Step 3: stop trusting the old root(s). Refused while a workload certificate still
    chains to one, or a proxy has not taken its new certificate."""
    _show(_step(client_for(state_dir), "retire", {}), output)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="ca")

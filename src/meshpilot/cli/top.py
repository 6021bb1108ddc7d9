"""``meshpilot top``: live request rate, success rate and latency per service and version.

The numbers come from the control plane's embedded telemetry queries (the same Istio
series Prometheus scrapes from ``/metrics``), by default as the destination sidecars
report them.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from meshpilot.cli.client import ControlPlaneClient, NotRunning
from meshpilot.cli.common import StateOpt, check, client_for, fail, out

GROUP_BY = "destination_service,destination_version,destination_workload"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _short_host(host: str) -> str:
    return host.removesuffix(".svc.cluster.local")


def top_table(body: dict[str, Any]) -> Table:
    title = (f"window {body['window']:g}s · {body['samples']} scrapes · "
             f"{', '.join(body['matchers'])}")
    table = Table(box=None, pad_edge=False, title=title, title_justify="left")
    for name in ("SERVICE", "VERSION", "WORKLOAD", "RPS", "SUCCESS", "P50 ms", "P90 ms",
                 "P99 ms", "REQUESTS"):
        table.add_column(name, justify="right" if name not in (
            "SERVICE", "VERSION", "WORKLOAD") else "left")
    rows = sorted(body["rows"], key=lambda r: (r.get("destination_service", ""),
                                               r.get("destination_version", "")))
    for r in rows:
        latency = r.get("latencyMs") or {}
        success = r.get("successRate")
        table.add_row(
            _short_host(r.get("destination_service", "")), r.get("destination_version", ""),
            r.get("destination_workload", ""), f"{r['requestRate']:.2f}",
            "-" if success is None else f"{success:.2f}%", _ms(latency.get("p50")),
            _ms(latency.get("p90")), _ms(latency.get("p99")), str(r.get("requests", 0)))
    if not rows:
        table.add_row("(no requests in the window)", "", "", "", "", "", "", "", "")
    return table


def register(app: typer.Typer) -> None:
    @app.command("top")
    def top(
        state_dir: StateOpt = None,
        namespace: Annotated[str | None, typer.Option(
            "--namespace", "-n", help="Only destinations in this namespace")] = None,
        window: Annotated[str, typer.Option(help="Rate window, e.g. 10s, 1m")] = "30s",
        reporter: Annotated[str, typer.Option(
            help="destination (server sidecars), source (clients, gateways) or any")]
            = "destination",
        refresh: Annotated[float, typer.Option(help="Seconds between refreshes")] = 2.0,
        once: Annotated[bool, typer.Option("--once", help="Print once and exit")] = False,
        output: Annotated[str, typer.Option("--output", "-o", help="table or json")]
            = "table",
    ) -> None:
        """Live per-service, per-version request rate, success rate and p50/p90/p99."""
        client: ControlPlaneClient = client_for(state_dir)
        params: dict[str, str] = {"window": window, "reporter": reporter, "by": GROUP_BY}
        if namespace:
            params["namespace"] = namespace

        def fetch() -> dict[str, Any]:
            return check(client.request("GET", "/apis/meshpilot.io/v1/telemetry/query",
                                        params=params))

        if once or output == "json":
            body = fetch()
            if output == "json":
                out.print(json.dumps(body, indent=2), markup=False)
            else:
                out.print(top_table(body), markup=False)
            return
        try:
            with Live(top_table(fetch()), console=out, auto_refresh=False) as live:
                while True:
                    time.sleep(refresh)
                    live.update(top_table(fetch()), refresh=True)
        except KeyboardInterrupt:
            return
        except NotRunning as exc:
            raise fail(str(exc)) from None

"""``meshpilot dashboard``: a sign-in link to the web dashboard the control plane serves.

The link carries a one-time code the control plane made for this call (it works once,
within a minute), so the API's bearer token never reaches a browser, its history or its
address bar.
"""

from __future__ import annotations

from typing import Annotated

import typer

from meshpilot.cli.common import StateOpt, check, client_for, out

CODES = "/apis/meshpilot.io/v1/dashboard/codes"


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard(
        state_dir: StateOpt = None,
        open_browser: Annotated[bool, typer.Option(
            "--open", help="Open the link in this machine's web browser")] = False,
    ) -> None:
        """Print a one-time sign-in link to the web dashboard (the mesh and its rollouts,
        live)."""
        body = check(client_for(state_dir).request("POST", CODES))
        url = str(body["url"])
        seconds = body.get("expiresInSeconds", 60)
        out.print(f"Open the dashboard (this link works once, within {seconds:g}s):",
                  markup=False)
        out.print(url, markup=False, soft_wrap=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

"""``meshpilot host``: let other hosts join the mesh (Istio's WorkloadGroup model).

``token create --group NS/NAME`` asks the control plane for a short-lived, single-use
join token for that group. ``join`` runs on the other host: it starts the node agent
(``python -m meshpilot.hosts``, a process of its own, in the foreground) which makes the
host's key, joins, runs the sidecar and reports the group's probe.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from meshpilot.api.base import parse_duration
from meshpilot.cli.common import StateOpt, check, client_for, fail, out

API = "/apis/meshpilot.io/v1/hosts"

app = typer.Typer(help="Hosts outside this machine that join the mesh (WorkloadGroup).",
                  no_args_is_help=True)
token_app = typer.Typer(help="Join tokens: short-lived, single use, bound to one group.",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    group: Annotated[str, typer.Option(help="NAMESPACE/NAME of the WorkloadGroup")],
    ttl: Annotated[str, typer.Option(help="How long the token may be used (once): 10m, "
                                          "1h; at most 24h")] = "10m",
    state_dir: StateOpt = None,
) -> None:
    """Print a join token for ``host join --token``."""
    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise fail(f"--ttl: {exc}") from None
    body = check(client_for(state_dir).request(
        "POST", f"{API}/tokens", json={"group": group, "ttlSeconds": seconds}))
    out.print(body["token"], soft_wrap=True)
    print(f"for WorkloadGroup {body['group']}, single use, until {body['expiresAt']}",
          file=sys.stderr)


@app.command("join")
def join(
    server: Annotated[str, typer.Option(help="The control plane's API (https://ADDR:PORT, "
                                             "from `up --listen ADDR`)")],
    token: Annotated[str, typer.Option(help="From `meshpilot host token create`")],
    group: Annotated[str, typer.Option(help="NAMESPACE/NAME of the WorkloadGroup")],
    address: Annotated[str, typer.Option(help="This host's address in the mesh")],
    ca_file: Annotated[Path, typer.Option(help="The control plane's roots (its "
                                               "api-ca.pem), to verify it")],
    state_dir: Annotated[Path, typer.Option(help="Where this host's key and sidecar files "
                                                 "live")] = Path("meshpilot-host"),
    app_port: Annotated[list[str] | None, typer.Option(
        help="NAME=PORT: the app on this host serves the group's port NAME on PORT "
             "(one per port of the group's template)")] = None,
    outbound_port: Annotated[int, typer.Option(help="The sidecar's HTTP proxy port, the "
                                                    "app's HTTP_PROXY")] = 15001,
    node_name: Annotated[str, typer.Option(
        help="This host's node name: Deployments whose template names it (spec.nodeName, "
             "nodeSelector kubernetes.io/hostname) run here")] = "",
    pod_addresses: Annotated[str, typer.Option(
        help="CIDR of this host's own addresses for those pods (default: --address "
             "alone, one pod at a time)")] = "",
    east_west_gateway: Annotated[bool, typer.Option(
        "--east-west-gateway", "--network-gateway",
        help="Also run the east-west gateway of this host's network here (port 15443 at "
             "--address); meshNetworks names it by registryServiceName "
             "istio-eastwestgateway.istio-system.svc.cluster.local under that "
             "network")] = False,
) -> None:
    """Join the group and run this host's sidecar, in the foreground (Ctrl-C stops)."""
    args = [sys.executable, "-m", "meshpilot.hosts", "join", "--server", server,
            "--token", token, "--group", group, "--address", address,
            "--ca-file", str(ca_file.resolve()), "--state-dir", str(state_dir.resolve()),
            "--outbound-port", str(outbound_port)]
    for value in app_port or []:
        args += ["--app-port", value]
    if node_name:
        args += ["--node-name", node_name]
    if pod_addresses:
        args += ["--pod-addresses", pod_addresses]
    if east_west_gateway:
        args.append("--east-west-gateway")
    os.execv(sys.executable, args)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="host")

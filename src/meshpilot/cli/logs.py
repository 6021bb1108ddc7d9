"""``meshpilot logs``: a pod's output, or its sidecar's access log, as ``kubectl logs``.

Istio users read a sidecar's requests with ``kubectl logs POD -c istio-proxy``; the same
words work here, and ``--proxy`` is the short form. The built-in proxies (``mesh-proxy``,
``ingressgateway``) are not pods: their logs come from the proxies API, under the names
``proxy-config`` takes. Everything comes from the control plane's API (the pod log
endpoint, Kubernetes' ``/log``), never from the files themselves.
"""

from __future__ import annotations

import sys
from types import MappingProxyType
from typing import Annotated

import typer

from meshpilot.cli.client import NotRunning, Refused
from meshpilot.cli.common import NamespaceOpt, StateOpt, check, client_for, fail

PROXY_CONTAINER = "istio-proxy"
BUILT_IN = MappingProxyType({"mesh-proxy": "mesh-proxy", "ingressgateway": "ingressgateway",
                             "istio-ingressgateway": "ingressgateway"})
"""Names a user may give a built-in proxy → the name the proxies API knows it by."""


def log_path(name: str, namespace: str) -> str:
    """The API path of the logs asked for."""
    if name in BUILT_IN:
        return f"/apis/meshpilot.io/v1/proxies/{BUILT_IN[name]}/log"
    return f"/api/v1/namespaces/{namespace}/pods/{name}/log"


def register(app: typer.Typer) -> None:
    """Add ``logs`` to ``app``."""

    @app.command("logs")
    def logs(
        name: Annotated[str, typer.Argument(help="Pod name, or mesh-proxy / ingressgateway")],
        namespace: NamespaceOpt = "default",
        container: Annotated[str | None, typer.Option(
            "--container", "-c",
            help="istio-proxy: the sidecar's access log and Envoy's output; otherwise "
                 "the app's")] = None,
        proxy: Annotated[bool, typer.Option(
            "--proxy", help="The sidecar's logs (the same as -c istio-proxy)")] = False,
        tail: Annotated[int | None, typer.Option(
            "--tail", help="Only the last N lines")] = None,
        follow: Annotated[bool, typer.Option(
            "--follow", "-f", help="Keep printing lines as they are written")] = False,
        state_dir: StateOpt = None,
    ) -> None:
        """Print a pod's logs; with --proxy (or -c istio-proxy) its sidecar's access log
        in Istio's default format, one line per request."""
        params: dict[str, str] = {}
        if proxy or container == PROXY_CONTAINER or name in BUILT_IN:
            params["container"] = PROXY_CONTAINER
        elif container:
            params["container"] = container
        if tail is not None:
            params["tailLines"] = str(tail)
        if follow:
            params["follow"] = "true"
        client = client_for(state_dir)
        path = log_path(name, namespace)
        try:
            for chunk in client.stream("GET", path, params=params):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        except Refused as exc:
            check(exc.response)
        except NotRunning as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(0) from None

"""CLI commands for the running mesh: proxy-status, proxy-config, pods, demo-app."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from meshpilot.cli.client import ControlPlaneClient
from meshpilot.cli.common import StateOpt, check, client_for, out


def _short(url: str) -> str:
    return {"Cluster": "CDS", "ClusterLoadAssignment": "EDS", "Listener": "LDS",
            "RouteConfiguration": "RDS", "ScopedRouteConfiguration": "SRDS"}.get(url, url)


_COLUMN_TYPES = MappingProxyType(
    {"CDS": ("CDS",), "EDS": ("EDS",), "LDS": ("LDS",), "RDS": ("SRDS", "RDS")})
"""A sidecar's routes come as scopes (SRDS) naming route configs (RDS): one column."""


def proxy_status_table(proxies: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for title in ("NAME", "KIND", "NAMESPACE", "API", "CDS", "EDS", "LDS", "RDS", "VERSION"):
        table.add_column(title)
    for p in sorted(proxies, key=lambda p: (p["kind"], p["namespace"], proxy_name(p))):
        cells = []
        for column, kinds in _COLUMN_TYPES.items():
            ts = {_short(k): v for k, v in p["types"].items() if _short(k) in kinds}
            nack = next((k for k in kinds if ts.get(k, {}).get("nack")), None)
            if column not in ts:
                cells.append("NOT SENT")
            elif nack is not None:
                prefix = f"{nack}: " if nack != column else ""
                cells.append(f"NACK ({prefix}{ts[nack]['nack'][:60]})")
            elif all(t.get("acked") == t.get("sent") for t in ts.values()):
                cells.append("SYNCED")
            else:
                cells.append("STALE")
        state = "" if p["connected"] else " (disconnected)"
        version = f"{p['meshVersion']}/{p['latestVersion']}"
        table.add_row(proxy_name(p), p["kind"], p["namespace"], p["api"], *cells,
                      version + state + refused_note(p))
    return table


def proxy_name(proxy: dict[str, Any]) -> str:
    return str(proxy.get("name") or proxy.get("workload") or proxy["id"])


def refused_note(proxy: dict[str, Any]) -> str:
    """Why the proxy stays on an older config, when a newer one was refused for it."""
    refused = proxy.get("refused")
    if not refused:
        return ""
    return f" (version {refused['version']} REFUSED: {'; '.join(refused['problems'])[:120]})"


def _cluster_row(cluster: dict[str, Any]) -> list[str]:
    name = cluster.get("cluster", {}).get("name", "")
    parts = name.split("|")
    if len(parts) == 4:
        direction, port, subset, host = parts
    else:
        direction, port, subset, host = "", "", "", name
    ctype = cluster.get("cluster", {}).get("type", "EDS")
    return [host or "", port, subset or "-", direction.upper() or "-", ctype]


_Rows = Iterator[list[str]]


def _cluster_rows(items: list[dict[str, Any]]) -> _Rows:
    return (_cluster_row(item) for item in items)


def _listener_rows(items: list[dict[str, Any]]) -> _Rows:
    for item in items:
        listener = (item.get("active_state") or {}).get("listener") or {}
        sock = (listener.get("address") or {}).get("socket_address") or {}
        yield [item.get("name", ""), sock.get("address", ""), str(sock.get("port_value", ""))]


def _some_domains(domains: list[str]) -> str:
    """The first three domains and how many more: a vhost lists every name its host is
    reached by, which would crowd the table."""
    more = f" +{len(domains) - 3}" if len(domains) > 3 else ""
    return ", ".join(domains[:3]) + more


def _route_rows(items: list[dict[str, Any]]) -> _Rows:
    for item in items:
        config = item.get("route_config") or {}
        for vhost in config.get("virtual_hosts", []):
            yield [config.get("name", ""), vhost.get("name", ""),
                   _some_domains(vhost.get("domains", [])), str(_route_count(vhost))]


def _route_count(vhost: dict[str, Any]) -> int:
    """A virtual host's routes: its list, or the distinct routes its matcher picks from
    (a sidecar's inbound routes, one per counted caller, are found by a matcher)."""
    if "matcher" not in vhost:
        return len(vhost.get("routes", []))
    return len(_matcher_routes(vhost["matcher"]))


def _matcher_routes(node: Any) -> set[str]:
    """The names of the route actions anywhere in a matcher (as JSON)."""
    if isinstance(node, list):
        return set().union(*(_matcher_routes(v) for v in node))
    if not isinstance(node, dict):
        return set()
    action = node.get("action")
    found = {str(action.get("name", ""))} if isinstance(action, dict) else set()
    return found.union(*(_matcher_routes(v) for k, v in node.items() if k != "action"))


def _endpoint_rows(items: list[dict[str, Any]]) -> _Rows:
    for item in items:
        cla = item.get("endpoint_config") or {}
        for group in cla.get("endpoints", []):
            for ep in group.get("lb_endpoints", []):
                sock = ((ep.get("endpoint") or {}).get("address") or {}).get(
                    "socket_address") or {}
                yield [f"{sock.get('address')}:{sock.get('port_value')}",
                       ep.get("health_status", "HEALTHY"), cla.get("cluster_name", "")]


def _secret_rows(items: list[dict[str, Any]]) -> _Rows:
    """One row per certificate, as ``istioctl proxy-config secret``: a chain's leaf
    shows its SPIFFE ID where a root shows its subject."""
    for item in items:
        for cert in item.get("certificates") or [{}]:
            who = ", ".join(cert.get("uriSans") or []) or cert.get("subject") or "-"
            valid = cert.get("validNow")
            yield [item.get("name", ""), item.get("type", ""), item.get("status", ""),
                   "-" if valid is None else str(valid).lower(),
                   cert.get("serialNumber", "-"), cert.get("notBefore", "-"),
                   cert.get("notAfter", "-"), who, cert.get("issuer") or "-"]


def secret_summary(items: list[dict[str, Any]]) -> list[str]:
    """What a person asks first: whose certificate this is and whether the proxy trusts
    the root it was signed by."""
    lines = []
    for item in items:
        if item.get("type") != "Cert Chain":
            continue
        root = item.get("trustedRoot")
        lines.append(f"{item.get('name')}: identity {item.get('identity') or '<none>'}, "
                     + ("valid now" if item.get("validNow") else "NOT valid now") + ", "
                     + (f"signed by trusted root {root}" if root
                        else "NOT signed by any root this proxy trusts"))
    return lines


_ENDPOINTS_TABLE = (("ENDPOINT", "STATUS", "CLUSTER"), _endpoint_rows)
_CONFIG_TABLES: Mapping[str, tuple[tuple[str, ...],
                                   Callable[[list[dict[str, Any]]], _Rows]]] = MappingProxyType({
    "clusters": (("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"), _cluster_rows),
    "listeners": (("NAME", "ADDRESS", "PORT"), _listener_rows),
    "routes": (("NAME", "VIRTUAL HOST", "DOMAINS", "ROUTES"), _route_rows),
    "endpoints": _ENDPOINTS_TABLE,
    "secret": (("RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT BEFORE",
                "NOT AFTER", "IDENTITY / SUBJECT", "ISSUER"), _secret_rows),
})
"""(column titles, rows of /config_dump items) per proxy-config kind."""


def config_table(kind: str, items: list[dict[str, Any]]) -> Table:
    """The table of one kind of /config_dump items; any other kind reads as endpoints."""
    titles, rows = _CONFIG_TABLES.get(kind, _ENDPOINTS_TABLE)
    table = Table(box=None, pad_edge=False)
    for title in titles:
        table.add_column(title)
    for row in rows(items):
        table.add_row(*row)
    return table


def pods_table(items: list[dict[str, Any]], with_namespace: bool) -> Table:
    table = Table(box=None, pad_edge=False)
    titles = (["NAMESPACE"] if with_namespace else []) + [
        "NAME", "READY", "STATUS", "RESTARTS", "IP", "DEPLOYMENT", "LABELS"]
    for title in titles:
        table.add_column(title)
    for pod in items:
        meta, status = pod["metadata"], pod["status"]
        owner = (meta.get("ownerReferences") or [{}])[0].get("name", "")
        labels = ",".join(f"{k}={v}" for k, v in sorted(meta.get("labels", {}).items()))
        row = ([meta["namespace"]] if with_namespace else []) + [
            meta["name"], "1/1" if status.get("ready") else "0/1",
            status.get("reason") or status.get("phase", ""),
            str(status.get("restartCount", 0)), status.get("podIP") or "", owner, labels]
        table.add_row(*row)
    return table


def register(app: typer.Typer) -> None:
    """Add the mesh commands to ``app`` (kept apart from the config commands)."""

    @app.command("proxy-status")
    def proxy_status(
        state_dir: StateOpt = None,
        output: Annotated[str, typer.Option("--output", "-o")] = "table",
    ) -> None:
        """Every proxy: which config version it has ACKed, per xDS type, or its NACK."""
        client: ControlPlaneClient = client_for(state_dir)
        body = check(client.request("GET", "/apis/meshpilot.io/v1/proxies"))
        if output == "json":
            out.print(json.dumps(body, indent=2), markup=False)
        else:
            out.print(proxy_status_table(body["proxies"]), markup=False)

    @app.command("proxy-config")
    def proxy_config(
        kind: Annotated[str, typer.Argument(
            help="routes, clusters, listeners, endpoints, secret, all")],
        name: Annotated[str, typer.Argument(help="pod name, mesh-proxy or ingressgateway")],
        state_dir: StateOpt = None,
        output: Annotated[str, typer.Option("--output", "-o")] = "table",
    ) -> None:
        """What that Envoy actually holds (read from its admin /config_dump); ``secret``:
        its workload certificate and the roots it trusts (never its key)."""
        client: ControlPlaneClient = client_for(state_dir)
        body = check(client.request("GET", f"/apis/meshpilot.io/v1/proxies/{name}/config/{kind}"))
        if output == "json" or kind == "all":
            out.print(json.dumps(body, indent=2), markup=False)
            return
        out.print(config_table(kind, body["items"]), markup=False)
        if kind == "secret":
            for line in secret_summary(body["items"]):
                out.print(line, markup=False)

    @app.command("send")
    def send(
        url: Annotated[str, typer.Argument(help="e.g. http://myapp:8080/")],
        count: Annotated[int, typer.Option("--count", "-n", help="Requests to send")] = 100,
        header: Annotated[list[str] | None, typer.Option(
            "--header", "-H", help="Request header 'Name: value'; repeatable")] = None,
        ingress: Annotated[bool, typer.Option(
            "--ingress", help="Send to the ingress gateway instead of through the mesh "
                              "proxy (the URL's host becomes the Host header)")] = False,
        state_dir: StateOpt = None,
    ) -> None:
        """Send requests from inside the mesh (through the mesh proxy) and count the
        answers by X-Version and status: a quick look at a traffic split."""
        client: ControlPlaneClient = client_for(state_dir)
        headers = dict(h.split(":", 1) for h in header or [])
        headers = {k.strip(): v.strip() for k, v in headers.items()}
        counts: dict[tuple[str, int], int] = {}
        if ingress:
            target = httpx.URL(url)
            headers.setdefault("Host", target.host)
            http = httpx.Client(base_url=client.endpoints["ingress"], trust_env=False,
                                timeout=10.0)
            path = target.raw_path.decode() or "/"
        else:
            http = httpx.Client(proxy=client.endpoints["mesh_proxy"], trust_env=False,
                                timeout=10.0)
            path = url
        with http:
            for _ in range(max(0, min(count, 100_000))):
                try:
                    r = http.get(path, headers=headers)
                    key = (r.headers.get("x-version", "-"), r.status_code)
                except httpx.HTTPError as exc:
                    key = (type(exc).__name__, 0)
                counts[key] = counts.get(key, 0) + 1
        table = Table(box=None, pad_edge=False)
        for title in ("VERSION", "STATUS", "COUNT", "SHARE"):
            table.add_column(title)
        total = sum(counts.values()) or 1
        for (version, status), n in sorted(counts.items()):
            table.add_row(version, str(status), str(n), f"{100 * n / total:.1f}%")
        out.print(table, markup=False)

    @app.command("demo-app", context_settings={"allow_extra_args": True,
                                               "ignore_unknown_options": True})
    def demo_app(ctx: typer.Context) -> None:
        """The demo workload: JSON with its version and pod; knobs for errors and latency.

        Options: --version V, --error-rate R, --latency-ms N, --body-size N, --port P.
        """
        from meshpilot.demoapp.app import main as demo_main

        raise typer.Exit(demo_main(list(ctx.args)) or 0)

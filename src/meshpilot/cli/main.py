"""``meshpilot``: the command line. Talks to the control plane only over its HTTP API."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

import meshpilot
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import UnknownKind, by_name
from meshpilot.api.loader import read_sources
from meshpilot.api.mesh_config import MESH_CONFIG_FILE
from meshpilot.cli import analyze_mesh
from meshpilot.cli.ca import register as register_ca_commands
from meshpilot.cli.client import ControlPlaneClient, NotRunning, kind_label, pid_alive
from meshpilot.cli.columns import age, columns_for
from meshpilot.cli.common import (
    FilesOpt,
    NamespaceOpt,
    StateOpt,
    check,
    client_for,
    diags_of,
    err,
    fail,
    out,
    print_diagnostics,
)
from meshpilot.cli.dashboard import register as register_dashboard_command
from meshpilot.cli.describe_pod import describe_pod
from meshpilot.cli.host import register as register_host_commands
from meshpilot.cli.logs import register as register_logs_command
from meshpilot.cli.mesh_commands import pods_table, proxy_name, refused_note
from meshpilot.cli.mesh_commands import register as register_mesh_commands
from meshpilot.cli.rollout import register as register_rollout_commands
from meshpilot.cli.top import register as register_top_command
from meshpilot.statedir import StateDir
from meshpilot.validation import plan_apply
from meshpilot.validation.codes import LOCAL_NETWORK_REFUSED
from meshpilot.validation.mesh_config import MeshConfigError, read_mesh_config
from meshpilot.validation.mesh_networks import network_name_problem

app = typer.Typer(
    name="meshpilot",
    help="A service mesh with progressive delivery built in (Istio and Flagger APIs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
def _sources(files: list[str] | None) -> list[tuple[str, str]]:
    if not files:
        raise fail("give at least one -f FILE, DIR or -")
    try:
        return read_sources(files)
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(str(exc)) from None


def _one_file(path: str, flag: str) -> tuple[str, str]:
    """(name, text) of the one file ``flag`` names."""
    sources = _sources([path])
    if len(sources) != 1:
        raise fail(f"{flag} {path}: name one file")
    return sources[0]


# --- lifecycle -------------------------------------------------------------------

class AccessLog(StrEnum):
    """``up --access-log``: Istio's ``meshConfig.accessLogFile`` set or unset."""

    on = "on"
    off = "off"


@app.command()
def up(
    paths: Annotated[list[str] | None, typer.Argument(
        help="Files or directories to apply once it is up; waits until their workloads "
             "are ready and every proxy has their config")] = None,
    state_dir: StateOpt = None,
    host: Annotated[str, typer.Option(help="Address the API binds to")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port (0 picks a free one)")] = 0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for it to come up")] = 30.0,
    envoy_concurrency: Annotated[int, typer.Option(help="Envoy worker threads per proxy")] = 1,
    no_mesh: Annotated[bool, typer.Option("--no-mesh",
                                          help="Config plane only: no proxies, no pods")] = False,
    trust_domain: Annotated[str, typer.Option(
        help="SPIFFE trust domain of the workloads' identities")] = "cluster.local",
    ca_dir: Annotated[str | None, typer.Option(
        help="Your CA (Istio's ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem); "
             "default: a root made in the state directory")] = None,
    cert_ttl: Annotated[str, typer.Option(
        help="Workload (and API) certificate lifetime (renewed at about half): 24h, 1h, "
             "30s")] = "24h",
    tls: Annotated[bool, typer.Option(
        "--tls", help="Serve the API over HTTPS with a certificate from the mesh's CA; the "
                      "CLI verifies it against the CA's roots (api-ca.pem in the state "
                      "directory)")] = False,
    access_log: Annotated[AccessLog, typer.Option(
        help="Proxies write Istio-format access logs, read with `meshpilot logs POD "
             "--proxy` (kept under 10 MB each, in the state directory)")] = AccessLog.on,
    loadtester_commands: Annotated[bool, typer.Option(
        "--loadtester-commands",
        help="The built-in load tester runs webhook commands (metadata type bash and cmd, "
             "other than hey) on this host, as the control plane's user; off by "
             "default")] = False,
    max_body_bytes: Annotated[int | None, typer.Option(
        min=1, help="Largest request body the API reads (an apply's files, as JSON); "
                    "larger ones are refused with 413. Default: 4 MiB")] = None,
    listen: Annotated[str | None, typer.Option(
        help="Make the control plane reachable from other hosts at this address: the API "
             "over HTTPS and xDS over mutual TLS (for `meshpilot host join`); implies "
             "--tls. Default: loopback only")] = None,
    host_timeout: Annotated[str | None, typer.Option(
        help="A joined host silent for this long leaves the endpoints (default 10s)")] = None,
    host_grace: Annotated[str | None, typer.Option(
        help="A joined host silent for this long has its WorkloadEntry deleted "
             "(default 5m)")] = None,
    store: Annotated[str | None, typer.Option(
        help="Where the config lives: the SQLite file in the state directory (default), "
             "or etcd://HOST:2379,HOST:2379/PREFIX (members; prefix optional): replicas (each "
             "with its own --state-dir) share one etcd and elect a leader")] = None,
    hpa_sync_period: Annotated[str | None, typer.Option(
        help="How often HorizontalPodAutoscalers are synced (Kubernetes' "
             "--horizontal-pod-autoscaler-sync-period), e.g. 5s. Default: 15s")] = None,
    mesh_config: Annotated[str | None, typer.Option(
        help="meshConfig YAML: outboundTrafficPolicy.mode (ALLOW_ANY, the default, or "
             "REGISTRY_ONLY) and dnsResolvers; default: mesh.yaml in the state directory, "
             "when there")] = None,
    network: Annotated[str | None, typer.Option(
        help="The network of this host and its pods, as named in the mesh config's "
             "meshNetworks (Istio's values.global.network). Default: the network listing "
             "fromRegistry: Kubernetes there. A meshNetworks that puts that registry on "
             "another network is refused (MP0095)")] = None,
) -> None:
    """Start the control plane in the background; print where it listens."""
    hosts_args = _hosts_args(host, listen, host_timeout, host_grace, network or "")
    state = StateDir.resolve(state_dir)
    endpoints = state.read_endpoints()
    holder = state.lock_holder()
    if not (endpoints and pid_alive(running_pid(state))) and holder is not None:
        raise fail(f"a control plane{f' (pid {holder})' if holder else ''} already holds "
                   f"{state.root}, but its endpoints.json is missing or unreadable; stop it "
                   f"with `meshpilot down --state-dir {state.root}`, then `meshpilot up`")
    if endpoints and pid_alive(running_pid(state)):
        running_tls = str(endpoints["api"]).startswith("https://")
        note = "" if running_tls == tls or not tls else (
            "; it serves plain HTTP: `meshpilot down`, then `up --tls`")
        out.print(f"meshpilot is already up: API {endpoints['api']} (state {state.root}){note}")
    else:
        identity = ["--trust-domain", trust_domain, "--cert-ttl", cert_ttl]
        if ca_dir:
            identity += ["--ca-dir", str(Path(ca_dir).resolve())]
        if tls:
            identity.append("--tls")
        identity += ["--access-log", access_log.value]
        if loadtester_commands:
            identity.append("--loadtester-commands")
        if max_body_bytes is not None:
            identity += ["--max-body-bytes", str(max_body_bytes)]
        identity += hosts_args
        if store is not None:
            identity += ["--store", store]  # checked by the server: a bad one fails `up`
        if hpa_sync_period is not None:
            identity += ["--hpa-sync-period", hpa_sync_period]
        identity += _mesh_config_args(state, mesh_config, network or "")
        _start(state, host, port, wait, envoy_concurrency, no_mesh, identity)
    if paths:
        sources = _sources(paths)
        client = client_for(state_dir)
        body = check(client.apply(sources))
        print_diagnostics(diags_of(body))
        for result in body.get("results") or []:
            out.print(f"{kind_label(result)} {result['action']}")
        _wait_ready(client, wait=max(wait, 180.0))


def _mesh_config_args(state: StateDir, given: str | None, network: str = "") -> list[str]:
    """Check the mesh config before starting (the control plane would refuse it too, in
    its log), with the host's ``network`` when given: errors stop `up` with file, line
    and field; warnings are printed."""
    path = Path(given) if given else state.root / MESH_CONFIG_FILE
    if given is None and not path.is_file():
        _one_network(network)
        return []
    try:
        config, warnings = read_mesh_config(path, network)
    except MeshConfigError as exc:
        print_diagnostics(exc.diagnostics)
        raise fail(f"{path}: mesh config refused; the control plane was not started") from None
    print_diagnostics(warnings)
    if not config.networks:
        _one_network(network)
    return ["--mesh-config", str(path.resolve())] if given else []


def _one_network(network: str) -> None:
    """Say that ``--network`` routes nothing without ``meshNetworks`` (one network)."""
    if network:
        out.print(f"note: --network {network}: the mesh config has no meshNetworks, so the "
                  "mesh is one network and the name routes nothing (it is shown in "
                  "`meshpilot status` and endpoints.json)", markup=False)


def _hosts_args(host: str, listen: str | None, timeout: str | None, grace: str | None,
                network: str = "") -> list[str]:
    """The server flags for other hosts (``--listen``, the joined hosts' health, and this
    host's ``--network``)."""
    if listen and host not in ("127.0.0.1", listen):
        raise fail(f"--host {host} and --listen {listen}: with --listen the API binds to "
                   "the listen address; give one of them")
    if network and (problem := network_name_problem(network)):
        raise fail(f"--network: {problem} [{LOCAL_NETWORK_REFUSED.code}]")
    args = ["--listen", listen] if listen else []
    args += ["--network", network] if network else []
    for flag, value in (("--host-timeout", timeout), ("--host-grace", grace)):
        if value:
            args += [flag, value]
    return args


def _wait_ready(client: ControlPlaneClient, wait: float) -> None:
    """Until every Deployment has its ready replicas and every proxy the latest config."""
    deadline = time.monotonic() + wait
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = check(client.request("GET", "/apis/meshpilot.io/v1/readiness"))
        if body.get("ready"):
            pods = sum(d.get("readyReplicas", 0) for d in body["deployments"])
            proxies = body["proxies"]["synced"]
            out.print(f"ready: {pods} pod(s), {proxies} proxy(ies) on mesh version "
                      f"{body['meshVersion']}")
            return
        time.sleep(0.2)
    proxies = check(client.request("GET", "/apis/meshpilot.io/v1/proxies")).get("proxies", [])
    for p in proxies:
        if p["connected"] and p["meshVersion"] < p["latestVersion"]:
            nacks = {t: v["nack"] for t, v in p["types"].items() if v.get("nack")}
            err.print(f"proxy {proxy_name(p)}: on mesh version {p['meshVersion']} "
                      f"of {p['latestVersion']}" + (f", NACK {nacks}" if nacks else "")
                      + refused_note(p))
    for d in body.get("deployments", []):
        if d.get("error") or d.get("readyReplicas", 0) < (d.get("replicas") or 0):
            err.print(f"deployment {d['namespace']}/{d['name']}: "
                      f"{d.get('readyReplicas', 0)}/{d.get('replicas')} ready "
                      f"{d.get('error') or ''}")
    raise fail(f"the mesh was not ready within {wait:g}s (see `meshpilot get pods -A`)")


def _start(state: StateDir, host: str, port: int, wait: float, envoy_concurrency: int,
           no_mesh: bool, extra: list[str]) -> None:
    state.create()
    state.clear_endpoints()
    with open(state.log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshpilot.server", "--state-dir", str(state.root),
             "--host", host, "--port", str(port), "--envoy-concurrency",
             str(envoy_concurrency), *(["--no-mesh"] if no_mesh else []), *extra],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        endpoints = state.read_endpoints()
        if endpoints and endpoints.get("pid") == proc.pid:
            out.print(f"meshpilot is up: API {endpoints['api']} (state {state.root}, "
                      f"pid {proc.pid})")
            if endpoints.get("mesh_proxy"):
                out.print(f"mesh proxy (curl -x): {endpoints['mesh_proxy']}   "
                          f"ingress: {endpoints.get('ingress')}")
            if endpoints.get("kubeconfig"):
                out.print(f"kubectl: export KUBECONFIG={endpoints['kubeconfig']}")
            return
        if proc.poll() is not None:
            tail = state.log_file.read_text(errors="replace").strip().splitlines()[-5:]
            raise fail("the control plane exited at start:\n  " + "\n  ".join(tail))
        time.sleep(0.05)
    proc.terminate()
    raise fail(f"the control plane did not come up within {wait:g}s; see {state.log_file}")


@app.command()
def down(
    state_dir: StateOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds before it is killed")] = 15.0,
) -> None:
    """Stop the control plane of this state directory."""
    state = StateDir.resolve(state_dir)
    pid = running_pid(state)
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


def running_pid(state: StateDir) -> int:
    """The control plane's pid: from endpoints.json, else from the lock it holds (so a
    lost or garbled endpoints.json never hides a running control plane); 0 if none."""
    endpoints = state.read_endpoints() or {}
    try:
        pid = int(endpoints.get("pid", 0))
    except (TypeError, ValueError):
        pid = 0
    if pid and pid_alive(pid):
        return pid
    return state.lock_holder() or 0


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
        body = check(client.version())
    except NotRunning as exc:
        raise fail(str(exc)) from None
    table = Table(show_header=False, box=None)
    for label, value in (
        ("status", "running"), ("version", body.get("version")),
        ("api", client.endpoints.get("api")), ("pid", body.get("pid")),
        ("state dir", body.get("stateDir")), ("started", body.get("startedAt")),
        ("revision", body.get("revision")),
        ("proxies", _proxies_summary(client)),
        ("network", body.get("network")),
    ):
        if label != "network" or value:  # a network only when one is named
            table.add_row(label, str(value))
    out.print(table)


def _proxies_summary(client: ControlPlaneClient) -> str:
    """How many proxies are connected and on the latest config; any refused config."""
    reply = client.request("GET", "/apis/meshpilot.io/v1/proxies")
    if reply.status != 200 or not isinstance(reply.body, dict):
        return "-"  # no mesh (``up --no-mesh``)
    proxies = [p for p in reply.body.get("proxies", []) if p["connected"]]
    synced = sum(p["meshVersion"] >= p["latestVersion"] for p in proxies)
    refused = [p for p in proxies if p.get("refused")]
    text = f"{len(proxies)} connected, {synced} on the latest config"
    if refused:
        text += f", {len(refused)} REFUSED a newer one:" + refused_note(refused[0])
    return text


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
    client = client_for(state_dir)
    response = client.apply(sources, dry_run=dry_run)
    body = check(response)
    print_diagnostics(diags_of(body))
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
        client = client_for(state_dir)
        body = check(client.delete_sources(_sources(filename), ignore_not_found))
    elif kind and name:
        info = _kind(kind)
        client = client_for(state_dir)
        key = ObjectKey(info.group, info.kind, info.scope(namespace), name)
        body = check(client.delete_keys([key], ignore_not_found))
    else:
        raise fail("give KIND NAME or -f FILE")
    print_diagnostics(diags_of(body))
    for result in body.get("results") or []:
        out.print(f"{kind_label(result)} deleted")


def _kind(name: str) -> Any:
    try:
        return by_name(name)
    except UnknownKind as exc:
        raise fail(str(exc)) from None


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
        raise fail(f"unknown output format {output!r}; use one of: table, yaml, json, name")
    if kind.lower() in ("pod", "pods", "po"):
        _get_pods(client_for(state_dir), name, namespace, all_namespaces, output)
        return
    info = _kind(kind)
    client = client_for(state_dir)
    if name:
        items = [check(client.get(info, namespace, name))]
        shape: Any = items[0]
    else:
        listing = check(client.list(info, None if all_namespaces else namespace))
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


def _get_pods(client: ControlPlaneClient, name: str | None, namespace: str,
              all_namespaces: bool, output: str) -> None:
    path = "/api/v1/pods" if all_namespaces else f"/api/v1/namespaces/{namespace}/pods"
    listing = check(client.request("GET", path))
    items = [p for p in listing["items"] if name is None or p["metadata"]["name"] == name]
    if output == "json":
        out.print(json.dumps(listing if name is None else items, indent=2), markup=False)
    elif output == "yaml":
        out.print(yaml.safe_dump(listing if name is None else items, sort_keys=False),
                  markup=False)
    elif not items:
        err.print("No pods found.")
    else:
        out.print(pods_table(items, all_namespaces), markup=False)


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
    """Show one object in full, with what the control plane finds wrong with it; for a
    pod, what its sidecar enforces (mTLS mode per port, authorization, JWT) and why."""
    if kind.lower() in ("pod", "pods", "po"):
        describe_pod(client_for(state_dir), namespace, name)
        return
    info = _kind(kind)
    client = client_for(state_dir)
    obj = check(client.get(info, namespace, name))
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
    key = ObjectKey(info.group, info.kind, info.scope(namespace), name)
    findings = diags_of(check(client.diagnostics(key)))
    out.print("Diagnostics:" + ("" if findings else " <none>"), markup=False)
    for d in findings:
        where = f" {d.path}" if d.path else ""  # a finding about the whole object has none
        out.print(f"  {d.severity.value} {d.code}{where}: {d.message}", markup=False)


@app.command()
def analyze(
    filename: FilesOpt = None,
    mesh_config: Annotated[str | None, typer.Option(
        "--mesh-config", "--meshConfigFile",
        help="The mesh config to judge the files against (as `up --mesh-config`), for "
             "the findings that need it (a network meshNetworks does not list: MP2032); "
             "a mesh config file among the -f files is read the same way")] = None,
) -> None:
    """Validate files offline (no control plane needed); exit 1 on errors."""
    given = _one_file(mesh_config, "--mesh-config") if mesh_config else None
    sources, found = analyze_mesh.split(_sources(filename), given)
    plan = plan_apply(sources)
    analyze_mesh.judge(plan, found)
    print_diagnostics(plan.diagnostics)
    errors, warnings = len(plan.errors), len(plan.warnings)
    if errors:
        err.print(f"{errors} error(s), {warnings} warning(s) in {len(sources)} file(s)")
        raise typer.Exit(1)
    out.print(f"✔ {len(plan.objects)} object(s) in {len(sources)} file(s) are valid"
              + (f", {warnings} warning(s)" if warnings else ""))


register_mesh_commands(app)
register_top_command(app)
register_dashboard_command(app)
register_rollout_commands(app)
register_ca_commands(app)
register_logs_command(app)
register_host_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``meshpilot describe pod``: the pod, and what its sidecar enforces and why.

Everything shown comes from one answer of the control plane
(``GET /api/v1/namespaces/{ns}/pods/{name}/security``), computed from the snapshot the
proxies are being sent; this module only lays it out.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from meshpilot.cli.client import ControlPlaneClient
from meshpilot.cli.common import check, out

_ACTIONS = ("CUSTOM", "DENY", "ALLOW", "AUDIT")  # Istio's evaluation order


def describe_pod(client: ControlPlaneClient, namespace: str, name: str) -> None:
    body = check(client.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/security"))
    out.print(_facts(body), markup=False)
    _peer_authentication(body["peerAuthentication"])
    _authorization(body["authorization"])
    _request_authentication(body["requestAuthentication"])


def _facts(body: dict[str, Any]) -> Table:
    pod = body["pod"]
    meta, status = pod["metadata"], pod["status"]
    identity = body["identity"]
    ports = ", ".join(f"{p['container_port']}/{p['protocol']}"
                      + (f" ({p['name']})" if p.get("name") else "")
                      for p in status.get("ports") or []) or "<none>"
    table = Table(show_header=False, box=None, pad_edge=False)
    for label, value in (
        ("Name", meta["name"]), ("Namespace", meta["namespace"]),
        ("Deployment", (meta.get("ownerReferences") or [{}])[0].get("name", "<none>")),
        ("Labels", ",".join(f"{k}={v}" for k, v in sorted(meta.get("labels", {}).items()))
         or "<none>"),
        ("IP", status.get("podIP") or "<none>"),
        ("Status", f"{status.get('phase')}, " + ("ready" if status.get("ready") else "not ready")
         + (f" ({status['message']})" if status.get("message") else "")),
        ("Ports", ports),
        ("Service Account", identity["serviceAccount"]),
        ("Identity", identity.get("spiffeId") or f"<none>: {identity.get('error')}"),
        ("Mesh Version", body["meshVersion"]),
        ("Outbound Policy", _outbound(body.get("outboundTrafficPolicy"))),
    ):
        table.add_row(f"{label}:", str(value))
    return table


def _outbound(policy: dict[str, str] | None) -> str:
    """The sidecar's mode for hosts outside the registry, and where it comes from."""
    return f"{policy['mode']} ({policy['from']})" if policy else "<unknown>"


def _policy(ref: dict[str, Any]) -> str:
    return f"{ref['namespace']}/{ref['name']}"


def _peer_authentication(peer: dict[str, Any]) -> None:
    out.print("Mutual TLS (PeerAuthentication):", markup=False)
    table = Table(box=None, pad_edge=False)
    for title in ("  PORT", "PROTOCOL", "MODE", "LEVELS (mesh > namespace > workload > port)",
                  "WHY"):
        table.add_column(title)
    rows = peer["ports"] or [{**peer["workload"], "port": "*", "protocol": "-"}]
    for port in rows:
        levels = " > ".join(f"{s['level']} {s['mode']}" for s in port["steps"]) or "-"
        table.add_row(f"  {port['port']}", port["protocol"], port["mode"], levels,
                      port["reason"])
    out.print(table, markup=False)
    for kind in ("shadowed", "ignored"):
        for item in peer[kind]:
            out.print(f"  {kind.capitalize()}: PeerAuthentication {_policy(item['policy'])}: "
                      f"{item['reason']}", markup=False)


def _authorization(auth: dict[str, Any]) -> None:
    out.print("Authorization (AuthorizationPolicy, in evaluation order):", markup=False)
    for action in _ACTIONS:
        policies = auth["policies"].get(action) or []
        out.print(f"  {action}:" + ("" if policies else " <none>"), markup=False)
        for p in policies:
            rules = f"{p['rules']} rule" + ("" if p["rules"] == 1 else "s")
            out.print(f"    {_policy(p)} ({rules}): {p['reason']}", markup=False)
            for note in p["notes"]:
                out.print(f"      - {note}", markup=False)
    for item in auth["ignored"]:
        out.print(f"  Ignored: AuthorizationPolicy {_policy(item['policy'])}: {item['reason']}",
                  markup=False)
    if auth["failClosed"]:
        why = "the sidecar fails closed"
    elif auth["allowRequired"]:
        why = "deny by default: an ALLOW policy applies"
    else:
        why = "no ALLOW policy applies"
    out.print(f"  Default: {auth['defaultAction']} ({why})", markup=False)
    for step in auth["evaluation"]:
        out.print(f"    - {step}", markup=False)


def _request_authentication(jwt: dict[str, Any]) -> None:
    policies = jwt["policies"]
    out.print("Request authentication (RequestAuthentication):"
              + ("" if policies else " <none>"), markup=False)
    for p in policies:
        issuers = ", ".join(p["issuers"]) or "<no rules>"
        out.print(f"  {_policy(p)}: issuers {issuers}; {p['reason']}", markup=False)
    for item in jwt["ignored"]:
        out.print(f"  Ignored: RequestAuthentication {_policy(item['policy'])}: "
                  f"{item['reason']}", markup=False)
    if jwt.get("effect"):
        out.print(f"  Effect: {jwt['effect']}", markup=False)

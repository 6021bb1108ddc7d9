"""Envoy judges an EnvoyFilter before it is stored, so a bad patch reaches no proxy.

An apply that holds an EnvoyFilter is checked, under the store's write lock and before
the commit, on the config of the proxies the filters select: the mesh as it is, with
the change's filters in place of the stored ones of the same name. Per proxy (at most
:data:`MAX_PROXIES`, one per kind, namespace and labels; when none runs yet, one made
up for the filter's selector) the config is built, the patches applied in order, and:

- the result must be consistent (a REMOVE of a cluster a route still names would leave
  the proxy on its last good config): MP0088, naming what is missing;
- Envoy must take it: the config as one static bootstrap (:mod:`meshpilot.xds.static_config`)
  run through ``envoy --mode validate``: MP0088 with Envoy's own reason;
- a patch that changes nothing in any running proxy it selects is said (MP2058).

Why at apply rather than by pushing to one canary proxy first and watching for a NACK:
the apply then fails as a whole and changes nothing (the project's rule for bad input),
the reason is in the answer to the person who applied it, with file and line, and no
proxy ever holds the bad config; a canary push would accept the change, then need the
store rolled back. The cost is one config build and one Envoy run in validate mode per
proxy checked, on what the patches changed (0.3 s at 100 services, 3 s at 1,000:
``benchmarks/envoy_filter_cost.py``), paid only by applies that hold an EnvoyFilter.
What the check cannot see is a later change to the mesh that makes an accepted patch
bad: such a config is refused by the proxy (NACK) and shown by ``meshpilot
proxy-status``, the proxy keeping its last good config, as for any config.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from meshpilot.api.envoy_filter import EnvoyFilter
from meshpilot.api.envoy_values import EnvoyValueError
from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.model import InboundPort, MeshSnapshot, Named, ProxyNode
from meshpilot.proxy.envoy import envoy_binary
from meshpilot.validation import Diagnostic, Plan, codes
from meshpilot.validation.document import ParsedObject
from meshpilot.validation.envoy_filter_state import GATEWAY_LABELS, ROOT_NAMESPACE
from meshpilot.xds.consistency import consistency_problems
from meshpilot.xds.resources import PreparedResource
from meshpilot.xds.static_config import clusters_named_by, routes_named_by, static_bootstrap
from meshpilot.xds.translate import build_resources
from meshpilot.xds.translate.envoy_filter import (
    PATCHED_TYPES,
    applies_to,
    apply_patch,
    selected,
)
from meshpilot.xds.translate.names import (
    TYPE_CLUSTER,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SCOPED_ROUTE,
)

if TYPE_CHECKING:
    from meshpilot.server.controlplane import MeshControlPlane

MAX_PROXIES = 4
"""Proxies one apply is checked on (each costs an Envoy run)."""
VALIDATE_TIMEOUT = 60.0
"""Seconds one Envoy run may take (a mesh of thousands of services takes a few)."""
REASON_LIMIT = 800
"""Characters of Envoy's reason kept in a diagnostic."""

Resources = dict[str, dict[str, Message]]


def envoy_validate(bootstrap: Message, timeout: float = VALIDATE_TIMEOUT) -> str | None:
    """``envoy --mode validate`` on ``bootstrap`` (written in protobuf's binary form, a
    ``.pb`` file, in a private temporary directory); None if Envoy takes it, else what
    Envoy said."""
    with tempfile.TemporaryDirectory(prefix="meshpilot-validate-") as work:
        path = Path(work) / "envoyfilter.pb"
        path.write_bytes(bootstrap.SerializeToString())
        try:
            proc = subprocess.run(
                [envoy_binary(), "--mode", "validate", "-c", str(path),
                 "--disable-hot-restart", "-l", "warning"],
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"Envoy did not answer within {timeout:.0f} s"
    return None if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()


def envoy_reason(output: str) -> str:
    """Envoy's reason from its validate output, without the config it echoes (a proto's
    debug text on the lines before a last line ``: <reason>``, or JSON after it)."""
    marker = "error initializing configuration"
    text = output.split(marker, 1)[-1]
    text = text.partition("': ")[2] or text
    lines = text.strip().splitlines() or [output.strip()]
    said = lines[0].split("goo.gle/debug", 1)[0].strip(" :")  # "reason: <the proto>"
    reasons = [ln[2:] for ln in lines if ln.startswith(": ")]  # "<the proto>\n: reason"
    reason = said if said and len(lines[0]) != len(said) else \
        reasons[-1] if reasons else lines[0]
    cut = reason.find("): {")
    if cut >= 0:
        reason = reason[:cut + 1]
    return reason[:REASON_LIMIT]


@dataclass
class _Verdict:
    """What the check found on one change."""

    found: list[Diagnostic] = field(default_factory=list)
    hits: set[tuple[ObjectKey, int]] = field(default_factory=set)  # patches that changed something
    live: bool = False  # checked on running proxies (else on made-up ones)


@dataclass
class EnvoyFilterCheck:
    """The check, given the mesh's current snapshot and its running proxies."""

    snapshot: Callable[[], MeshSnapshot]
    nodes: Callable[[], list[ProxyNode]]
    validate: Callable[[Message], str | None] = envoy_validate

    def __call__(self, plan: Plan) -> list[Diagnostic]:
        changed = [o for o in plan.objects if o.key.kind == "EnvoyFilter"]
        if not changed:
            return []
        current = self.snapshot()
        keys = {(o.key.namespace, o.key.name) for o in changed}
        new = [Named(o.key.namespace, o.key.name, o.model) for o in changed]
        kept = [f for f in current.envoy_filters if (f.namespace, f.name) not in keys]
        snapshot = replace(current, envoy_filters=(*kept, *new))  # type: ignore[arg-type]
        verdict = _Verdict()
        for node in self._targets(snapshot, new, verdict):
            self._judge(snapshot, node, changed, verdict)
        if verdict.live:
            verdict.found.extend(_unmatched(changed, verdict.hits))
        return verdict.found

    def _targets(self, snapshot: MeshSnapshot, new: list[Named[Any]], verdict: _Verdict
                 ) -> list[ProxyNode]:
        seen: dict[Any, ProxyNode] = {}
        for node in self.nodes():
            if any(applies_to(f, node) for f in new):
                seen.setdefault((node.kind, node.namespace, tuple(sorted(node.labels.items())),
                                 node.inbound), node)
        if seen:
            verdict.live = True
            return list(seen.values())[:MAX_PROXIES]
        return [made_up(snapshot, f) for f in new][:MAX_PROXIES]

    def _judge(self, snapshot: MeshSnapshot, node: ProxyNode, changed: list[ParsedObject],
               verdict: _Verdict) -> None:
        resources: Resources = build_resources(replace(snapshot, envoy_filters=()), node)
        unpatched = set(_problems(resources))  # e.g. its workload secrets, given apart
        original = _fingerprint(resources, (TYPE_CLUSTER, TYPE_LISTENER, TYPE_ROUTE))
        for named in selected(snapshot, node):
            for i, patch in enumerate(named.obj.spec.config_patches):
                key = ObjectKey("networking.istio.io", "EnvoyFilter", named.namespace,
                                named.name)
                types = PATCHED_TYPES.get(patch.apply_to or "", ())
                before = _fingerprint(resources, types)
                try:
                    apply_patch(resources, node, patch)
                except EnvoyValueError as exc:  # a stored filter an upgrade broke
                    verdict.found.extend(_blame(changed, node, f"{key}: {exc}"))
                if _fingerprint(resources, types) != before:
                    verdict.hits.add((key, i))
        missing = [p for p in _problems(resources) if p not in unpatched]
        if missing:
            verdict.found.extend(_blame(changed, node, "the patched config names what is "
                                        f"not there: {'; '.join(missing)}"))
            return
        refused = self.validate(static_bootstrap(_moved(resources, original), node.id))
        if refused is not None:
            verdict.found.extend(_blame(changed, node, "Envoy refuses the patched config: "
                                        + envoy_reason(refused)))


def _moved(resources: Resources, original: dict[str, dict[str, bytes]]) -> Resources:
    """What Envoy is to look at: the route configs and clusters the patches changed, the
    listeners they changed or that name those route configs, and the clusters these
    name (Envoy checks that they exist: those the routes send to, and any a listener's
    filters name, told by their names in its bytes, a broader set than needed). The
    rest was generated, hence valid, and a mesh's thousands of clusters and route
    configs cost Envoy seconds to read again."""
    def changed(t: str) -> set[str]:
        was = original.get(t, {})
        return {n for n, m in resources.get(t, {}).items()
                if was.get(n) != m.SerializeToString(deterministic=True)}

    routes = changed(TYPE_ROUTE)
    scopes = resources.get(TYPE_SCOPED_ROUTE, {})
    listeners = changed(TYPE_LISTENER) | {
        n for n, lsn in resources.get(TYPE_LISTENER, {}).items()
        if routes & routes_named_by(lsn, scopes)}
    kept = {TYPE_ROUTE: {n: resources[TYPE_ROUTE][n] for n in routes},
            TYPE_LISTENER: {n: resources[TYPE_LISTENER][n] for n in listeners}}
    clusters = resources.get(TYPE_CLUSTER, {})
    named = changed(TYPE_CLUSTER).union(*map(clusters_named_by, kept[TYPE_ROUTE].values()))
    data = b"".join(m.SerializeToString() for m in kept[TYPE_LISTENER].values())
    named.update(n for n in clusters if n.encode() in data)
    return {TYPE_CLUSTER: {n: c for n, c in clusters.items() if n in named},
            TYPE_SCOPED_ROUTE: scopes,
            **kept}


def _problems(resources: Resources) -> list[str]:
    return consistency_problems({t: {n: PreparedResource.of(n, m) for n, m in by_name.items()}
                                 for t, by_name in resources.items()})


def _fingerprint(resources: Resources, types: Iterable[str]) -> dict[str, dict[str, bytes]]:
    return {t: {n: m.SerializeToString(deterministic=True)
                for n, m in resources.get(t, {}).items()} for t in types}


def made_up(snapshot: MeshSnapshot, named: Named[EnvoyFilter]) -> ProxyNode:
    """A proxy the filter selects, for a check when none runs: the gateway if its
    selector names the gateway's labels, else a sidecar with its labels and an HTTP port."""
    selector = named.obj.spec.workload_selector
    labels = dict(selector.labels) if selector else {}
    if labels and all(GATEWAY_LABELS.get(k) == v for k, v in labels.items()) and \
            named.namespace == ROOT_NAMESPACE:
        ports = {s.port.number: s.port.number for g in snapshot.gateways
                 for s in g.obj.spec.servers}
        return ProxyNode(id="gateway~check", kind="gateway", namespace=ROOT_NAMESPACE,
                         ip="127.0.0.1", labels=GATEWAY_LABELS, gateway_ports=ports)
    namespace = "default" if named.namespace == ROOT_NAMESPACE else named.namespace
    return ProxyNode(id=f"sidecar~check~{named.name}.{namespace}", kind="sidecar",
                     namespace=namespace, ip="127.0.0.1", labels=labels,
                     inbound=(InboundPort(8080, 8080, "http"),))


def _where(obj: ParsedObject, path: tuple[str | int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"object": obj.label, "path": ".".join(
        f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")}
    if obj.source is not None:
        pos = obj.source.position_of(path)
        out.update(file=obj.source.file, line=pos.line, column=pos.column)
    return out


def _blame(changed: list[ParsedObject], node: ProxyNode, why: str) -> list[Diagnostic]:
    """MP0088 on each changed filter that selects ``node``."""
    return [Diagnostic.of(codes.ENVOY_FILTER_ENVOY_REFUSED,
                          f"for proxy {node.id}: {why}; nothing was applied",
                          **_where(o, ("spec", "configPatches")))
            for o in changed if applies_to(Named(o.key.namespace, o.key.name, o.model), node)]


def _unmatched(changed: list[ParsedObject], hits: set[tuple[ObjectKey, int]]
               ) -> list[Diagnostic]:
    out = []
    for obj in changed:
        spec = obj.model.spec  # type: ignore[attr-defined]
        for i, _ in enumerate(spec.config_patches):
            if (obj.key, i) not in hits:
                out.append(Diagnostic.of(
                    codes.ENVOY_FILTER_NO_MATCH,
                    "this patch changes nothing in the config of the running proxies the "
                    "filter selects: its match (context, names, ports) finds nothing there; "
                    "see docs/envoyfilter.md for how Istio's match fields read meshpilot's "
                    "names", **_where(obj, ("spec", "configPatches", i, "match"))))
    return out


def gateway_with_ports(node: ProxyNode, ports: Mapping[str, int | None]) -> ProxyNode:
    """A running gateway's node as the control plane builds its config (with the ports
    its Gateway servers listen on)."""
    if node.kind != "gateway":
        return node
    return replace(node, gateway_ports={int(k): v for k, v in ports.items() if v})


def for_mesh(mesh: MeshControlPlane) -> EnvoyFilterCheck:
    """The check on ``mesh``: its current snapshot and its connected proxies."""
    def nodes() -> list[ProxyNode]:
        ports = mesh.gateway_ports()
        return [gateway_with_ports(s.node, ports) for s in mesh.xds.status() if s.connected]

    return EnvoyFilterCheck(lambda: mesh.snapshot, nodes)

"""Push size: what one sidecar is sent when ONE VirtualService's weights change.

A mesh of S services (default 1,000), each with subsets v1/v2 (a DestinationRule) and a
weighted VirtualService. One sidecar is brought in sync through meshpilot's real ADS
stream state machine (``ProxyStream`` on its event loop, through ``DrivenStream``: the
cache diff, make-before-break phases, Delta and SotW), driven by a simulated proxy that
ACKs every response and subscribes to what it learns the way Envoy does (EDS names from
clusters, SRDS when a listener uses scoped routes, RDS names from listeners and scopes,
ECDS names from listeners' discovered filters).
Then one VirtualService's weights change,
and the responses of that update are counted: bytes on the wire (serialized discovery
responses) and resources per type.

Side by side, in the same process, on the same mesh and change:

- ``single route config``: the outbound listener fetches ONE RouteConfiguration holding
  a virtual host per (service, port) of the whole mesh (meshpilot's previous layout,
  rebuilt here from the scoped build by merging every service's virtual hosts);
- ``scoped (SRDS)``: today's build: routing scopes keyed by request host, one
  RouteConfiguration per service.

With ``--tcp K``, the mesh also has K TCP services (port 9000, weighted VirtualService
``tcp`` routes) that the sidecar lists in its node, as a pod of their namespace does (an
``outbound_tcp`` listener each), and the same number of changes re-weight one of their
``tcp`` routes: what a TCP weight change sends.

Run:  .venv/bin/python benchmarks/push_size.py [--services 1000] [--changes 3] [--tcp 10]
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from driven import DrivenStream
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2

from meshpilot.api.networking import DestinationRule, VirtualService
from meshpilot.mesh.model import (
    Endpoint,
    MeshService,
    MeshSnapshot,
    Named,
    ProxyNode,
    ServicePort,
    TcpOutbound,
)
from meshpilot.xds.references import ecds_names, eds_name, rds_names
from meshpilot.xds.sequence import ORDER
from meshpilot.xds.translate import build_resources, names, pb
from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    Resources,
    short_name,
)

NODE = ProxyNode(id="sidecar~127.20.0.1~client.default", kind="sidecar", namespace="default",
                 ip="127.20.0.1", labels={"app": "client"},
                 # as the runtime starts sidecars by default (access logs on): in its listener
                 access_log="/run/meshpilot/sidecars/client.access.log")


# --- the mesh ------------------------------------------------------------------------------


TCP_PORT = 9000


def tcp_host(j: int) -> str:
    return f"tcp-{j:04d}.default.svc.cluster.local"


def tcp_node(tcp: int) -> ProxyNode:
    """NODE listing ``tcp`` TCP services, as the runtime lists its namespace's for a pod."""
    return replace(NODE, tcp_outbound=tuple(TcpOutbound(tcp_host(j), TCP_PORT, 15100 + j)
                                            for j in range(tcp)))


def _tcp_services(tcp: int, weights: dict[int, tuple[int, int]], svcs: dict[str, Any],
                  eps: dict[str, Any], rules: list[Any], routes: list[Any]) -> None:
    for j in range(tcp):
        name, host = f"tcp-{j:04d}", tcp_host(j)
        svcs[host] = MeshService(host, name, "default", (ServicePort(TCP_PORT, "tcp", "TCP"),))
        eps[host] = tuple(
            Endpoint(host, TCP_PORT, f"127.22.{j // 200}.{j % 200 + v}", TCP_PORT,
                     {"version": f"v{v}"}, f"{name}-v{v}")
            for v in (1, 2))
        rules.append(Named("default", name, DestinationRule.model_validate({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name},
            "spec": {"host": name, "subsets": [{"name": f"v{v}", "labels": {"version": f"v{v}"}}
                                               for v in (1, 2)]}})))
        v1, v2 = weights.get(j, (90, 10))
        routes.append(Named("default", name, VirtualService.model_validate({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name},
            "spec": {"hosts": [name], "tcp": [{"route": [
                {"destination": {"host": name, "subset": "v1"}, "weight": v1},
                {"destination": {"host": name, "subset": "v2"}, "weight": v2}]}]}})))


def make_snapshot(services: int, weights: dict[int, tuple[int, int]], tcp: int = 0,
                  tcp_weights: dict[int, tuple[int, int]] | None = None) -> MeshSnapshot:
    svcs, eps, rules, routes = {}, {}, [], []
    for i in range(services):
        name = f"svc-{i:04d}"
        host = f"{name}.default.svc.cluster.local"
        svcs[host] = MeshService(host, name, "default", (ServicePort(8080, "http"),),
                                 short_names=(name, f"{name}.default", f"{name}.default.svc"))
        eps[host] = tuple(
            Endpoint(host, 8080, f"127.21.{i // 200}.{i % 200 + v}", 8080, {"version": f"v{v}"},
                     f"{name}-v{v}")
            for v in (1, 2))
        rule = DestinationRule.model_validate({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name},
            "spec": {"host": name, "subsets": [{"name": f"v{v}", "labels": {"version": f"v{v}"}}
                                               for v in (1, 2)]}})
        v1, v2 = weights.get(i, (90, 10))
        vs = VirtualService.model_validate({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name},
            "spec": {"hosts": [name], "http": [{"route": [
                {"destination": {"host": name, "subset": "v1"}, "weight": v1},
                {"destination": {"host": name, "subset": "v2"}, "weight": v2}]}]}})
        rules.append(Named("default", name, rule))
        routes.append(Named("default", name, vs))
    _tcp_services(tcp, tcp_weights or {}, svcs, eps, rules, routes)
    return MeshSnapshot(version=1, services=svcs, endpoints=eps,
                        virtual_services=tuple(routes), destination_rules=tuple(rules))


def single_route_config(res: Resources) -> Resources:
    """The previous layout: every outbound vhost in ONE route config fetched over RDS."""
    out = {t: dict(v) for t, v in res.items() if t != SCOPED_ROUTE}
    outbound = {n: c for n, c in res[ROUTE].items() if n.startswith("outbound|")}
    merged = route_pb2.RouteConfiguration(name=names.OUTBOUND_ROUTE)
    for config in outbound.values():  # host order, as the single table was built
        merged.virtual_hosts.extend(config.virtual_hosts)
    first = next(iter(outbound.values()))
    merged.request_headers_to_add.extend(first.request_headers_to_add)  # telemetry header
    out[ROUTE] = {n: c for n, c in res[ROUTE].items() if n not in outbound}
    out[ROUTE][merged.name] = merged
    listener = listener_pb2.Listener()
    listener.CopyFrom(res[LISTENER][names.OUTBOUND_LISTENER])
    f = listener.filter_chains[0].filters[0]
    manager = hcm_pb2.HttpConnectionManager()
    f.typed_config.Unpack(manager)
    manager.ClearField("scoped_routes")
    manager.rds.config_source.CopyFrom(pb.ads_source())
    manager.rds.route_config_name = names.OUTBOUND_ROUTE
    f.typed_config.CopyFrom(pb.pack(manager))
    out[LISTENER][listener.name] = listener
    return out


# --- a simulated proxy on meshpilot's real stream state machine ------------------------------


class SimProxy:
    """ACKs every response and subscribes as Envoy does; records what it receives."""

    def __init__(self, api: str, resources_for: Callable[[ProxyNode], Resources]) -> None:
        self.api = api
        self.stream = DrivenStream(node=NODE, api=api,  # type: ignore[arg-type]
                                   resources_for=resources_for, phase_timeout=30.0,
                                   stream_id="bench")
        self.inbox = self.stream.responses
        self.received: list[tuple[str, int, int]] = []  # (type, bytes, resources)
        self.names: dict[str, set[str]] = {ENDPOINT: set(), ROUTE: set(),
                                           EXTENSION_CONFIG: set()}
        self.nonce: dict[str, str] = {}
        self.scoped = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self, version: int) -> None:
        self._thread.start()
        self.stream.start(version)
        self._initial(CLUSTER, node=True)
        self._initial(LISTENER)

    def close(self) -> None:
        self._stop.set()
        self.stream.close()

    def _req(self, type_url: str, **kw: Any) -> None:
        cls = (discovery_pb2.DiscoveryRequest if self.api == "sotw"
               else discovery_pb2.DeltaDiscoveryRequest)
        self.stream.handle(cls(type_url=type_url, **kw))

    def _initial(self, type_url: str, *, node: bool = False) -> None:
        kw: dict[str, Any] = {}
        if node:
            kw["node"] = base_pb2.Node(id=NODE.id)
        self._req(type_url, **kw)

    def _subscribe(self, type_url: str, names: set[str]) -> None:
        new, old = names, self.names[type_url]
        if new == old:
            return
        self.names[type_url] = set(new)
        if self.api == "sotw":
            self._req(type_url, resource_names=sorted(new), response_nonce=self.nonce.get(
                type_url, ""), version_info="")
        else:
            self._req(type_url, resource_names_subscribe=sorted(new - old),
                      resource_names_unsubscribe=sorted(old - new))

    def _loop(self) -> None:
        try:
            self._handle_responses()
        except BaseException as exc:
            self.error = exc
            raise

    def _handle_responses(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            t = msg.type_url
            self.received.append((t, msg.ByteSize(), len(msg.resources)))
            self.nonce[t] = msg.nonce
            # ACK first (as Envoy does after applying), then the subscriptions it implies.
            if self.api == "sotw":
                names = sorted(self.names.get(t, ()))
                self._req(t, version_info=msg.version_info, response_nonce=msg.nonce,
                          resource_names=names)
                payloads = list(msg.resources)
            else:
                self._req(t, response_nonce=msg.nonce)
                payloads = [r.resource for r in msg.resources]
            if t == CLUSTER:
                got = {n for a in payloads
                       if (n := eds_name(cluster_pb2.Cluster.FromString(a.value)))}
                if self.api == "sotw":
                    self._subscribe(ENDPOINT, got)
                else:
                    self._subscribe(ENDPOINT, self.names[ENDPOINT] | got)
            elif t == LISTENER:
                rds: set[str] = set()
                ecds: set[str] = set()
                for a in payloads:
                    lis = listener_pb2.Listener.FromString(a.value)
                    rds |= rds_names(lis)
                    ecds |= ecds_names(lis)
                    if not self.scoped and _uses_scoped_rds(lis):
                        self.scoped = True
                        self._initial(SCOPED_ROUTE)
                if rds:
                    self._subscribe(ROUTE, self.names[ROUTE] | rds)
                if ecds:  # filters whose config comes over ECDS, by name
                    self._subscribe(EXTENSION_CONFIG, self.names[EXTENSION_CONFIG] | ecds)
            elif t == SCOPED_ROUTE:
                route_names = {scoped_route_pb2.ScopedRouteConfiguration.FromString(
                    a.value).route_configuration_name for a in payloads}
                if self.api == "sotw":
                    self._subscribe(ROUTE, route_names)
                else:
                    self._subscribe(ROUTE, self.names[ROUTE] | route_names)


def _uses_scoped_rds(listener: listener_pb2.Listener) -> bool:
    for chain in listener.filter_chains:
        for f in chain.filters:
            if f.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                m = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(m)
                if m.HasField("scoped_routes"):
                    return True
    return False


def wait(proxy: SimProxy, pred: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proxy.error is not None:
            raise RuntimeError("the simulated proxy failed") from proxy.error
        if time.monotonic() > deadline:
            raise TimeoutError("the simulated proxy did not converge")
        time.sleep(0.01)


# --- the measurement ---------------------------------------------------------------------


def measure(api: str, layout: str, snapshots: list[Resources]) -> dict[str, Any]:
    """Sync to snapshots[0], then apply each next one; per change: bytes and resources."""
    state = {"res": snapshots[0]}
    proxy = SimProxy(api, lambda node: state["res"])
    try:
        proxy.start(1)
        wait(proxy, lambda: proxy.stream.acked(1))
        initial = sum(b for _, b, _ in proxy.received)
        changes = []
        for version, res in enumerate(snapshots[1:], start=2):
            mark = len(proxy.received)
            state["res"] = res
            proxy.stream.trigger(version)
            wait(proxy, lambda v=version: proxy.stream.acked(v))
            time.sleep(0.05)  # let a last response (if any) land
            got = proxy.received[mark:]
            by_type: Counter[str] = Counter()
            for t, _, n in got:
                by_type[t] += n
            changes.append({"bytes": sum(b for _, b, _ in got), "responses": len(got),
                            "resources": dict(by_type)})
        return {"api": api, "layout": layout, "initial": initial, "changes": changes}
    finally:
        proxy.close()


def fmt_types(resources: dict[str, int]) -> str:
    return " ".join(f"{short_name(t)}:{resources[t]}"
                    for t in sorted(resources, key=lambda t: (t not in ORDER, t))
                    if resources[t]) or "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=3, help="weight changes to time (each on "
                    "a different VirtualService)")
    ap.add_argument("--tcp", type=int, default=0, help="TCP services the sidecar lists, "
                    "and as many TCP weight changes measured besides")
    args = ap.parse_args()

    t0 = time.perf_counter()
    s = args.services
    plans: list[dict[int, tuple[int, int]]] = [{}]
    for k in range(1, args.changes + 1):  # each change: one more VirtualService re-weighted
        plans.append({**plans[-1], (k * 37) % s: (50 + k, 50 - k)})
    node = tcp_node(args.tcp)
    scoped = [build_resources(make_snapshot(s, w, args.tcp), node) for w in plans]
    single = [single_route_config(r) for r in scoped]
    built = time.perf_counter() - t0

    results = {}
    for api in ("delta", "sotw"):
        for layout, snaps in (("single", single), ("scoped", scoped)):
            results[api, layout] = measure(api, layout, snaps)

    print(f"Push size for a one-VirtualService weight change: {s} services, one sidecar, "
          f"{args.changes} changes (mesh built in {built:.1f}s)\n")
    head = f"{'':8}{'':24}{'single route config':>26}{'scoped (SRDS)':>26}{'ratio':>9}"
    print(head)
    print("-" * len(head))
    for api in ("delta", "sotw"):
        one, sc = results[api, "single"], results[api, "scoped"]
        print(f"{api:8}{'initial sync, bytes':24}{one['initial']:>26,}{sc['initial']:>26,}"
              f"{one['initial'] / sc['initial']:>8.1f}x")
        for k, (a, b) in enumerate(zip(one["changes"], sc["changes"], strict=True), 1):
            print(f"{'':8}{f'change {k}, bytes':24}{a['bytes']:>26,}{b['bytes']:>26,}"
                  f"{a['bytes'] / max(b['bytes'], 1):>8.0f}x")
            print(f"{'':8}{f'change {k}, resources':24}{fmt_types(a['resources']):>26}"
                  f"{fmt_types(b['resources']):>26}")
        print()
    print("bytes: serialized Delta/SotW discovery responses the sidecar received for the "
          "update; resources per type; ratio: single / scoped.")
    if args.tcp:
        tcp_changes(s, args.tcp, args.changes, plans[-1], node)


def tcp_changes(services: int, tcp: int, changes: int, http: dict[int, tuple[int, int]],
                node: ProxyNode) -> None:
    """Re-weight one TCP service's ``tcp`` route per change (scoped layout)."""
    plans: list[dict[int, tuple[int, int]]] = [{}]
    for k in range(1, changes + 1):
        plans.append({**plans[-1], (k * 7) % tcp: (50 + k, 50 - k)})
    snaps = [build_resources(make_snapshot(services, http, tcp, w), node) for w in plans]
    print(f"\nA one-VirtualService tcp route weight change ({tcp} TCP services listed):")
    for api in ("delta", "sotw"):
        got = measure(api, "scoped", snaps)
        for k, change in enumerate(got["changes"], 1):
            print(f"{api:8}{f'tcp change {k}, bytes':24}{change['bytes']:>12,}  "
                  f"{fmt_types(change['resources'])}")


if __name__ == "__main__":
    main()

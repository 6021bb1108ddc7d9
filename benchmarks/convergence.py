"""Config convergence: from a weight change to every proxy having ACKed it.

Part (a), real Envoys: N Envoy processes (default 20) connect to one in-process
``XdsServer`` serving ``ProxyConfigBuilder().config_for(snapshot, node)`` (what the control plane
serves) for a mesh of M services (default 50). K times (default 20): change the weights of
one VirtualService in the stored mesh, rebuild the snapshot, publish it to the server, and
time until ``wait_acked`` says every proxy ACKed. Run once with Delta ADS (meshpilot's
default) and once with State-of-the-World ADS.

Part (b), simulated proxies at the targets' scale: the ``XdsServer`` runs in its own
process (so its peak RSS is its own: VmHWM from /proc) and C simulated clients (default
1,000; gRPC Delta ADS streams in a few client processes, each ACKing what it receives and
subscribing to the EDS and RDS names it learns, as Envoy does) connect to it over a mesh
of S services (default 1,000). K weight changes are timed as in (a), and each client
counts the responses, resources and bytes it received for the change. Baseline in the
same run: the same change delivered as a full-state resend (every client re-fetches its
whole config over SotW, which is what a control plane without per-resource diffs sends on
any change); and the bare gRPC floor (``grpc_floor.py``: the same number of streams, one
small message each, no meshpilot code), so a run on a slower or busier host reads as a
ratio to what the transport alone takes there.

The mesh is held as the control plane holds it (:class:`StoredMesh`): stored objects in
an in-memory mirror where a change replaces one body, and the pods' workload instances.

Run:  .venv/bin/python benchmarks/convergence.py [--envoys 20 --services 50 --updates 20]
          [--sim-clients 1000 --sim-services 1000 --sim-updates 20]  [--skip-envoy|--skip-sim]
          [--skip-floor]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import grpc_floor  # this directory's: the transport's floor, the baseline of part (b)
from harness import issue_credentials, keep_or_remove, process_cpu_seconds

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.builder import SnapshotBuilder, build_snapshot
from meshpilot.mesh.model import InboundPort, MeshSnapshot, ProxyNode, WorkloadInstance
from meshpilot.xds import ProxyConfigBuilder, XdsSnapshot
from meshpilot.xds.resources import prepare
from meshpilot.xds.translate import build_resources
from meshpilot.xds.types import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, SECRET

TARGET_P99_MS = 250.0
FLOOR_ROUNDS = 10
TARGET_RSS_MB = 500.0
ISTIOD_NOTE = ("Istio's published istiod sizing: 1 vCPU and 1.5 GB of memory for 1,000 "
               "services and 2,000 sidecars")
SCOPED_ROUTE = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"
SHORT = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", SCOPED_ROUTE: "SRDS", ROUTE: "RDS",
         SECRET: "SDS", EXTENSION_CONFIG: "ECDS"}
FOLLOWED = frozenset({CLUSTER, LISTENER, SCOPED_ROUTE})
"""Response types an Envoy follows up with subscriptions (EDS, RDS, SRDS names)."""


# --- the mesh ------------------------------------------------------------------------------


def namespace_of(i: int, namespaces: int) -> str:
    """Service ``i``'s namespace when the mesh spreads over ``namespaces`` of them: the
    first is ``default`` (the clients', and svc0000's, whose weights change)."""
    k = i % max(1, namespaces)
    return "default" if k == 0 else f"ns{k:02d}"


def sidecar_object(hosts: list[str]) -> tuple[ObjectKey, dict[str, Any]]:
    """A Sidecar for namespace default (the clients') with these egress hosts."""
    net = "networking.istio.io"
    return (ObjectKey(net, "Sidecar", "default", "default"), {
        "apiVersion": f"{net}/v1", "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "default", "resourceVersion": "1"},
        "spec": {"egress": [{"hosts": hosts}]}})


def mesh_workloads(services: int, namespaces: int = 1) -> list[WorkloadInstance]:
    """The pods of :func:`mesh_objects`' services: v1 and v2 of each."""
    workloads: list[WorkloadInstance] = []
    for i in range(services):
        n = f"svc{i:04d}"
        for j, v in enumerate(("v1", "v2")):
            k = 2 * i + j
            workloads.append(WorkloadInstance(
                name=f"{n}-{v}", namespace=namespace_of(i, namespaces),
                ip=f"127.{100 + k // 62500}.{(k // 250) % 250}.{k % 250 + 1}",
                labels={"app": n, "version": v}, ports=(InboundPort(8080, 18080, "http"),)))
    return workloads


def mesh_objects(services: int, weight: int, namespaces: int = 1
                 ) -> tuple[list[tuple[ObjectKey, dict[str, Any]]], list[WorkloadInstance]]:
    """S services, each with pods v1 and v2, a DestinationRule (two subsets) and a
    VirtualService splitting traffic; ``svc0000``'s split is ``100-weight``/``weight``;
    spread round robin over ``namespaces`` (:func:`namespace_of`)."""
    objects: list[tuple[ObjectKey, dict[str, Any]]] = []
    net = "networking.istio.io"
    for i in range(services):
        n = f"svc{i:04d}"
        ns = namespace_of(i, namespaces)
        # As in the store: every object has a resourceVersion, which changes when it does.
        meta = {"name": n, "namespace": ns, "resourceVersion": "1"}
        w2 = weight if i == 0 else 10
        objects.append((ObjectKey("", "Service", ns, n), {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": n},
                     "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}))
        objects.append((ObjectKey(net, "DestinationRule", ns, n), {
            "apiVersion": f"{net}/v1", "kind": "DestinationRule", "metadata": meta,
            "spec": {"host": n, "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                            {"name": "v2", "labels": {"version": "v2"}}]}}))
        objects.append((ObjectKey(net, "VirtualService", ns, n), {
            "apiVersion": f"{net}/v1", "kind": "VirtualService",
            "metadata": {**meta, "resourceVersion": str(1000 + w2)},
            "spec": {"hosts": [n], "http": [{"route": [
                {"destination": {"host": n, "subset": "v1"}, "weight": 100 - w2},
                {"destination": {"host": n, "subset": "v2"}, "weight": w2}]}]}}))
    return objects, mesh_workloads(services, namespaces)


def make_snapshot(version: int, services: int, weight: int) -> MeshSnapshot:
    objects, workloads = mesh_objects(services, weight)
    return build_snapshot(version, objects, workloads)


class StoredMesh:
    """The mesh as the control plane holds it: its stored objects (in its in-memory
    mirror of the store, where a change replaces one object's body) and its pods' workload
    instances (kept while a pod does not change, as the control plane does)."""

    def __init__(self, services: int, clients: list[ProxyNode] | None = None,
                 namespaces: int = 1, sidecar_hosts: list[str] | None = None) -> None:
        self.services = services
        self.objects, self.workloads = mesh_objects(services, 10, namespaces)
        if sidecar_hosts:
            self.objects.append(sidecar_object(sidecar_hosts))
        # the proxies' own pods are workloads of the mesh too, as every sidecar's is
        self.workloads += [client_pod(n) for n in clients or ()]
        self.vs_at = next(i for i, (k, _) in enumerate(self.objects)
                          if k.kind == "VirtualService" and k.name == "svc0000")
        self.builder = SnapshotBuilder()  # the control plane's: unchanged objects kept

    def set_weight(self, weight: int) -> None:
        """What applying a new svc0000 VirtualService does to the mirror."""
        key, _ = self.objects[self.vs_at]
        fresh, _ = mesh_objects(1, weight)
        self.objects[self.vs_at] = (key, next(b for k, b in fresh if k == key))

    def snapshot(self, version: int) -> MeshSnapshot:
        return self.builder.build(version, self.objects, self.workloads)


def client_pod(node: ProxyNode) -> WorkloadInstance:
    """The pod of a benchmark's proxy (no Service selects it)."""
    return WorkloadInstance(name=node.workload, namespace=node.namespace, ip=node.ip,
                            labels=dict(node.labels), ports=node.inbound)


def admit_all(node: ProxyNode, metadata: Any) -> None:
    """The benchmark's proxies are its own: every stream is admitted (a token check is
    one HMAC per stream, not per change)."""
    return None


def publish(xds: Any, builder: ProxyConfigBuilder, snap: MeshSnapshot,
            credentials: Any) -> None:
    """What the control plane does with a new mesh snapshot: every proxy's config, its own
    credential among it."""
    xds.publish(XdsSnapshot(snap.version, lambda node: builder.config_for(
        snap, node, credentials.get(node.id))))


def weight_for(k: int) -> int:
    """The v2 weight of the k-th change: 11, 12, ..., never 10 (the initial split)."""
    return 11 + k % 80


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def vm_status(pid: int | str = "self") -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS in MB from /proc."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024.0
    return out


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- part (a): real Envoys -----------------------------------------------------------------


def run_envoys(args: argparse.Namespace, tmp: Path, api: str) -> dict[str, Any]:
    from meshpilot.proxy.bootstrap import bootstrap, node_id
    from meshpilot.proxy.envoy import EnvoyProcess
    from meshpilot.proxy.ports import free_port
    from meshpilot.xds import XdsServer

    nodes = [ProxyNode(
        id=node_id("sidecar", "127.0.0.1", f"bench-{api}-{i}", "default"),
        kind="sidecar", namespace="default", ip="127.0.0.1", workload=f"bench-{i}",
        labels={"app": f"bench-{i}", "version": "v1"},
        inbound=(InboundPort(free_port(), free_port(), "http"),),
        outbound_port=free_port()) for i in range(args.envoys)]
    mesh = StoredMesh(args.services, nodes)
    holder = {"snap": mesh.snapshot(1)}
    builder = ProxyConfigBuilder()  # what the control plane serves with
    xds = XdsServer(host="127.0.0.1", authenticate=admit_all)
    port = xds.start()
    credentials = issue_credentials(nodes)
    publish(xds, builder, holder["snap"], credentials)
    envoys: list[EnvoyProcess] = []
    try:
        for i, node in enumerate(nodes):
            doc = bootstrap(node, xds_host="127.0.0.1", xds_port=port,
                            api_type="DELTA_GRPC" if api == "delta" else "GRPC")
            proc = EnvoyProcess(doc, name=f"{api}-{i}", work_dir=tmp / f"envoys-{api}")
            proc.start()
            envoys.append(proc)
        ids = [n.id for n in nodes]
        t = time.perf_counter()
        if not xds.wait_acked(1, ids, timeout=120):
            raise RuntimeError(f"{api}: Envoys did not all ACK the initial config in 120 s")
        initial = time.perf_counter() - t
        if not all(p.wait_live(30) for p in envoys):
            raise RuntimeError(f"{api}: not every Envoy is LIVE")
        totals, builds, sent_res, sent_bytes, sent_types = [], [], [], [], []
        for k in range(args.updates):
            version = k + 2
            t0 = time.perf_counter()
            mono0 = time.monotonic()
            mesh.set_weight(weight_for(k))
            holder["snap"] = mesh.snapshot(version)
            t1 = time.perf_counter()
            publish(xds, builder, holder["snap"], credentials)
            if not xds.wait_acked(version, ids, timeout=60):
                raise RuntimeError(f"{api}: update {version} not ACKed by every Envoy in 60 s")
            totals.append(time.perf_counter() - t0)
            builds.append(t1 - t0)
            # What was sent for this change, per proxy (from the server's sent log).
            sizes = {(t, n): e.packed.ByteSize() for t, v in prepare(
                build_resources(holder["snap"], nodes[0])).items() for n, e in v.items()}
            for node in nodes:
                recs = [r for r in xds.sent_log(node.id) if r.sent_at >= mono0]
                sent_res.append(sum(len(r.resources) for r in recs))
                sent_bytes.append(sum(sizes.get((r.type_url, n), 0)
                                      for r in recs for n in r.resources))
                sent_types.append(",".join(sorted({SHORT.get(r.type_url, "?") for r in recs
                                                   if r.resources})))
        return {
            "api": api, "initial": initial, "totals": totals, "builds": builds,
            "resources": statistics.fmean(sent_res), "bytes": statistics.fmean(sent_bytes),
            "types": sorted(set(sent_types)),
            "full_bytes": sum(sizes.values()), "full_resources": len(sizes),
        }
    finally:
        for p in envoys:
            p.stop(grace=2.0)
        xds.stop()


# --- part (b): the server process --------------------------------------------------------


def sim_node(i: int) -> ProxyNode:
    return ProxyNode(
        id=f"sidecar~127.0.0.1~sim-{i:05d}.default~default.svc.cluster.local",
        kind="sidecar", namespace="default", ip="127.0.0.1", workload=f"sim-{i:05d}",
        labels={"app": "sim", "version": "v1"},
        inbound=(InboundPort(9080, 19080, "http"),), outbound_port=15001)


def serve_role(args: argparse.Namespace) -> int:
    """``--role server``: an XdsServer driven by JSON lines on stdin."""
    from meshpilot.gc_policy import QuietCollector
    from meshpilot.xds import XdsServer

    mesh = StoredMesh(args.sim_services, [sim_node(i) for i in range(args.sim_clients)],
                      args.namespaces, args.sidecar_hosts.split(",") if args.sidecar_hosts
                      else None)
    holder = {"snap": mesh.snapshot(1), "version": 1}
    builder = ProxyConfigBuilder()  # what the control plane serves with (default pool size)
    xds = XdsServer(host="127.0.0.1", authenticate=admit_all)
    port = xds.start()
    QuietCollector(xds.idle_seconds).start()  # the control plane's collection policy
    credentials = issue_credentials(sim_node(i) for i in range(args.sim_clients))
    publish(xds, builder, holder["snap"], credentials)
    # the clients this server waits for: all, or (``--count``, replicas.py) its share
    served = range(args.first, args.first + args.count) if args.count else \
        range(args.sim_clients)
    ids = [sim_node(i).id for i in served]
    marks: dict[str, float] = {}
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["cmd"]
        reply: dict[str, Any] = {}
        if op == "quit":
            break
        if op == "mark":
            marks["t0"], marks["cpu0"] = time.perf_counter(), cpu_seconds()
        elif op == "wait":
            ok = xds.wait_acked(holder["version"], ids, timeout=cmd["timeout"])
            reply = {"ok": ok, "elapsed": time.perf_counter() - marks["t0"],
                     "cpu": cpu_seconds() - marks["cpu0"]}
        elif op in ("update", "set"):
            holder["version"] += 1
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            mesh.set_weight(cmd["weight"])
            holder["snap"] = mesh.snapshot(holder["version"])
            t1 = time.perf_counter()
            publish(xds, builder, holder["snap"], credentials)
            reply = {"version": holder["version"], "build": t1 - t0}
            if op == "update":
                ok = xds.wait_acked(holder["version"], ids, timeout=cmd["timeout"])
                reply.update(ok=ok, total=time.perf_counter() - t0, cpu=cpu_seconds() - cpu0)
        elif op == "connected":
            reply = {"connected": sum(1 for s in xds.status() if s.connected)}
        elif op == "diag":
            subscribed: dict[str, int] = {}
            sent: dict[str, int] = {}
            for node_id in ids:
                for t in xds.subscriptions(node_id):
                    subscribed[SHORT.get(t, t)] = subscribed.get(SHORT.get(t, t), 0) + 1
                for t in {r.type_url for r in xds.sent_log(node_id) if r.resources}:
                    sent[SHORT.get(t, t)] = sent.get(SHORT.get(t, t), 0) + 1
            reply = {"subscribed": subscribed, "sent": sent}
        elif op == "mem":
            reply = vm_status()
        print(json.dumps(reply), flush=True)
    xds.stop(grace=0.5)
    return 0


# --- part (b): simulated clients -----------------------------------------------------------


def clients_role(args: argparse.Namespace) -> int:
    """``--role clients``: simulated proxies (asyncio gRPC), driven by JSON lines on stdin.

    The garbage collector is off in these short-lived load processes (their garbage is
    acyclic and freed by reference counting), so its pauses do not delay ACKs. They run on
    uvloop as the server does: the less CPU the simulated proxies take on this shared
    machine, the more the figures are the server's.
    """
    gc.disable()
    from meshpilot.xds.loop import new_event_loop

    loop = new_event_loop()  # the server's loop (uvloop): cheaper clients, less noise
    try:
        return loop.run_until_complete(_clients_main(args))
    finally:
        loop.close()


async def _clients_main(args: argparse.Namespace) -> int:
    import grpc
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.core.v3 import base_pb2
    from envoy.config.listener.v3 import listener_pb2
    from envoy.config.route.v3 import scoped_route_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )
    from envoy.service.discovery.v3 import discovery_pb2

    from meshpilot.mesh.model import node_to_metadata
    from meshpilot.xds.references import (
        cluster_secret_names,
        ecds_names,
        eds_name,
        listener_secret_names,
    )

    per_channel = 25
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{args.port}",
            options=[("grpc.use_local_subchannel_pool", 1),
                     ("grpc.max_receive_message_length", -1),
                     ("grpc.channel_id", f"{args.first}-{c}")])  # distinct connections
        for c in range(0, args.count, per_channel)]
    stats: dict[int, dict[str, Any]] = {}
    tasks: dict[int, asyncio.Task[None]] = {}

    def fresh() -> dict[str, Any]:
        return {"bytes": 0, "resources": 0, "responses": 0, "types": {}}

    def count(st: dict[str, Any], type_url: str, size: int, n: int) -> None:
        st["bytes"] += size
        st["resources"] += n
        st["responses"] += 1
        key = SHORT.get(type_url, type_url)
        st["types"][key] = st["types"].get(key, 0) + n

    delta_method = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
    sotw_method = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

    def _bytes(data: bytes) -> bytes:
        return data

    async def one(i: int, api: str) -> None:
        pn = sim_node(i)
        node = base_pb2.Node(id=pn.id, cluster="sim.default")
        node.metadata.update(node_to_metadata(pn))
        channel = channels[(i - args.first) // per_channel]
        # Raw bytes both ways and ``write`` (no request generator): the clients' own cost
        # per message is small, so the figures are the server's.
        call = channel.stream_stream(delta_method if api == "delta" else sotw_method,
                                     request_serializer=_bytes, response_deserializer=_bytes)()

        # What an Envoy asks for next: EDS for its EDS clusters, RDS for the route configs
        # its connection managers (or their SRDS scopes) name, SRDS when a connection
        # manager uses scoped routes. Subscribed names per type; None = wildcard.
        subs: dict[str, set[str] | None] = {CLUSTER: None, LISTENER: None}

        def follow_up(type_url: str, payloads: list[bytes]) -> dict[str, set[str] | None]:
            want: dict[str, set[str] | None] = {}
            if type_url == CLUSTER:
                parsed = [cluster_pb2.Cluster.FromString(b) for b in payloads]
                want[ENDPOINT] = {n for c in parsed if (n := eds_name(c))}
                want[SECRET] = {n for c in parsed for n in cluster_secret_names(c)}
            elif type_url == LISTENER:
                rds: set[str] = set()
                secrets: set[str] = set()
                for b in payloads:
                    listener = listener_pb2.Listener.FromString(b)
                    secrets |= listener_secret_names(listener)
                    if found := ecds_names(listener):
                        want[EXTENSION_CONFIG] = found
                    for chain in listener.filter_chains:
                        for flt in chain.filters:
                            if not flt.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                                continue
                            hcm = hcm_pb2.HttpConnectionManager()
                            flt.typed_config.Unpack(hcm)
                            if hcm.HasField("rds"):
                                rds.add(hcm.rds.route_config_name)
                            elif hcm.HasField("scoped_routes"):
                                want[SCOPED_ROUTE] = None
                if rds:
                    want[ROUTE] = rds
                if secrets:
                    want[SECRET] = secrets
            elif type_url == SCOPED_ROUTE:
                want[ROUTE] = {
                    n for b in payloads
                    if (n := scoped_route_pb2.ScopedRouteConfiguration.FromString(b)
                        .route_configuration_name)}
            new: dict[str, set[str] | None] = {}
            for t, names in want.items():
                if t not in subs:
                    subs[t] = None if names is None else set(names)
                    new[t] = names
                elif names is not None and subs[t] is not None:
                    extra = names - subs[t]  # type: ignore[operator]
                    if extra:
                        subs[t] |= extra  # type: ignore[operator]
                        new[t] = extra
            return new

        if api == "delta":
            req = discovery_pb2.DeltaDiscoveryRequest
            parse = discovery_pb2.DeltaDiscoveryResponse.FromString
            await call.write(req(node=node, type_url=CLUSTER).SerializeToString())
            await call.write(req(type_url=LISTENER).SerializeToString())
            async for raw in call:
                resp = parse(raw)
                count(stats[i], resp.type_url, len(raw), len(resp.resources))
                await call.write(req(type_url=resp.type_url,
                                     response_nonce=resp.nonce).SerializeToString())
                if resp.type_url in FOLLOWED:
                    more = follow_up(resp.type_url, [r.resource.value for r in resp.resources])
                    for t, names in more.items():
                        await call.write(req(type_url=t, resource_names_subscribe=sorted(
                            names or ())).SerializeToString())
                # Let go of the response now: an Envoy has applied it and holds only its
                # config. Kept until the next one, a 3 MB initial sync was freed in the
                # middle of the first measured change (~0.7 ms of CPU per client).
                del raw, resp
        else:
            sreq = discovery_pb2.DiscoveryRequest
            sparse = discovery_pb2.DiscoveryResponse.FromString
            await call.write(sreq(node=node, type_url=CLUSTER).SerializeToString())
            await call.write(sreq(type_url=LISTENER).SerializeToString())
            async for raw in call:
                sresp = sparse(raw)
                count(stats[i], sresp.type_url, len(raw), len(sresp.resources))
                await call.write(sreq(
                    type_url=sresp.type_url, version_info=sresp.version_info,
                    response_nonce=sresp.nonce,
                    resource_names=sorted(subs.get(sresp.type_url) or ())).SerializeToString())
                if sresp.type_url in FOLLOWED:
                    more = follow_up(sresp.type_url, [a.value for a in sresp.resources])
                    for t in more:
                        await call.write(sreq(type_url=t, resource_names=sorted(
                            subs.get(t) or ())).SerializeToString())
                del raw, sresp

    async def guarded(i: int, api: str) -> None:
        try:
            await one(i, api)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:  # our own disconnect cancels the task instead
            print(f"client {i}: {exc.code()} {exc.details()}", file=sys.stderr)
        except Exception:
            traceback.print_exc()

    async def disconnect() -> None:
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        tasks.clear()

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, '{"cmd": "quit"}')

    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        cmd = json.loads(await lines.get())
        op = cmd["cmd"]
        reply: dict[str, Any] = {}
        if op == "quit":
            break
        if op == "connect":
            await disconnect()
            for i in range(args.first, args.first + args.count):
                stats[i] = fresh()
                tasks[i] = asyncio.create_task(guarded(i, cmd["api"]))
        elif op == "disconnect":
            await disconnect()
        elif op == "mark":
            for i in stats:
                stats[i] = fresh()
            gc.collect()  # between changes, outside the timing (the collector is off)
        elif op == "stats":
            reply = {"clients": list(stats.values())}
        print(json.dumps(reply), flush=True)
    await disconnect()
    for ch in channels:
        await ch.close()
    return 0


# --- part (b): the driver ----------------------------------------------------------------------


class Child:
    """A ``--role`` subprocess spoken to in JSON lines."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self._log = open(log, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, bufsize=1)
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer from {self.proc.args[-4:]} in {timeout}s") from None
        if line is None:
            raise RuntimeError(f"child exited ({self.proc.poll()}); see {self._log.name}")
        return json.loads(line)

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def call(self, cmd: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        self.send(cmd)
        return self.read(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def run_sim(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    me = [sys.executable, os.path.abspath(__file__)]
    common = ["--sim-clients", str(args.sim_clients), "--sim-services", str(args.sim_services),
              "--namespaces", str(args.namespaces), "--sidecar-hosts", args.sidecar_hosts]
    server = Child([*me, "--role", "server", *common], tmp / "server.log")
    clients: list[Child] = []
    deadline = time.monotonic() + args.sim_budget
    out: dict[str, Any] = {"updates": [], "complete": False}

    def left() -> float:
        return max(5.0, deadline - time.monotonic())

    def all_clients(cmd: dict[str, Any], timeout: float = 60.0) -> list[dict[str, Any]]:
        for c in clients:
            c.send(cmd)
        return [c.read(timeout) for c in clients]

    def per_client_stats() -> list[dict[str, Any]]:
        return [s for r in all_clients({"cmd": "stats"}) for s in r["clients"]]

    try:
        hello = server.read(120)
        port = hello["port"]
        procs = max(1, args.sim_procs)
        chunk = -(-args.sim_clients // procs)
        for p in range(procs):
            first, count = p * chunk, min(chunk, args.sim_clients - p * chunk)
            if count > 0:
                clients.append(Child([*me, "--role", "clients", "--port", str(port),
                                      "--first", str(first), "--count", str(count), *common],
                                     tmp / f"clients-{p}.log"))
        out["mem_start"] = server.call({"cmd": "mem"})
        # Initial sync: every client connects (Delta) and gets its whole config.
        server.call({"cmd": "mark"})
        all_clients({"cmd": "connect", "api": "delta"})
        r = server.call({"cmd": "wait", "timeout": left()}, timeout=left() + 30)
        out["initial"] = r
        out["mem_initial"] = server.call({"cmd": "mem"})
        if not r["ok"]:
            got: dict[str, int] = {}
            for s in per_client_stats():
                for t in s["types"]:
                    got[t] = got.get(t, 0) + 1
            out["note"] = ("initial sync did not complete within the budget; clients that "
                           "received each type: " + json.dumps(got) + "; server: "
                           + json.dumps(server.call({"cmd": "diag"})))
            return out
        initial = per_client_stats()
        out["initial_bytes"] = statistics.fmean(s["bytes"] for s in initial)
        out["initial_resources"] = statistics.fmean(s["resources"] for s in initial)
        # K weight changes, Delta.
        for k in range(args.sim_updates):
            all_clients({"cmd": "mark"})
            before = sum(process_cpu_seconds(c.proc.pid) for c in clients)
            r = server.call({"cmd": "update", "weight": weight_for(k), "timeout": left()},
                            timeout=left() + 30)
            r["clients_cpu"] = sum(process_cpu_seconds(c.proc.pid) for c in clients) - before
            time.sleep(0.2)  # late bytes (none expected) would still be counted
            st = per_client_stats()
            r["bytes"] = statistics.fmean(s["bytes"] for s in st)
            r["resources"] = statistics.fmean(s["resources"] for s in st)
            r["responses"] = statistics.fmean(s["responses"] for s in st)
            types: dict[str, float] = {}
            for s in st:
                for t, n in s["types"].items():
                    types[t] = types.get(t, 0) + n / len(st)
            r["types"] = types
            out["updates"].append(r)
            if not r["ok"]:
                out["note"] = f"update {k + 1} did not converge within the budget"
                return out
        # Baseline: the same kind of change as a full-state (SotW) resend to everyone.
        all_clients({"cmd": "disconnect"})
        server.call({"cmd": "set", "weight": weight_for(args.sim_updates)})
        all_clients({"cmd": "mark"})
        server.call({"cmd": "mark"})
        all_clients({"cmd": "connect", "api": "sotw"})
        r = server.call({"cmd": "wait", "timeout": left()}, timeout=left() + 30)
        time.sleep(0.2)
        st = per_client_stats()
        r["bytes"] = statistics.fmean(s["bytes"] for s in st)
        r["resources"] = statistics.fmean(s["resources"] for s in st)
        out["full"] = r
        out["mem_final"] = server.call({"cmd": "mem"})
        out["complete"] = bool(r["ok"])
        if not r["ok"]:
            out["note"] = "the full-state resend did not converge within the budget"
        return out
    finally:
        for c in clients:
            c.close()
        server.close()


# --- cost at target scale (one proxy, measured; the total is projected) --------------------


def target_cost(services: int) -> dict[str, float]:
    mesh = StoredMesh(services)
    t0 = time.perf_counter()
    snap = mesh.snapshot(1)  # from scratch: every object parsed
    t1 = time.perf_counter()
    res = build_resources(snap, sim_node(0))
    t2 = time.perf_counter()
    entries = prepare(res)
    t3 = time.perf_counter()
    after = prepare(build_resources(make_snapshot(2, services, weight_for(0)), sim_node(0)))
    changed = [e for t, v in after.items() for n, e in v.items()
               if entries.get(t, {}).get(n) is None or entries[t][n].version != e.version]
    full = sum(e.packed.ByteSize() for v in entries.values() for e in v.values())
    # The control plane's path: ProxyConfigBuilder (one build per proxy class, per changed service).
    builder = ProxyConfigBuilder()
    t4 = time.perf_counter()
    builder.config_for(snap, sim_node(0))
    t5 = time.perf_counter()
    builder.config_for(snap, sim_node(1))
    t6 = time.perf_counter()
    mesh.set_weight(weight_for(0))
    t6 = time.perf_counter()
    snap2 = mesh.snapshot(2)  # after one change: as the control plane rebuilds
    t7 = time.perf_counter()
    builder.config_for(snap2, sim_node(0))
    t8 = time.perf_counter()
    builder.config_for(snap2, sim_node(1))
    t9 = time.perf_counter()
    return {"snapshot": t1 - t0, "build": t2 - t1, "entries": t3 - t2, "full_bytes": full,
            "changed_bytes": sum(e.packed.ByteSize() for e in changed),
            "changed": len(changed), "resources": sum(len(v) for v in entries.values()),
            "shared_first": t5 - t4, "shared_next_proxy": t6 - t5, "snapshot2": t7 - t6,
            "shared_change": t8 - t7, "shared_change_next": t9 - t8}


# --- report --------------------------------------------------------------------------------------


def ms(x: float) -> str:
    return f"{x * 1000:9.1f}"


def kb(x: float) -> str:
    return f"{x / 1024:10.1f}"


def report_envoys(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"(a) {args.envoys} real Envoys, mesh of {args.services} services "
          f"({3 * args.services + 1} clusters per proxy), {args.updates} weight changes; "
          "time from the change (snapshot rebuild included) to every proxy's ACK, ms")
    head = (f"{'ADS flavour':<16}{'p50':>9}{'p99':>9}{'max':>9}{'rebuild':>9}{'initial':>9}"
            f"{'res/proxy':>10}{'KB/proxy':>10}{'full KB':>10}  types sent")
    print(head)
    print("-" * len(head))
    for r in results:
        t = r["totals"]
        print(f"{r['api']:<16}{ms(pct(t, 50))}{ms(pct(t, 99))}{ms(max(t))}"
              f"{ms(statistics.median(r['builds']))}{ms(r['initial'])}{r['resources']:10.1f}"
              f"{kb(r['bytes'])}{kb(r['full_bytes'])}  {' / '.join(r['types'])}")
    if len(results) == 2:
        a, b = results
        print(f"{'ratio ' + b['api'] + '/' + a['api']:<16}"
              f"{pct(b['totals'], 50) / pct(a['totals'], 50):9.2f}"
              f"{pct(b['totals'], 99) / pct(a['totals'], 99):9.2f}")
    print("  (p99 of a few samples is close to the max; raise --updates for a firmer tail)")


def report_sim(r: dict[str, Any], cost: dict[str, float], args: argparse.Namespace) -> None:
    c, s = args.sim_clients, args.sim_services
    print()
    print(f"(b) {c} simulated Delta xDS clients ({args.sim_procs} client processes), mesh of "
          f"{s} services ({3 * s + 1} clusters per proxy); XdsServer in its own process")
    init = r.get("initial", {})
    print(f"  initial sync of all clients: {init.get('elapsed', float('nan')):.1f} s "
          f"(server CPU {init.get('cpu', float('nan')):.1f} s), "
          f"{r.get('initial_bytes', 0) / 1024:.0f} KB and "
          f"{r.get('initial_resources', 0):.0f} resources per client")
    ups = r["updates"]
    if ups:
        totals = [u["total"] for u in ups]
        head = (f"{'one weight change':<28}{'p50 ms':>10}{'p99 ms':>10}{'res/proxy':>11}"
                f"{'KB/proxy':>10}{'CPU s':>8}")
        print(head)
        print("-" * len(head))
        u0 = ups[-1]
        delta_kb = statistics.fmean(u["bytes"] for u in ups)
        delta_res = statistics.fmean(u["resources"] for u in ups)
        print(f"{'Delta, per-resource diff':<28}{ms(pct(totals, 50)):>10}{ms(pct(totals, 99)):>10}"
              f"{delta_res:11.2f}{kb(delta_kb)}{statistics.fmean(u['cpu'] for u in ups):8.1f}")
        full = r.get("full")
        if full:
            print(f"{'SotW full-state resend':<28}{ms(full['elapsed']):>10}{'(1 run)':>10}"
                  f"{full['resources']:11.1f}{kb(full['bytes'])}{full['cpu']:8.1f}")
            print(f"{'ratio full / delta':<28}{full['elapsed'] / pct(totals, 50):10.1f}"
                  f"{'':>10}{full['resources'] / max(delta_res, 1e-9):11.0f}"
                  f"{full['bytes'] / max(delta_kb, 1e-9):10.0f}")
        print("  every change, ms, in order: " + ", ".join(f"{t * 1000:.0f}" for t in totals))
        rebuild = statistics.fmean(u["build"] for u in ups) * 1000
        server_cpu = statistics.median(u["cpu"] for u in ups) * 1000
        clients_cpu = statistics.median(u["clients_cpu"] for u in ups) * 1000
        cpus = os.cpu_count() or 1
        print(f"  CPU per change (median): server {server_cpu:.0f} ms (most of it its event "
              f"loop's one thread), the simulated clients {clients_cpu:.0f} ms: on {cpus} "
              f"CPUs at least {(server_cpu + clients_cpu) / cpus:.0f} ms even if all of it "
              "ran in parallel")
        responses = statistics.fmean(u["responses"] for u in ups)
        print(f"  per change: snapshot rebuild {rebuild:.0f} ms; responses per proxy "
              f"{responses:.1f}; "
              f"resources by type per proxy "
              + ", ".join(f"{t} {n:.2f}" for t, n in sorted(u0["types"].items())))
    mem = r.get("mem_final") or r.get("mem_initial") or {}
    start, init_mem = r.get("mem_start"), r.get("mem_initial")
    if start and init_mem:
        print(f"  server RSS before clients {start['VmRSS']:.0f} MB, after the initial sync "
              f"{init_mem['VmRSS']:.0f} MB: "
              f"{(init_mem['VmRSS'] - start['VmRSS']) * 1024 / max(c, 1):.0f} KB per stream")
    if mem:
        verdict = "meets" if mem["VmHWM"] < TARGET_RSS_MB else "MISSES"
        print(f"  control-plane memory: peak RSS (VmHWM) {mem['VmHWM']:.0f} MB, "
              f"RSS now {mem['VmRSS']:.0f} MB  -> {verdict} the {TARGET_RSS_MB:.0f} MB target "
              f"(at this scale)")
    floor = r.get("floor")
    if floor and ups:
        times = [f["elapsed"] for f in floor]
        totals = [u["total"] for u in ups]
        print(f"  baseline in this run, the bare gRPC floor (grpc_floor.py: {c} streams, one "
              f"0.9 KB message each, every client answering, no meshpilot code; "
              f"{len(floor)} rounds): p50 {ms(pct(times, 50)).strip()} ms, max "
              f"{ms(max(times)).strip()} ms, server CPU "
              f"{statistics.median(f['cpu'] for f in floor) * 1000:.0f} ms per round")
        print(f"  meshpilot's change / the floor: p50 x{pct(totals, 50) / pct(times, 50):.2f}, "
              f"p99 x{pct(totals, 99) / max(times):.2f} (against the floor's max)")
    if ups:
        p99 = pct([u["total"] for u in ups], 99) * 1000
        verdict = "meets" if p99 < TARGET_P99_MS else "MISSES"
        print(f"  convergence p99 {p99:.0f} ms -> {verdict} the {TARGET_P99_MS:.0f} ms target "
              f"(at this scale: {c} x {s})")
    if r.get("note"):
        print(f"  NOTE: {r['note']} (--sim-budget {args.sim_budget:g} s)")
    print()
    print(f"Cost at target scale: one proxy, mesh of {args.target_services} services "
          "(measured in this process)")
    print(f"  build_snapshot {cost['snapshot'] * 1000:.0f} ms; build_resources for one proxy "
          f"{cost['build'] * 1000:.0f} ms; prepare (pack + hash) {cost['entries'] * 1000:.0f}"
          f" ms; {cost['resources']:.0f} resources, {cost['full_bytes'] / 1024:.0f} KB full "
          f"state; a weight change alters {cost['changed']:.0f} resource(s), "
          f"{cost['changed_bytes'] / 1024:.1f} KB")
    print(f"  shared (control plane's ProxyConfigBuilder): first proxy of a class "
          f"{cost['shared_first'] * 1000:.0f} ms, each further proxy "
          f"{cost['shared_next_proxy'] * 1000:.1f} ms (its listeners); after a weight change "
          f"(snapshot rebuild {cost['snapshot2'] * 1000:.0f} ms) the class costs "
          f"{cost['shared_change'] * 1000:.0f} ms and each further proxy "
          f"{cost['shared_change_next'] * 1000:.2f} ms")
    n = args.target_clients
    print(f"  full-state bytes for {n} proxies would be "
          f"{n * cost['full_bytes'] / 2**20:.0f} MB per resend")
    print(f"  Context: target p99 < {TARGET_P99_MS:.0f} ms at 1,000 proxies x 1,000 services, "
          f"control plane < {TARGET_RSS_MB:.0f} MB; {ISTIOD_NOTE}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envoys", type=int, default=20, help="(a) real Envoys (default 20)")
    parser.add_argument("--services", type=int, default=50, help="(a) mesh services (50)")
    parser.add_argument("--updates", type=int, default=20, help="(a) weight changes (20)")
    parser.add_argument("--sim-clients", type=int, default=1000,
                        help="(b) simulated xDS clients (default 1000, the target scale)")
    parser.add_argument("--sim-services", type=int, default=1000,
                        help="(b) mesh services (default 1000, the target scale)")
    parser.add_argument("--sim-updates", type=int, default=20, help="(b) weight changes (20)")
    parser.add_argument("--namespaces", type=int, default=1,
                        help="(b) spread the services over this many namespaces (1: default)")
    parser.add_argument("--sidecar-hosts", default="",
                        help="(b) give namespace default (the clients') a Sidecar with these "
                             "comma-separated egress hosts, e.g. './*,istio-system/*'")
    parser.add_argument("--sim-procs", type=int, default=2,
                        help="(b) client processes (default 2)")
    parser.add_argument("--sim-budget", type=float, default=600.0,
                        help="(b) give up waiting after this many seconds in total (600)")
    parser.add_argument("--target-services", type=int, default=1000,
                        help="services for the one-proxy cost probe (default 1000)")
    parser.add_argument("--target-clients", type=int, default=1000,
                        help="proxies for the projection (default 1000)")
    parser.add_argument("--keep", action="store_true", help="keep the logs' temporary directory")
    parser.add_argument("--skip-envoy", action="store_true", help="skip part (a)")
    parser.add_argument("--skip-sim", action="store_true", help="skip part (b)")
    parser.add_argument("--skip-floor", action="store_true",
                        help="skip (b)'s baseline: the bare gRPC floor (grpc_floor.py)")
    parser.add_argument("--role", choices=["driver", "server", "clients"], default="driver",
                        help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "server":
        return serve_role(args)
    if args.role == "clients":
        return clients_role(args)

    tmp = Path(tempfile.mkdtemp(prefix="meshpilot-bench-convergence-"))
    started = time.monotonic()
    try:
        if not args.skip_envoy:
            results = []
            for api in ("delta", "sotw"):
                print(f"(a) {args.envoys} Envoys over {api} ADS ...", flush=True)
                results.append(run_envoys(args, tmp, api))
            report_envoys(results, args)
        if not args.skip_sim:
            print(f"\n(b) {args.sim_clients} simulated clients x {args.sim_services} services "
                  "...", flush=True)
            sim = run_sim(args, tmp)
            if not args.skip_floor:
                print(f"(b) the bare gRPC floor, {args.sim_clients} streams ...", flush=True)
                sim["floor"] = grpc_floor.measure(args.sim_clients, FLOOR_ROUNDS)
            cost = target_cost(args.target_services)
            report_sim(sim, cost, args)
        print(f"\n(total run time {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs)")
        return 0
    finally:
        keep_or_remove(tmp, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())

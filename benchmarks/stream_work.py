"""The xDS server's own work per proxy for one change, without gRPC.

C ``ProxyStream``s (default 1,000: what the ADS server runs per connected proxy) on one
event loop serve a mesh of S services (default 200) through the control plane's
``ProxyConfigBuilder``; each stream's "proxy" is this script, which ACKs every response and
subscribes to the EDS, ECDS and RDS names of its config, as Envoy does. After the initial sync,
K times (default 20): one VirtualService's weights change, the snapshot and the class
are rebuilt (outside the timing), then every stream is handed its proxy's config as the
server does (its config looked up, checked for consistency, its round started: timed,
"round start") and every proxy's ACK handled (timed: "ACK"). What gRPC adds on top of this is
what ``grpc_floor.py`` measures.

Baseline in the same run: what any Python server must do per proxy at the least, with
the same protobuf library: build one ``DeltaDiscoveryResponse`` (version, type, nonce, one
0.8 KB resource), serialise it, and parse one ACK.

Run:  .venv/bin/python benchmarks/stream_work.py [--proxies 1000 --services 200 --changes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

from convergence import StoredMesh, sim_node, weight_for
from envoy.service.discovery.v3 import discovery_pb2
from harness import issue_credentials

from meshpilot.mesh.model import MeshSnapshot
from meshpilot.xds import ProxyConfigBuilder, PushPlanner
from meshpilot.xds.first_sync import FirstSyncGate
from meshpilot.xds.server import config_problems
from meshpilot.xds.stream import ProxyStream
from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    SECRET,
)

Req = discovery_pb2.DeltaDiscoveryRequest
Resp = discovery_pb2.DeltaDiscoveryResponse


def baseline_per_proxy(count: int) -> float:
    """Seconds per proxy to build, serialise one response and parse one ACK."""
    payload = b"y" * 800
    t0 = time.perf_counter()
    for i in range(count):
        resp = Resp(type_url=ROUTE, nonce=f"n-{i}", system_version_info=f"{i}-abc")
        res = resp.resources.add(name="outbound|svc0000.default.svc.cluster.local",
                                 version="v")
        res.resource.value = payload
        resp.SerializeToString()
        Req.FromString(Req(type_url=ROUTE, response_nonce=resp.nonce).SerializeToString())
    return (time.perf_counter() - t0) / count


async def measure(proxies: int, services: int, changes: int) -> dict[str, list[float]]:
    nodes = [sim_node(i) for i in range(proxies)]
    mesh = StoredMesh(services, nodes)
    credentials = issue_credentials(nodes)  # what the control plane gives each proxy
    holder = {"snap": mesh.snapshot(1)}
    builder = ProxyConfigBuilder()  # what the control plane serves with
    gate = FirstSyncGate(32)
    planner = PushPlanner()  # the server's, shared by its streams
    outboxes: list[list[bytes]] = []
    streams: list[ProxyStream] = []
    for i in range(proxies):
        out: list[bytes] = []
        outboxes.append(out)
        streams.append(ProxyStream(
            stream_id=f"s{i}", node=sim_node(i), api="delta", send=out.append,
            notify=lambda: None, planner=planner, first_sync_gate=gate))

    def deliver(stream: ProxyStream, snap: MeshSnapshot) -> None:
        """What the server does per proxy with a published snapshot."""
        config = builder.config_for(snap, stream.node, credentials.get(stream.node.id))
        if config_problems(config, stream.accepted):
            raise SystemExit(f"inconsistent config for {stream.node.id}")
        stream.trigger(snap.version, config)

    def answer(i: int) -> int:
        """ACK what stream i sent; subscribe to the names its config refers to."""
        stream, out, n = streams[i], outboxes[i], 0
        while out:
            resp = Resp.FromString(out.pop(0))
            n += 1
            stream.handle(Req(type_url=resp.type_url, response_nonce=resp.nonce))
            views = builder.config_for(holder["snap"], stream.node,
                                       credentials.get(stream.node.id))
            if resp.type_url == CLUSTER:
                stream.handle(Req(type_url=ENDPOINT,
                                  resource_names_subscribe=sorted(views[ENDPOINT])))
                stream.handle(Req(type_url=SECRET,
                                  resource_names_subscribe=sorted(views.get(SECRET, ()))))
            elif resp.type_url == LISTENER:
                stream.handle(Req(type_url=EXTENSION_CONFIG, resource_names_subscribe=sorted(
                    views.get(EXTENSION_CONFIG, ()))))
                stream.handle(Req(type_url=SCOPED_ROUTE, resource_names_subscribe=["*"]))
                stream.handle(Req(type_url=ROUTE,
                                  resource_names_subscribe=sorted(views[ROUTE])))
        return n

    for stream in streams:
        deliver(stream, holder["snap"])
        stream.handle(Req(type_url=CLUSTER))
        stream.handle(Req(type_url=LISTENER))
    t_sync = time.perf_counter()
    deadline = time.monotonic() + 600
    while not all(s.acked(1) for s in streams):
        if time.monotonic() > deadline:
            raise SystemExit("the initial sync did not finish in 600 s")
        if sum(answer(i) for i in range(proxies)) == 0:
            await asyncio.sleep(0.01)  # gated first syncs start on the loop
    initial = time.perf_counter() - t_sync
    gc.collect()
    gc.freeze()  # as the control plane's collector policy does after start-up
    starts: list[float] = []
    acks: list[float] = []
    for k in range(changes):
        version = k + 2
        mesh.set_weight(weight_for(k))
        holder["snap"] = mesh.snapshot(version)
        builder.config_for(holder["snap"], streams[0].node)  # the class rebuild, untimed
        t0 = time.perf_counter()
        for stream in streams:
            deliver(stream, holder["snap"])
        t1 = time.perf_counter()
        acks_due = []
        for i, stream in enumerate(streams):
            for raw in outboxes[i]:
                resp = Resp.FromString(raw)
                acks_due.append((stream, Req(type_url=resp.type_url,
                                             response_nonce=resp.nonce)))
            outboxes[i].clear()
        t2 = time.perf_counter()
        for stream, req in acks_due:
            stream.handle(req)
        t3 = time.perf_counter()
        if len(acks_due) != proxies or not all(s.acked(version) for s in streams):
            raise SystemExit(f"change {k + 1}: {len(acks_due)} responses for {proxies} "
                             "proxies, or not every proxy converged")
        starts.append((t1 - t0) / proxies)
        acks.append((t3 - t2) / proxies)
    for stream in streams:
        stream.close()
    return {"start": starts, "ack": acks, "initial": [initial]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxies", type=int, default=1000)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args(argv)
    got = asyncio.run(measure(args.proxies, args.services, args.changes))
    base = min(baseline_per_proxy(args.proxies) for _ in range(5))
    print(f"{args.proxies} ProxyStreams, mesh of {args.services} services, {args.changes} "
          "weight changes (no gRPC); per proxy, us:")
    print(f"{'':<34}{'min':>8}{'median':>9}{'x baseline':>12}")
    for label, key in (("round start (push of 1 RDS)", "start"), ("ACK handling", "ack")):
        values = got[key]
        print(f"{label:<34}{min(values) * 1e6:8.1f}{statistics.median(values) * 1e6:9.1f}"
              f"{min(values) / base:12.2f}")
    total = min(got["start"]) + min(got["ack"])
    print(f"{'both':<34}{total * 1e6:8.1f}{'':>9}{total / base:12.2f}")
    print(f"initial sync of all {args.proxies} (their whole configs, ACKs and "
          f"subscriptions played by this process): {got['initial'][0]:.2f} s")
    print(f"baseline (build + serialise a response, parse an ACK; same process, min of 5): "
          f"{base * 1e6:.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

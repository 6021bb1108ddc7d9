"""The transport's floor for a push: a bare grpc.aio server, no meshpilot code at all.

A server process holds N bidirectional streams (the ADS method, raw bytes) from clients in
two processes, as benchmarks/convergence.py's simulated proxies hold theirs. Each round
writes one ~0.9 KB message to every stream and waits until every client has answered
(as a proxy ACKs), so a round is the least a control plane written in Python with grpcio
can take to reach N proxies on this machine. Optionally, first, every stream receives one
3 MB message (a proxy's initial sync at 1,000 services), since what gRPC does after large
transfers shows in the rounds that follow.

Run:  .venv/bin/python benchmarks/grpc_floor.py [--streams 1000] [--rounds 10] [--big]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from harness import process_cpu_seconds

from meshpilot.xds.loop import new_event_loop

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
SERVICE, NAME = METHOD[1:].split("/")
PER_CHANNEL = 25


def _bytes(data: bytes) -> bytes:
    return data


def _message(nonce: str, payload: int) -> bytes:
    res = discovery_pb2.Resource(name="outbound|svc0000.default.svc.cluster.local", version="v")
    res.resource.value = b"y" * payload
    return discovery_pb2.DeltaDiscoveryResponse(
        type_url="type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        nonce=nonce, resources=[res]).SerializeToString()


async def serve(streams: int) -> None:
    queues: list[asyncio.Queue[bytes]] = []
    state: dict[str, object] = {"answers": 0, "want": 1 << 60, "done": asyncio.Event()}

    async def handler(requests: object, context: grpc.aio.ServicerContext) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.append(queue)

        async def read() -> None:
            async for _ in requests:  # type: ignore[attr-defined]
                state["answers"] = int(state["answers"]) + 1  # type: ignore[call-overload]
                if state["answers"] >= state["want"]:  # type: ignore[operator]
                    state["done"].set()  # type: ignore[attr-defined]

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while True:
                await context.write(await queue.get())
        finally:
            reader.cancel()

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        NAME: grpc.stream_stream_rpc_method_handler(
            handler, request_deserializer=_bytes, response_serializer=_bytes)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"port": port}), flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "count":
            print(json.dumps({"streams": len(queues)}), flush=True)
            continue
        state.update(answers=0, want=len(queues), done=asyncio.Event())
        t0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
        for i, queue in enumerate(queues):
            queue.put_nowait(_message(f"n-{i}", cmd["payload"]))
        await state["done"].wait()  # type: ignore[attr-defined]
        print(json.dumps({"elapsed": time.perf_counter() - t0,
                          "cpu": time.process_time() - cpu0,
                          "loop_cpu": time.thread_time() - thread0}), flush=True)
    await server.stop(0)


async def clients(port: int, first: int, count: int) -> None:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1),
        ("grpc.channel_id", f"{first}-{c}")]) for c in range(0, count, PER_CHANNEL)]

    async def one(i: int) -> None:
        call = channels[i // PER_CHANNEL].stream_stream(
            METHOD, request_serializer=_bytes, response_deserializer=_bytes)()
        await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url="x").SerializeToString())
        async for raw in call:
            resp = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
            await call.write(discovery_pb2.DeltaDiscoveryRequest(
                type_url=resp.type_url, response_nonce=resp.nonce).SerializeToString())
            del raw, resp  # freed now, not in the middle of the next round

    await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)


def run_on_uvloop(main: object) -> None:
    gc.disable()  # as the benchmark's simulated proxies (acyclic garbage, short-lived)
    loop = new_event_loop()
    try:
        loop.run_until_complete(main)  # type: ignore[arg-type]
    finally:
        loop.close()


def measure(streams: int, rounds: int, big: bool = False) -> list[dict[str, float]]:
    """``rounds`` pushes to ``streams`` streams (in a server process and two client
    processes of their own): per round its time, the server's CPU, its loop thread's
    CPU and the clients' CPU, in seconds."""
    me = [sys.executable, os.path.abspath(__file__)]
    server = subprocess.Popen([*me, "--role", "server", "--streams", str(streams)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None

    def ask(cmd: dict[str, object]) -> dict[str, float]:
        server.stdin.write(json.dumps(cmd) + "\n")  # type: ignore[union-attr]
        server.stdin.flush()  # type: ignore[union-attr]
        return json.loads(server.stdout.readline())  # type: ignore[union-attr,no-any-return]

    port = json.loads(server.stdout.readline())["port"]
    half = streams // 2
    procs = [subprocess.Popen([*me, "--role", "clients", "--port", str(port), "--first",
                               str(p * half), "--count", str(half)]) for p in range(2)]
    out: list[dict[str, float]] = []
    try:
        deadline = time.monotonic() + 120
        while ask({"cmd": "count"})["streams"] < 2 * half:
            if time.monotonic() > deadline:
                raise SystemExit("the clients did not all connect within 120 s")
            time.sleep(0.2)
        if big:
            ask({"cmd": "push", "payload": 3_000_000})
        for _ in range(rounds):
            before = sum(process_cpu_seconds(p.pid) for p in procs)
            r = ask({"cmd": "push", "payload": 900})
            r["clients_cpu"] = sum(process_cpu_seconds(p.pid) for p in procs) - before
            out.append(r)
            time.sleep(0.3)
    finally:
        for p in procs:
            p.kill()
        server.kill()
        for p in (*procs, server):
            p.wait()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--big", action="store_true",
                        help="first send every stream one 3 MB message")
    parser.add_argument("--role", default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "server":
        run_on_uvloop(serve(args.streams))
        return 0
    if args.role == "clients":
        run_on_uvloop(clients(args.port, args.first, args.count))
        return 0
    rounds = measure(args.streams, args.rounds, args.big)
    print(f"bare grpc.aio push to {2 * (args.streams // 2)} streams, ~0.9 KB each, every "
          f"client answering{' (after one 3 MB message each)' if args.big else ''}:")
    print(f"{'round':>5} {'ms':>8} {'server CPU ms':>14} {'its loop ms':>12} "
          f"{'clients CPU ms':>15}")
    for k, r in enumerate(rounds):
        print(f"{k + 1:>5} {r['elapsed'] * 1000:8.1f} {r['cpu'] * 1000:14.1f} "
              f"{r['loop_cpu'] * 1000:12.1f} {r['clients_cpu'] * 1000:15.0f}")
    times = sorted(r["elapsed"] for r in rounds)
    print(f"p50 {times[len(times) // 2] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

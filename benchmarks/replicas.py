"""Convergence with the proxies spread over control-plane replicas, against one; and
the time from a leader's death to the next state change reaching the proxies.

(1) Spread. The simulated xDS clients of ``convergence.py`` part (b) (gRPC Delta ADS
streams that ACK what they receive and subscribe as Envoy does), C of them (default
1,000), over a mesh of S services (default 200). First all C on one server process,
then the same C spread evenly over R server processes (default 3), each one the
``XdsServer`` a replica runs, each building the same mesh and serving its share, as
replicas on one etcd do (every replica builds from the same store). K weight changes
(default 10) are published to every server at once; a change has converged when the
slowest server has every one of its clients' ACKs. Printed side by side: p50 and max of
each, and the ratio spread/one, in the same run. On a 2-CPU machine, R servers and their
clients share two cores: the ratio says what spreading costs or saves on such a host,
not on R machines.

(2) Failover. Two full control planes (mesh, proxies, xDS) on a real etcd (Debian's
etcd-server, one member on loopback); the leader is SIGKILLed, and timed: until the
other leads, and until a change applied to it has been ACKed by all its proxies
(``GET .../readiness`` reporting the new mesh version everywhere), ``--failovers`` times.

Run:  .venv/bin/python benchmarks/replicas.py [--sim-clients 1000 --sim-services 200
          --replicas 3 --updates 10 --failovers 2] [--skip-spread|--skip-failover]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from convergence import Child, weight_for  # this directory's
from harness import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' etcd starter (tests/etcd_cluster.py)

from tests.etcd_cluster import running  # noqa: E402

from meshpilot.server.leftovers import stop_leftovers  # noqa: E402

CONVERGENCE = str(Path(__file__).with_name("convergence.py"))
API = "/apis/meshpilot.io/v1"
LEADER = API + "/leader"


# --- (1) the proxies spread over replicas ---------------------------------------------------


def spread(args: argparse.Namespace, tmp: Path, replicas: int) -> list[float]:
    """Seconds each of ``args.updates`` changes took to converge with the clients over
    ``replicas`` servers."""
    me = [sys.executable, CONVERGENCE]
    common = ["--sim-clients", str(args.sim_clients), "--sim-services",
              str(args.sim_services)]
    chunk = -(-args.sim_clients // replicas)
    shares = [(r * chunk, min(chunk, args.sim_clients - r * chunk)) for r in range(replicas)]
    servers = [Child([*me, "--role", "server", *common, "--first", str(first), "--count",
                      str(count)], tmp / f"server-{replicas}-{r}.log")
               for r, (first, count) in enumerate(shares)]
    clients: list[Child] = []
    try:
        ports = [s.read(180)["port"] for s in servers]
        for r, ((first, count), port) in enumerate(zip(shares, ports, strict=True)):
            clients.append(Child([*me, "--role", "clients", "--port", str(port), "--first",
                                  str(first), "--count", str(count), *common],
                                 tmp / f"clients-{replicas}-{r}.log"))
        for s in servers:
            s.call({"cmd": "mark"})
        for c in clients:
            c.send({"cmd": "connect", "api": "delta"})
        for c in clients:
            c.read(60)
        for s in servers:
            if not s.call({"cmd": "wait", "timeout": args.budget}, args.budget + 30)["ok"]:
                raise RuntimeError(f"the initial sync over {replicas} server(s) did not end")
        took = []
        for k in range(args.updates):
            for s in servers:  # every replica is told at once, as by one etcd watch
                s.send({"cmd": "update", "weight": weight_for(k), "timeout": args.budget})
            answers = [s.read(args.budget + 30) for s in servers]
            if not all(a["ok"] for a in answers):
                raise RuntimeError(f"change {k + 1} did not converge over {replicas}")
            took.append(max(a["total"] for a in answers))
        return took
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.close()


def report_spread(one: list[float], many: list[float], args: argparse.Namespace) -> None:
    def row(name: str, xs: list[float]) -> str:
        return (f"| {name} | {statistics.median(xs) * 1000:.1f} | {max(xs) * 1000:.1f} | "
                + ", ".join(f"{x * 1000:.0f}" for x in xs) + " |")

    print(f"\n(1) {args.sim_clients} simulated clients x {args.sim_services} services, "
          f"{args.updates} weight changes\n")
    print("| servers | p50 ms | max ms | every change, ms |")
    print("|---|---:|---:|---|")
    print(row("1", one))
    print(row(f"{args.replicas} (spread)", many))
    ratio = statistics.median(many) / statistics.median(one)
    print(f"\nspread/one at the median: {ratio:.2f}")


# --- (2) failover -------------------------------------------------------------------------------


def service(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"selector": {"app": name},
                                "ports": [{"name": "http", "port": 8080}]}})


def converged(cp: ControlPlane, timeout: float) -> bool:
    """Every proxy of ``cp`` has ACKed its latest mesh version."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = cp.api.get(f"{API}/readiness").json()
        except Exception:
            state = {}
        if state.get("ready"):
            return True
        time.sleep(0.02)
    return False


def leads(cp: ControlPlane) -> bool:
    try:
        return bool(cp.api.get(LEADER).json().get("leading"))
    except Exception:
        return False


def failover(args: argparse.Namespace, tmp: Path) -> list[tuple[float, float]]:
    """(seconds until the other leads, until its next change is ACKed by its proxies)."""
    out = []
    with running(tmp / "etcd") as etcd:
        for n in range(args.failovers):
            store = ["--store", f"{etcd.url}/failover-{n}"]
            cps = []
            try:
                for name in ("one", "two"):
                    (tmp / f"f{n}" / name).mkdir(parents=True)
                    cps.append(ControlPlane(tmp / f"f{n}" / name / "state",
                                            server_args=store))
                deadline = time.monotonic() + 30
                while not any(leads(cp) for cp in cps) and time.monotonic() < deadline:
                    time.sleep(0.05)
                leader, other = (cps[0], cps[1]) if leads(cps[0]) else (cps[1], cps[0])
                leader.apply(service("before"))
                converged(other, 30)
                killed = time.monotonic()
                leader.proc.kill()
                while not leads(other) and time.monotonic() - killed < 30:
                    time.sleep(0.02)
                led = time.monotonic() - killed
                other.apply(service(f"after-{n}"))
                ok = converged(other, 30)
                out.append((led, time.monotonic() - killed if ok else float("nan")))
            finally:
                for cp in cps:
                    cp.stop()
                    stop_leftovers(cp.state_dir / "run")  # the killed one's proxies
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim-clients", type=int, default=1000)
    parser.add_argument("--sim-services", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--failovers", type=int, default=2)
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds any one sync may take before the run gives up")
    parser.add_argument("--skip-spread", action="store_true")
    parser.add_argument("--skip-failover", action="store_true")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="meshpilot-bench-replicas-"))
    started = time.monotonic()
    try:
        if not args.skip_spread:
            print(f"(1) {args.sim_clients} clients on one server ...", flush=True)
            one = spread(args, tmp, 1)
            print(f"(1) ... and over {args.replicas} ...", flush=True)
            many = spread(args, tmp, args.replicas)
            report_spread(one, many, args)
        if not args.skip_failover:
            print("\n(2) failover: leader SIGKILLed -> the other leads -> its next change "
                  "ACKed by its proxies", flush=True)
            for led, pushed in failover(args, tmp):
                print(f"  leads after {led:.2f} s; next change ACKed after {pushed:.2f} s")
        print(f"\n(total run time {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

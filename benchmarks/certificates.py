"""Workload certificates for 1,000 proxies: issuing them, and pushing them over SDS.

What the control plane does for identity, at the targets' scale, timed and with its CPU:

- **start-up**: a credential (ECDSA P-256 key, CSR, certificate from the CA) is issued for
  every proxy, then every proxy receives its config over Delta ADS, the SDS secrets
  ``default`` (its chain and key) and ``ROOTCA`` (the trust bundle) among it;
- **rotation, spread** (what the control plane does): a credential is renewed at half its
  life, so credentials issued together are renewed together. The control plane issues a
  proxy's credential at the first rebuild that knows the proxy, so here the proxies
  appear in ``--groups`` groups one second apart (a fake clock: the CA's validity has
  whole seconds), and each group's renewal is one rebuild: renew what is due, publish to
  every stream, wait for every proxy's ACK;
- **rotation, all at once**: every credential renewed by one rebuild, as after a trust
  root change (``WorkloadCertificates.rotate_trust``), a control plane restart (keys live
  in memory only, so a new process issues afresh) or proxies that all appeared together.

The server process is the control plane's xDS side as ``benchmarks/convergence.py``
builds it (``XdsServer``, ``ProxyConfigBuilder``, the control plane's garbage-collection
policy) with the control plane's ``WorkloadCertificates`` and a self-signed CA made in a
temporary directory; renewal is driven exactly as the control plane's rebuild does it
(``current()`` for every proxy, then ``publish``). The simulated proxies are
convergence.py's (``--role clients``: Delta ADS streams that ACK every response and
subscribe to the EDS, RDS and SDS names they learn, as Envoy does).

Baselines measured in the same run: the bare gRPC floor (``grpc_floor.py``: one ~0.9 KB
message to each of the same number of streams, every client answering, no meshpilot
code; a renewed ``default`` secret is about that size), and the cryptography floor of one
credential (one key generated, two signatures, one verification: the least work any
issuer does for a CSR-based certificate), so figures from a slower or busier machine
read as ratios.

Run:  .venv/bin/python benchmarks/certificates.py [--proxies 1000] [--groups 10]
          [--services 10] [--repeats 3] [--floor-rounds 10] [--budget 300]
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
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc_floor  # this directory's: the transport's floor
from convergence import Child, StoredMesh, admit_all, cpu_seconds, sim_node, vm_status
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from harness import keep_or_remove, process_cpu_seconds
from latency import ForeignCpu

from meshpilot.gc_policy import QuietCollector
from meshpilot.security import load_or_create_self_signed_ca, workload_identity
from meshpilot.security.csr import new_workload_key
from meshpilot.security.keys import generate_key
from meshpilot.security.workload_certs import CredentialSubject, WorkloadCertificates
from meshpilot.xds import ProxyConfigBuilder, XdsServer, XdsSnapshot
from meshpilot.xds.resources import prepare
from meshpilot.xds.types import SECRET

GAP = timedelta(seconds=1)
"""Between two groups of proxies appearing at start-up (fake clock): a certificate's
times have whole seconds, so groups a second apart are renewed by separate rebuilds."""
CRYPTO_SAMPLES = 200
"""Credentials issued in the driver for the per-step breakdown and the crypto floor."""


# --- the server process --------------------------------------------------------------------


class CertServer:
    """The control plane's identity path over an ``XdsServer``: its credentials, issued
    and renewed by :meth:`rebuild` as the control plane's rebuild does (``current()`` for
    every proxy it knows, then ``publish``), on a fake clock the driver moves."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.nodes = [sim_node(i) for i in range(args.proxies)]
        self.ids = [n.id for n in self.nodes]
        self.subjects = [CredentialSubject(n.id, n.namespace, n.service_account)
                         for n in self.nodes]
        self.snapshot = StoredMesh(args.services, self.nodes).snapshot(1)
        self.version = 1
        self.builder = ProxyConfigBuilder()  # what the control plane serves with
        self.certs = WorkloadCertificates(load_or_create_self_signed_ca(args.ca_dir))
        self.credentials: Any = {}
        self.known = 0  # how many proxies have appeared so far
        self.start = datetime.now(UTC).replace(microsecond=0)
        self.xds = XdsServer(host="127.0.0.1", authenticate=admit_all)
        self.port = self.xds.start()
        QuietCollector(self.xds.idle_seconds).start()  # the control plane's collection policy

    def at(self, offset: float) -> datetime:
        return self.start + timedelta(seconds=offset)

    def issue(self, known: int, offset: float) -> dict[str, Any]:
        """``current()`` for the first ``known`` proxies at fake time ``offset``: what a
        rebuild issues when that many proxies are known."""
        self.known = known
        before = self.certs.issued
        t0, cpu0, thread0 = time.perf_counter(), cpu_seconds(), time.thread_time()
        self.credentials = self.certs.current(self.subjects[:known], self.at(offset))
        return {"elapsed": time.perf_counter() - t0, "cpu": cpu_seconds() - cpu0,
                "thread_cpu": time.thread_time() - thread0,
                "issued": self.certs.issued - before}

    def publish(self) -> float:
        """Publish the current credentials as a new mesh version (the mesh itself is the
        same snapshot object: only secrets change); returns the time the call took."""
        self.version += 1
        snapshot, builder, credentials = self.snapshot, self.builder, self.credentials
        t0 = time.perf_counter()
        self.xds.publish(XdsSnapshot(self.version, lambda node: builder.config_for(
            snapshot, node, credentials.get(node.id))))
        return time.perf_counter() - t0

    def rebuild(self, offset: float, timeout: float) -> dict[str, Any]:
        """One control-plane rebuild at fake time ``offset``: renew what is due, publish,
        wait until every proxy ACKed. Times and CPU of the two parts."""
        issue = self.issue(self.known, offset)
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        call = self.publish()
        ok = self.xds.wait_acked(self.version, self.ids, timeout=timeout)
        return {"issue": issue, "ok": ok, "publish_call": call,
                "push": time.perf_counter() - t0, "push_cpu": cpu_seconds() - cpu0}

    def renewals(self) -> list[tuple[float, int]]:
        """(fake-time offset, how many) of every distinct renewal moment held."""
        due = Counter(c.renew_at for c in self.credentials.values())
        return [((at - self.start).total_seconds(), n) for at, n in sorted(due.items())]

    def idle(self, offset: float, repeats: int = 5) -> list[float]:
        """What ``current()`` costs a rebuild when nothing is due (every rebuild pays it)."""
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.certs.current(self.subjects[:self.known], self.at(offset))
            out.append(time.perf_counter() - t0)
        return out

    def sizes(self) -> dict[str, Any]:
        """Bytes of one proxy's resources by type (serialised), secrets apart."""
        node = self.nodes[0]
        config = prepare(self.builder.config_for(self.snapshot, node,
                                                 self.credentials.get(node.id)))
        by_type = {t.rsplit(".", 1)[-1]: (len(v), sum(e.packed.ByteSize() for e in v.values()))
                   for t, v in config.items()}
        secrets = {n: e.packed.ByteSize() for n, e in config.get(SECRET, {}).items()}
        return {"by_type": by_type, "secrets": secrets}


def serve_role(args: argparse.Namespace) -> int:
    """``--role server``: a :class:`CertServer` driven by JSON lines on stdin."""
    server = CertServer(args)
    print(json.dumps({"port": server.port, "pid": os.getpid()}), flush=True)
    marks: dict[str, float] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["cmd"]
        reply: Any = {}
        if op == "quit":
            break
        if op == "issue":
            reply = server.issue(cmd["known"], cmd["offset"])
        elif op == "publish":
            reply = {"call": server.publish()}
        elif op == "mark":
            marks["t0"], marks["cpu0"] = time.perf_counter(), cpu_seconds()
        elif op == "wait":
            ok = server.xds.wait_acked(server.version, server.ids, timeout=cmd["timeout"])
            reply = {"ok": ok, "elapsed": time.perf_counter() - marks["t0"],
                     "cpu": cpu_seconds() - marks["cpu0"]}
        elif op == "rebuild":
            reply = server.rebuild(cmd["offset"], cmd["timeout"])
        elif op == "renewals":
            reply = {"renewals": server.renewals()}
        elif op == "idle":
            reply = {"times": server.idle(cmd["offset"])}
        elif op == "sizes":
            reply = server.sizes()
        elif op == "mem":
            reply = vm_status()
        print(json.dumps(reply), flush=True)
    server.xds.stop(grace=0.5)
    return 0


# --- the driver ----------------------------------------------------------------------------


class Run:
    """The server and client processes of one run, and the calls the phases make."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        here = os.path.dirname(os.path.abspath(__file__))
        me = [sys.executable, os.path.join(here, "certificates.py")]
        clients_script = [sys.executable, os.path.join(here, "convergence.py")]
        self.deadline = time.monotonic() + args.budget
        self.server = Child([*me, "--role", "server", "--proxies", str(args.proxies),
                             "--services", str(args.services), "--ca-dir", str(tmp / "ca")],
                            tmp / "server.log")
        hello = self.server.read(120)
        self.server_pid = int(hello["pid"])
        self.clients: list[Child] = []
        chunk = -(-args.proxies // args.client_procs)
        for p in range(args.client_procs):
            first, count = p * chunk, min(chunk, args.proxies - p * chunk)
            if count > 0:
                self.clients.append(Child(
                    [*clients_script, "--role", "clients", "--port", str(hello["port"]),
                     "--first", str(first), "--count", str(count)],
                    tmp / f"clients-{p}.log"))

    def left(self) -> float:
        return max(5.0, self.deadline - time.monotonic())

    def call(self, cmd: dict[str, Any]) -> Any:
        return self.server.call(cmd, timeout=self.left() + 30)

    def all_clients(self, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        for c in self.clients:
            c.send(cmd)
        return [c.read(60) for c in self.clients]

    def client_stats(self) -> list[dict[str, Any]]:
        return [s for r in self.all_clients({"cmd": "stats"}) for s in r["clients"]]

    def clients_cpu(self) -> float:
        return sum(process_cpu_seconds(c.proc.pid) for c in self.clients)

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.server.close()


def received(stats: list[dict[str, Any]]) -> dict[str, float]:
    """Per proxy: bytes, resources and SDS resources received since the last mark, over
    every proxy and over those that received anything."""
    got = [s for s in stats if s["resources"]]
    return {"bytes": statistics.fmean(s["bytes"] for s in stats),
            "sds": statistics.fmean(s["types"].get("SDS", 0) for s in stats),
            "resources": statistics.fmean(s["resources"] for s in stats),
            "receivers": len(got),
            "bytes_receiver": statistics.fmean(s["bytes"] for s in got) if got else 0.0,
            "sds_receiver": statistics.fmean(s["types"].get("SDS", 0) for s in got)
            if got else 0.0}


def start_up(run: Run) -> dict[str, Any]:
    """Issue for every proxy (the proxies appearing in groups), then the initial sync."""
    args = run.args
    issues = []
    for g in range(args.groups):
        known = min(args.proxies, -(-(g + 1) * args.proxies // args.groups))
        issues.append(run.call({"cmd": "issue", "known": known,
                                "offset": g * GAP.total_seconds()}))
    mem_issued = run.call({"cmd": "mem"})
    run.call({"cmd": "publish"})
    run.call({"cmd": "mark"})
    cpu0 = run.clients_cpu()
    run.all_clients({"cmd": "connect", "api": "delta"})
    sync = run.call({"cmd": "wait", "timeout": run.left()})
    sync["clients_cpu"] = run.clients_cpu() - cpu0
    sync.update(received(run.client_stats()))
    return {"issues": issues, "sync": sync, "mem_issued": mem_issued,
            "mem_synced": run.call({"cmd": "mem"}), "sizes": run.call({"cmd": "sizes"})}


def rotation(run: Run, offset: float) -> dict[str, Any]:
    """One rebuild at ``offset`` (renew what is due, push, every ACK), with what the
    proxies received and the clients' CPU."""
    run.all_clients({"cmd": "mark"})
    cpu0 = run.clients_cpu()
    r = run.call({"cmd": "rebuild", "offset": offset, "timeout": run.left()})
    r["clients_cpu"] = run.clients_cpu() - cpu0
    time.sleep(0.2)  # late bytes (none expected) would still be counted
    r.update(received(run.client_stats()))
    return dict(r)


def rotations(run: Run) -> dict[str, Any]:
    """The spread renewals (one rebuild per renewal moment, in order), then ``--repeats``
    renewals of every credential at once, and what an idle rebuild's ``current()`` costs."""
    schedule = run.call({"cmd": "renewals"})["renewals"]
    spread = []
    for offset, count in schedule:
        r = rotation(run, offset)
        r["due"] = count
        spread.append(r)
        if not r["ok"]:
            return {"spread": spread, "at_once": [], "note": "a spread renewal timed out"}
        time.sleep(0.3)
    idle = run.call({"cmd": "idle", "offset": schedule[-1][0]})["times"]
    at_once = []
    for _ in range(run.args.repeats):
        latest = run.call({"cmd": "renewals"})["renewals"][-1][0]
        r = rotation(run, latest)  # every credential is due by the latest moment
        at_once.append(r)
        if not r["ok"]:
            return {"spread": spread, "at_once": at_once, "idle": idle,
                    "note": "a renewal of every credential timed out"}
        time.sleep(0.3)
    return {"spread": spread, "at_once": at_once, "idle": idle}


def crypto_costs(samples: int) -> dict[str, float]:
    """Seconds per credential, in this process: the issuing path's steps (meshpilot's own
    functions) and the cryptography floor (the primitives those steps cannot avoid)."""
    ca_dir = Path(tempfile.mkdtemp(prefix="meshpilot-bench-ca-"))
    try:
        ca = load_or_create_self_signed_ca(ca_dir)
        identity = workload_identity("default", "default")
        perf = time.perf_counter
        t0 = perf()
        keys = [new_workload_key(identity) for _ in range(samples)]
        t1 = perf()
        issued = [ca.issue(k.csr_pem, identity) for k in keys]
        t2 = perf()
        for k, c in zip(keys, issued, strict=True):
            k.private_key_pem()
            _ = c.chain_pem
        t3 = perf()
        bare = [generate_key() for _ in range(samples)]
        t4 = perf()
        sigs = [k.sign(b"x" * 400, ec.ECDSA(hashes.SHA256())) for k in bare]
        t5 = perf()
        for k, sig in zip(bare, sigs, strict=True):
            k.public_key().verify(sig, b"x" * 400, ec.ECDSA(hashes.SHA256()))
        t6 = perf()
    finally:
        shutil.rmtree(ca_dir, ignore_errors=True)
    keygen, sign, verify = (t4 - t3) / samples, (t5 - t4) / samples, (t6 - t5) / samples
    return {"key_and_csr": (t1 - t0) / samples, "ca_issue": (t2 - t1) / samples,
            "pem": (t3 - t2) / samples, "keygen": keygen, "sign": sign, "verify": verify,
            "floor": keygen + 2 * sign + verify}


# --- report --------------------------------------------------------------------------------


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def report(args: argparse.Namespace, s: dict[str, Any], rot: dict[str, Any],
           floor: list[dict[str, float]], crypto: dict[str, float],
           load: tuple[tuple[float, ...], tuple[float, ...]], others: float) -> None:
    n = args.proxies
    print()
    print(f"{n} proxies (simulated Delta ADS clients in {args.client_procs} processes), a mesh "
          f"of {args.services} services; the xDS server, its ProxyConfigBuilder and "
          "WorkloadCertificates in one process (the control plane's)")
    floor_times = sorted(f["elapsed"] for f in floor)
    floor_p50 = floor_times[len(floor_times) // 2] if floor_times else float("nan")
    print(f"Baseline, same run: bare gRPC floor (grpc_floor.py, {n} streams, ~0.9 KB each, "
          f"every client answering, {len(floor)} rounds): p50 {ms(floor_p50)} ms, max "
          f"{ms(floor_times[-1]) if floor_times else 'n/a'} ms, server CPU "
          f"{ms(statistics.median(f['cpu'] for f in floor)) if floor else 'n/a'} ms per round")
    print(f"Baseline, same run: the crypto floor of one credential (1 P-256 key generated, "
          f"2 ECDSA signatures, 1 verification): {crypto['floor'] * 1e6:.0f} us "
          f"(keygen {crypto['keygen'] * 1e6:.0f}, sign {crypto['sign'] * 1e6:.0f}, verify "
          f"{crypto['verify'] * 1e6:.0f} us)")
    issue_steps = crypto["key_and_csr"] + crypto["ca_issue"] + crypto["pem"]
    print(f"  meshpilot's steps per credential ({CRYPTO_SAMPLES} in the driver): key + CSR "
          f"{crypto['key_and_csr'] * 1e6:.0f} us, CA issue (CSR checks, certificate built "
          f"and signed) {crypto['ca_issue'] * 1e6:.0f} us, PEM {crypto['pem'] * 1e6:.0f} us: "
          f"{issue_steps * 1e6:.0f} us, x{issue_steps / crypto['floor']:.2f} the crypto floor")

    print()
    print("Start-up")
    issues = s["issues"]
    elapsed = sum(i["elapsed"] for i in issues)
    cpu = sum(i["thread_cpu"] for i in issues)
    count = sum(i["issued"] for i in issues)
    print(f"  issue {count} credentials ({args.groups} rebuilds, as {args.groups} groups of "
          f"proxies appear): {elapsed:.2f} s, CPU {cpu:.2f} s -> per 1,000: "
          f"{elapsed / count * 1000:.2f} s; per credential {elapsed / count * 1e6:.0f} us "
          f"(x{elapsed / count / crypto['floor']:.2f} the crypto floor)")
    sync = s["sync"]
    sizes = s["sizes"]
    total_bytes = sum(b for _, b in sizes["by_type"].values())
    secret_bytes = sum(sizes["secrets"].values())
    print(f"  initial sync of all {n} proxies (whole config, SDS default + ROOTCA among it): "
          f"{sync['elapsed']:.2f} s {'' if sync['ok'] else '(NOT COMPLETE) '}, server CPU "
          f"{sync['cpu']:.2f} s, clients CPU {sync['clients_cpu']:.2f} s; "
          f"x{sync['elapsed'] / floor_p50:.1f} the floor's round (many messages per proxy "
          "here, one there)")
    print(f"  per proxy received: {sync['bytes'] / 1024:.1f} KB on the wire, "
          f"{sync['resources']:.0f} resources, {sync['sds']:.1f} SDS; its resources "
          f"serialised: {total_bytes / 1024:.1f} KB, of which secrets "
          + ", ".join(f"{k} {v} B" for k, v in sizes["secrets"].items())
          + f" ({secret_bytes / max(total_bytes, 1):.0%})")
    mi, ms_ = s["mem_issued"], s["mem_synced"]
    print(f"  server RSS after issuing {mi['VmRSS']:.0f} MB, after the sync {ms_['VmRSS']:.0f} "
          f"MB (peak {ms_['VmHWM']:.0f} MB)")

    print()
    head = (f"  {'rebuild':<12}{'due':>6}{'issue s':>9}{'CPU s':>7}{'us/cert':>9}"
            f"{'push ms':>9}{'srv CPU ms':>11}{'cli CPU ms':>11}{'got':>6}{'B/renewed':>10}"
            f"{'SDS/renewed':>12}{'x floor':>9}")
    spread = rot.get("spread", [])
    print(f"Rotation, spread as the control plane does it: {len(spread)} rebuilds, one per "
          "renewal moment (groups that appeared 1 s apart renew 1 s apart)")
    print("  (issue: wall time and the issuing thread's CPU of current(); us/cert: wall per "
          "credential renewed; push: publish to every proxy's ACK, server process CPU, "
          "clients' CPU; got: proxies that received anything; B and SDS resources per such "
          "proxy; x floor: push / the floor's p50 round)")
    print(head)
    for k, r in enumerate(spread):
        print(row(f"group {k + 1}", r, floor_p50))
    if spread:
        tot = {"issue": sum(r["issue"]["elapsed"] for r in spread),
               "cpu": sum(r["issue"]["thread_cpu"] for r in spread),
               "push": sum(r["push"] for r in spread),
               "push_cpu": sum(r["push_cpu"] for r in spread)}
        print(f"  all {len(spread)}: issue {tot['issue']:.2f} s (CPU {tot['cpu']:.2f} s), push "
              f"{tot['push']:.2f} s (server CPU {tot['push_cpu']:.2f} s); each push also "
              "visits every proxy's stream (the rest have nothing new)")
    idle = rot.get("idle", [])
    if idle:
        print(f"  current() for {n} proxies with nothing due (every rebuild pays it): "
              f"{ms(min(idle))}-{ms(max(idle))} ms")
    print()
    at_once = rot.get("at_once", [])
    print(f"Rotation, every credential at once ({len(at_once)} times): one rebuild renews "
          f"all {n}")
    print(head)
    for k, r in enumerate(at_once):
        print(row(f"all #{k + 1}", r, floor_p50))
    if at_once:
        issue = statistics.median(r["issue"]["elapsed"] for r in at_once)
        issue_cpu = statistics.median(r["issue"]["thread_cpu"] for r in at_once)
        push = statistics.median(r["push"] for r in at_once)
        push_cpu = statistics.median(r["push_cpu"] for r in at_once)
        floor_cpu = statistics.median(f["cpu"] for f in floor) if floor else float("nan")
        print(f"  median: issue {issue:.2f} s per {n} (per 1,000: {issue / n * 1000:.2f} s; "
              f"CPU {issue_cpu / n * 1e6:.0f} us per credential, x"
              f"{issue_cpu / n / crypto['floor']:.2f} the crypto floor), push to every ACK "
              f"{ms(push)} ms (x{push / floor_p50:.2f} the floor's round); from renewal due "
              f"to every proxy holding its new certificate {issue + push:.2f} s")
        print(f"  server CPU per proxy for the push {push_cpu / n * 1e6:.0f} us, the floor's "
              f"{floor_cpu / n * 1e6:.0f} us per message (x{push_cpu / floor_cpu:.2f})")
    if rot.get("note"):
        print(f"  NOTE: {rot['note']} (--budget {args.budget:g} s)")
    print()
    print(f"Machine: {os.cpu_count()} CPUs; load average {load[0][0]:.2f}/{load[0][1]:.2f}/"
          f"{load[0][2]:.2f} at start, {load[1][0]:.2f}/{load[1][1]:.2f}/{load[1][2]:.2f} at "
          f"end; other processes (not this benchmark's) used {others:.2f} CPUs on average "
          "during the run")


def row(label: str, r: dict[str, Any], floor_p50: float) -> str:
    issue = r["issue"]
    per = issue["elapsed"] / issue["issued"] * 1e6 if issue["issued"] else float("nan")
    return (f"  {label:<12}{issue['issued']:>6}{issue['elapsed']:9.3f}{issue['thread_cpu']:7.3f}"
            f"{per:9.0f}{r['push'] * 1000:9.1f}{r['push_cpu'] * 1000:11.0f}"
            f"{r['clients_cpu'] * 1000:11.0f}{r['receivers']:>6}"
            f"{r['bytes_receiver']:10.0f}{r['sds_receiver']:12.2f}"
            f"{r['push'] / floor_p50:9.2f}" + ("" if r["ok"] else "  NOT ACKED"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--proxies", type=int, default=1000,
                        help="simulated proxies, each with its own credential (default 1000)")
    parser.add_argument("--groups", type=int, default=10,
                        help="groups the proxies appear in at start-up, 1 s apart on the fake "
                             "clock: the spread renewal is one rebuild per group (default 10)")
    parser.add_argument("--services", type=int, default=10,
                        help="services in the mesh (the rest of each proxy's config; default "
                             "10: small, so the secrets' share shows)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="renewals of every credential at once (default 3)")
    parser.add_argument("--floor-rounds", type=int, default=10,
                        help="rounds of the bare gRPC floor (default 10)")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="processes the simulated proxies run in (default 2)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="give up waiting for ACKs after this many seconds in all (300)")
    parser.add_argument("--keep", action="store_true", help="keep the logs' temporary directory")
    parser.add_argument("--role", choices=["driver", "server"], default="driver",
                        help=argparse.SUPPRESS)
    parser.add_argument("--ca-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "server":
        return serve_role(args)
    if not (1 <= args.groups <= args.proxies <= 5000 and 1 <= args.repeats <= 10
            and 1 <= args.floor_rounds <= 50 and 1 <= args.client_procs <= 8
            and 0 <= args.services <= 1000 and 0 < args.budget <= 1800):
        parser.error("need 1 <= groups <= proxies <= 5000, repeats 1-10, floor rounds 1-50, "
                     "client processes 1-8, services 0-1000, budget up to 1800 s")

    tmp = Path(tempfile.mkdtemp(prefix="meshpilot-bench-certificates-"))
    tmp.chmod(0o700)  # the CA's key is written below it
    started = time.monotonic()
    load0 = os.getloadavg()
    others = ForeignCpu()
    try:
        print(f"load average {load0[0]:.2f}; crypto costs ({CRYPTO_SAMPLES} credentials) ...",
              flush=True)
        crypto = crypto_costs(CRYPTO_SAMPLES)
        print(f"{args.proxies} proxies: start-up, spread and all-at-once renewals ...",
              flush=True)
        run = Run(args, tmp)
        try:
            s = start_up(run)
            rot = rotations(run) if s["sync"]["ok"] else {
                "note": "the initial sync did not complete"}
        finally:
            run.close()
        print(f"the bare gRPC floor, {args.proxies} streams ...", flush=True)
        floor = grpc_floor.measure(args.proxies, args.floor_rounds)
        report(args, s, rot, floor, crypto, (load0, os.getloadavg()), others.cpus())
        print(f"\n(total run time {time.monotonic() - started:.0f} s)")
        return 0
    finally:
        keep_or_remove(tmp, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
